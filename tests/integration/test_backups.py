"""Backups against real parts: key files in tmp_path, KMS and S3 on moto's server over HTTP, real PostgreSQL.

What is pinned down: a key is destroyed only once its window has passed, is gone from disk then, and
is never recreated or handed out while pending; KMS scheduling is idempotent and its states are read
back from KMS; a restored snapshot brings back exactly the rows it held; the clear copies of a deletion
are the snapshots taken at or before it; the last expiry follows the backup policy.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from retention.backups import (
    KeyDestroyed,
    KeyPendingDeletion,
    KeyState,
    KmsKeystore,
    LocalKeystore,
    Snapshot,
    SnapshotCatalog,
    SnapshotError,
    clear_copies,
    last_expiry,
    restore_snapshot,
    take_snapshot,
)
from retention.rules.durations import IsoDuration

ACCOUNT = "acct_1001"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# -- the local keystore ----------------------------------------------------------------------------

def test_a_data_key_is_created_once_and_kept_private(tmp_path: Path) -> None:
    keys = LocalKeystore(tmp_path / "keys")
    first = keys.data_key(ACCOUNT)
    assert len(first) == 32
    assert keys.data_key(ACCOUNT) == first
    assert LocalKeystore(tmp_path / "keys").data_key(ACCOUNT) == first  # survives a restart
    assert keys.data_key("acct_1002") != first
    assert (tmp_path / "keys" / f"{ACCOUNT}.key").stat().st_mode & 0o777 == 0o600
    assert keys.state(ACCOUNT) == KeyState(ACCOUNT, "enabled")


def test_a_key_is_destroyed_only_when_its_window_has_passed(tmp_path: Path) -> None:
    keys = LocalKeystore(tmp_path)
    keys.data_key(ACCOUNT)
    scheduled = keys.schedule_deletion(ACCOUNT, window_days=7, at=T0)
    assert scheduled == KeyState(ACCOUNT, "pending_deletion", T0 + timedelta(days=7), None)

    assert keys.destroy_due(T0 + timedelta(days=7) - timedelta(microseconds=1)) == []
    assert (tmp_path / f"{ACCOUNT}.key").exists()
    assert keys.state(ACCOUNT) == scheduled

    due = T0 + timedelta(days=7)
    assert keys.destroy_due(due + timedelta(hours=3)) == [
        KeyState(ACCOUNT, "destroyed", due, due + timedelta(hours=3))]
    assert not (tmp_path / f"{ACCOUNT}.key").exists()
    assert [p.name for p in tmp_path.iterdir()] == [f"{ACCOUNT}.json"]  # no key bytes left behind anywhere
    assert keys.state(ACCOUNT).destroyed_at == due + timedelta(hours=3)  # when destroyed, not scheduled
    assert keys.destroy_due(due + timedelta(days=1)) == []  # destroyed once


def test_a_key_not_yet_due_is_untouched_when_another_is_destroyed(tmp_path: Path) -> None:
    keys = LocalKeystore(tmp_path)
    early, late = keys.data_key("acct_early"), keys.data_key("acct_late")
    keys.schedule_deletion("acct_early", window_days=7, at=T0)
    keys.schedule_deletion("acct_late", window_days=30, at=T0)
    destroyed = keys.destroy_due(T0 + timedelta(days=10))
    assert [s.account_id for s in destroyed] == ["acct_early"]
    assert (tmp_path / "acct_late.key").read_bytes() == late != early
    assert keys.state("acct_late").state == "pending_deletion"


def test_scheduling_twice_keeps_the_first_deletion_date(tmp_path: Path) -> None:
    keys = LocalKeystore(tmp_path)
    keys.data_key(ACCOUNT)
    first = keys.schedule_deletion(ACCOUNT, window_days=7, at=T0)
    again = keys.schedule_deletion(ACCOUNT, window_days=30, at=T0 + timedelta(days=2))
    assert again == first
    assert json.loads((tmp_path / f"{ACCOUNT}.json").read_text())["deletion_date"] == \
        (T0 + timedelta(days=7)).isoformat()


@pytest.mark.parametrize("window_days", [0, 6, 31, 7.5, True])
def test_a_window_outside_kms_bounds_is_refused(tmp_path: Path, window_days) -> None:
    keys = LocalKeystore(tmp_path)
    keys.data_key(ACCOUNT)
    with pytest.raises(ValueError, match="7 to 30"):
        keys.schedule_deletion(ACCOUNT, window_days=window_days, at=T0)
    assert keys.state(ACCOUNT).state == "enabled"


def test_a_key_pending_deletion_is_never_handed_out(tmp_path: Path) -> None:
    keys = LocalKeystore(tmp_path)
    keys.data_key(ACCOUNT)
    keys.schedule_deletion(ACCOUNT, window_days=7, at=T0)
    with pytest.raises(KeyPendingDeletion, match=ACCOUNT):
        keys.data_key(ACCOUNT)


def test_a_destroyed_key_is_never_recreated(tmp_path: Path) -> None:
    keys = LocalKeystore(tmp_path)
    keys.data_key(ACCOUNT)
    keys.schedule_deletion(ACCOUNT, window_days=7, at=T0)
    keys.destroy_due(T0 + timedelta(days=8))
    for keystore in (keys, LocalKeystore(tmp_path)):  # nor after a restart
        with pytest.raises(KeyDestroyed, match=ACCOUNT):
            keystore.data_key(ACCOUNT)
    assert not (tmp_path / f"{ACCOUNT}.key").exists()
    assert keys.schedule_deletion(ACCOUNT, window_days=7, at=T0 + timedelta(days=9)).state == "destroyed"


def test_an_account_without_a_key_has_nothing_to_destroy(tmp_path: Path) -> None:
    keys = LocalKeystore(tmp_path)
    assert keys.schedule_deletion(ACCOUNT, window_days=7, at=T0) == KeyState(ACCOUNT, "absent")
    assert keys.destroy_due(T0 + timedelta(days=30)) == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("account_id", ["../escape", ".hidden", "a/b", ""])
def test_an_account_id_that_is_not_a_plain_name_is_refused(tmp_path: Path, account_id: str) -> None:
    with pytest.raises(ValueError, match="account id"):
        LocalKeystore(tmp_path / "keys").data_key(account_id)
    assert list((tmp_path / "keys").iterdir()) == []


def test_a_wrapped_data_key_opens_only_under_its_own_accounts_key(tmp_path: Path) -> None:
    from retention.backups import KeyUnavailable

    keys = LocalKeystore(tmp_path)
    first, second = keys.generate_data_key(ACCOUNT), keys.generate_data_key(ACCOUNT)
    assert first.plaintext != second.plaintext and len(first.plaintext) == 32  # a fresh data key per copy
    assert keys.decrypt_data_key(ACCOUNT, first.wrapped) == first.plaintext
    keys.data_key("acct_1002")
    with pytest.raises(KeyUnavailable):  # bound to the account (associated data), not only to the key bytes
        keys.decrypt_data_key("acct_1002", first.wrapped)
    with pytest.raises(KeyUnavailable):  # no key is ever created to decrypt
        keys.decrypt_data_key("acct_never", first.wrapped)
    assert keys.state("acct_never").state == "absent"


def test_cancelling_a_scheduled_deletion_keeps_the_same_key(tmp_path: Path) -> None:
    keys = LocalKeystore(tmp_path)
    wrapped = keys.generate_data_key(ACCOUNT)
    keys.schedule_deletion(ACCOUNT, window_days=7, at=T0)
    with pytest.raises(KeyPendingDeletion):  # as KMS refuses Decrypt under a key pending deletion
        keys.decrypt_data_key(ACCOUNT, wrapped.wrapped)
    assert keys.cancel_deletion(ACCOUNT) == KeyState(ACCOUNT, "enabled")
    assert keys.decrypt_data_key(ACCOUNT, wrapped.wrapped) == wrapped.plaintext
    assert keys.destroy_if_due(ACCOUNT, T0 + timedelta(days=30)) is None  # no longer scheduled


# -- KMS on moto's server --------------------------------------------------------------------------

@pytest.fixture
def kms(s3_endpoint: str):
    import boto3

    return boto3.client("kms", endpoint_url=s3_endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _account() -> str:
    return f"acct_{uuid.uuid4().hex[:12]}"  # the moto server is shared by the session


def test_kms_creates_one_key_per_account_under_its_alias(kms) -> None:
    keys, account = KmsKeystore(kms), _account()
    assert keys.state(account) == KeyState(account, "absent")
    key_id = keys.key_id(account)
    assert keys.key_id(account) == key_id
    assert kms.describe_key(KeyId=f"alias/retention/{account}")["KeyMetadata"]["KeyId"] == key_id
    assert keys.state(account) == KeyState(account, "enabled")
    with pytest.raises(NotImplementedError, match="never leave KMS"):
        keys.data_key(account)


def test_kms_scheduling_sets_the_window_and_keeps_the_first_date(kms) -> None:
    keys, account = KmsKeystore(kms), _account()
    key_id = keys.key_id(account)
    before = datetime.now(UTC)
    scheduled = keys.schedule_deletion(account, window_days=7, at=before)
    assert scheduled.state == "pending_deletion"
    assert timedelta(days=7) <= scheduled.deletion_date - before < timedelta(days=7, minutes=1)
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert metadata["KeyState"] == "PendingDeletion"

    assert keys.schedule_deletion(account, window_days=30, at=before) == scheduled
    assert KmsKeystore(kms).state(account) == scheduled  # read back from KMS, not from memory
    with pytest.raises(KeyPendingDeletion, match=account):
        keys.key_id(account)
    with pytest.raises(ValueError, match="7 to 30"):
        keys.schedule_deletion(_account(), window_days=3, at=before)


def test_kms_reports_a_key_destroyed_only_once_kms_no_longer_finds_it(kms, s3_endpoint: str) -> None:
    import boto3

    keys, account = KmsKeystore(kms), _account()
    stack = f"retention-{account.replace('_', '-')}"
    # A key provisioned outside the keystore (infrastructure as code): found by its alias all the same.
    cloudformation = boto3.client("cloudformation", endpoint_url=s3_endpoint, region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
    cloudformation.create_stack(StackName=stack, TemplateBody=json.dumps({"Resources": {
        "Key": {"Type": "AWS::KMS::Key",
                "Properties": {"KeyPolicy": json.dumps({"Version": "2012-10-17", "Statement": []})}},
        "Alias": {"Type": "AWS::KMS::Alias",
                  "Properties": {"AliasName": f"alias/retention/{account}", "TargetKeyId": {"Ref": "Key"}}}}}))
    scheduled = keys.schedule_deletion(account, window_days=7, at=datetime.now(UTC))
    due = scheduled.deletion_date

    assert keys.destroy_due(due + timedelta(days=1)) == []  # due, but KMS still holds it
    assert keys.state(account).state == "pending_deletion"

    # moto never ends a window itself; deleting the stack removes the key and its alias, as KMS does then.
    cloudformation.delete_stack(StackName=stack)
    assert keys.destroy_due(due - timedelta(seconds=1)) == []  # gone, but not yet due: not claimed
    destroyed = keys.destroy_due(due)
    assert destroyed == [KeyState(account, "destroyed", due, None)]
    assert keys.state(account) == destroyed[0]
    assert keys.destroy_due(due + timedelta(days=1)) == []
    with pytest.raises(KeyDestroyed, match=account):
        keys.key_id(account)  # never recreated
    assert KmsKeystore(kms).state(account) == KeyState(account, "absent")  # a fresh instance cannot tell


# -- snapshots on real PostgreSQL and S3 -----------------------------------------------------------

@pytest.fixture
def catalog(s3_client, make_bucket) -> SnapshotCatalog:
    return SnapshotCatalog(s3_client, make_bucket(), "snapshots/app/", "app_db")


@pytest.fixture
def app_db(postgres_url: str):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE contacts (id int PRIMARY KEY, account_id text NOT NULL, email text)"))
        conn.execute(sa.text("INSERT INTO contacts VALUES (1, 'acct_1', 'a@example.invalid'), "
                             "(2, 'acct_2', 'b@example.invalid')"))
    yield engine
    engine.dispose()


def _rows(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text("SELECT id, account_id FROM contacts ORDER BY id"))]


@pytest.mark.postgres
def test_restoring_a_snapshot_brings_back_the_rows_it_held(postgres_url: str, app_db, catalog) -> None:
    snapshot = take_snapshot(postgres_url, catalog)
    assert snapshot.id.startswith("snapshots/app/") and snapshot.id.endswith(".dump")
    assert catalog.exists(snapshot.id) and snapshot.size > 0
    assert catalog.list() == [snapshot]

    with app_db.begin() as conn:
        conn.execute(sa.text("DELETE FROM contacts WHERE account_id = 'acct_1'"))
        conn.execute(sa.text("INSERT INTO contacts VALUES (3, 'acct_3', 'c@example.invalid')"))
    assert _rows(app_db) == [(2, "acct_2"), (3, "acct_3")]

    restore_snapshot(postgres_url, catalog, snapshot.id)
    assert _rows(app_db) == [(1, "acct_1"), (2, "acct_2")]


@pytest.mark.postgres
def test_restoring_a_snapshot_that_is_gone_changes_nothing(postgres_url: str, app_db, catalog) -> None:
    with pytest.raises(SnapshotError, match="no such snapshot"):
        restore_snapshot(postgres_url, catalog, "snapshots/app/20260301T120000.000000Z.dump")
    assert _rows(app_db) == [(1, "acct_1"), (2, "acct_2")]


@pytest.mark.postgres
def test_a_failed_dump_keeps_the_password_out_of_its_error_and_uploads_nothing(postgres_url: str, catalog) -> None:
    url = sa.engine.make_url(postgres_url).set(password="s3cret-pw", database=f"missing_{uuid.uuid4().hex}")
    with pytest.raises(SnapshotError, match="pg_dump for app_db exited with 1") as failure:
        take_snapshot(url.render_as_string(hide_password=False), catalog)
    assert "s3cret-pw" not in str(failure.value)
    assert catalog.list() == []


@pytest.mark.postgres
def test_clear_copies_are_the_snapshots_taken_before_the_deletion(postgres_url: str, app_db, catalog,
                                                                  tmp_path: Path) -> None:
    before = take_snapshot(postgres_url, catalog)
    deleted_at = datetime.now(UTC)
    with app_db.begin() as conn:
        conn.execute(sa.text("DELETE FROM contacts WHERE account_id = 'acct_1'"))
    after = take_snapshot(postgres_url, catalog)
    assert before.taken_at < deleted_at < after.taken_at
    assert clear_copies(catalog, up_to=deleted_at) == [before]

    dump = tmp_path / "same-instant.dump"  # a snapshot taken at the very instant of the deletion holds it
    dump.write_bytes(b"PGDMP")
    at_deletion = catalog.put(dump, deleted_at)
    assert clear_copies(catalog, up_to=deleted_at) == [before, at_deletion]

    catalog._client.delete_object(Bucket=catalog.bucket, Key=before.id)  # expired: no longer a copy
    assert not catalog.exists(before.id)
    assert clear_copies(catalog, up_to=deleted_at) == [at_deletion]


def test_a_snapshot_named_by_another_tool_is_dated_by_its_upload(catalog) -> None:
    catalog._client.put_object(Bucket=catalog.bucket, Key="snapshots/app/nightly.dump", Body=b"PGDMP")
    catalog._client.put_object(Bucket=catalog.bucket, Key="elsewhere/other.dump", Body=b"PGDMP")
    [listed] = catalog.list()
    assert listed.id == "snapshots/app/nightly.dump" and listed.source == "app_db" and listed.size == 5
    assert abs(listed.taken_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert listed.taken_at.tzinfo is not None


def test_the_last_expiry_follows_the_backup_policy() -> None:
    snapshots = [Snapshot(f"s/{n}.dump", "app_db", T0 - timedelta(days=n), 1) for n in (40, 3, 10)]
    assert last_expiry(snapshots, IsoDuration.parse("P35D")) == T0 - timedelta(days=3) + timedelta(days=35)
    assert last_expiry([Snapshot("s/a.dump", "app_db", datetime(2026, 1, 31, tzinfo=UTC), 1)],
                       IsoDuration.parse("P1M")) == datetime(2026, 2, 28, tzinfo=UTC)  # month end clamped
    assert last_expiry([], IsoDuration.parse("P35D")) is None
