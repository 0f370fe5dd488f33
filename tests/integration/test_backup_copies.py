"""Per-account backup copies and their crypto-erase, against real parts: the demo application on real
PostgreSQL, objects and copies on moto's S3 server over HTTP, KMS on the same moto server over HTTP
(no patched boto3), the local keystore in tmp_path.

What is pinned down: a copy is the account's export, encrypted under a fresh data key wrapped by the
account's key, and restores to exactly the exported files; once the key is scheduled or destroyed no
means of the product decrypts it (and KMS itself refuses Decrypt of the wrapped key once the key is
gone); a legal hold placed between scheduling and destruction stops the destruction, cancels the
schedule, and the ledger and certificate say which hold; snapshots and copies past their period are not
expired while a hold is in force; the certificate claims purge (crypto-erase) only for the copies under
the destroyed key, names them by id and sha256, and states the shared snapshot only by its expiry date.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import boto3
import pendulum
import pytest
from botocore.exceptions import ClientError

from retention import embedded
from retention.backups import KeyDestroyed, KeyPendingDeletion, KmsKeystore, LocalKeystore, SnapshotCatalog
from retention.backups.copies import CopyError, read_header
from retention.backups.keystore import KeystoreError
from retention.certificates.pdf import backup_text, exception_text
from retention.certificates.termination import termination_section
from retention.engine import SweepContext
from retention.ledger import Ledger
from retention.offboarding import backups
from retention.offboarding.plan import plan_offboarding
from retention.offboarding.request import parse_request
from retention.settings import Settings

ACCOUNT = "acct_4004"
OTHER = "acct_2002"


@pytest.fixture
def home(stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def ledger(stack):
    with Ledger.open(stack.ledger_url) as opened:
        yield opened


@pytest.fixture
def ctx(ledger) -> SweepContext:
    return SweepContext.load(Settings.from_env(), ledger)


@pytest.fixture
def settings(home) -> Settings:
    return Settings.from_env()


@pytest.fixture
def kms(stack):
    return boto3.client("kms", endpoint_url=stack.endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def offboard(ctx: SweepContext, account_id: str = ACCOUNT) -> str:
    """An offboarding run for the account, planned as the DAG plans it (nothing executed: backups only)."""
    request = parse_request({"account_id": account_id, "choice": "delete", "reference": "OFF-1", "subprocessors": []})
    return plan_offboarding(ctx, request, pendulum.now("UTC"), requested_by="api:staff-42", actor="test")["run_id"]


def restore(ctx, settings, store, tmp_path: Path, name: str = "restored") -> dict:
    return backups.restore_account(ctx.ledger, settings, ACCOUNT, tmp_path / name, store=store)


def objects_under(stack, prefix: str) -> list[str]:
    paginator = embedded.s3_client(stack.endpoint).get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket="backups", Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", ())]


# -- the local keystore --------------------------------------------------------------------------------

def test_a_copy_is_the_accounts_export_encrypted_and_restores_file_for_file(stack, ctx, settings, tmp_path) -> None:
    store = LocalKeystore(settings.keystore_dir)
    written = backups.copy_account(ctx, ACCOUNT, settings, pendulum.now("UTC"), actor="test", store=store)

    assert written["records"] > 0 and written["keystore"] == "local" and written["cipher"] == "AES-256-GCM"
    assert objects_under(stack, f"accounts/{ACCOUNT}/") == [written["key"]]
    stored = embedded.s3_client(stack.endpoint).get_object(Bucket="backups", Key=written["key"])["Body"].read()
    sealed = tmp_path / "copy.rtbk"
    sealed.write_bytes(stored)
    header, _, offset = read_header(sealed)
    assert ACCOUNT.encode() not in stored[offset:]  # every exported row names the account: none in the clear
    assert header["account_id"] == ACCOUNT and len(json.dumps(header)) < 1000  # a wrapped key, never a plain one

    manifest = restore(ctx, settings, store, tmp_path)
    assert manifest["account_id"] == ACCOUNT and sum(manifest["records"].values()) == written["records"]
    assert set(manifest["records"]) == set(ctx.inventory.locations)
    restored = [p for p in (tmp_path / "restored").rglob("*.jsonl")]
    assert restored and any(ACCOUNT in p.read_text() for p in restored)  # restore_copy checked each file's sha256
    # Another account's copy has its own data key: the two wrapped keys differ, and neither opens the other.
    other = backups.copy_account(ctx, OTHER, settings, pendulum.now("UTC"), actor="test", store=store)
    assert other["sha256"] != written["sha256"]
    with Ledger.open(stack.ledger_url) as fresh:
        payloads = json.dumps([e.payload for e in fresh.events_of_kind("backup.copy_written")])
    assert "@" not in payloads and "wrapped" not in payloads  # ids, digests and counts only


def test_a_changed_byte_of_a_copy_fails_authentication_and_leaves_nothing(stack, ctx, settings, tmp_path) -> None:
    store = LocalKeystore(settings.keystore_dir)
    written = backups.copy_account(ctx, ACCOUNT, settings, pendulum.now("UTC"), actor="test", store=store)
    client = embedded.s3_client(stack.endpoint)
    body = bytearray(client.get_object(Bucket="backups", Key=written["key"])["Body"].read())
    body[-40] ^= 1
    client.put_object(Bucket="backups", Key=written["key"], Body=bytes(body))
    with pytest.raises(CopyError, match="sha256"):
        restore(ctx, settings, store, tmp_path)
    from retention.backups.copies import restore_copy

    with pytest.raises(CopyError, match="fails authentication"):  # without the ledger's digest: the GCM tag
        restore_copy(client, "backups", written["key"], tmp_path / "out", keystore=store, account_id=ACCOUNT)
    assert not list((tmp_path / "out").rglob("*"))
    with pytest.raises(CopyError, match=OTHER):  # bound to its account: not opened as another account's
        restore_copy(client, "backups", written["key"], tmp_path / "x", keystore=store, account_id=OTHER)


def test_after_the_keys_destruction_no_means_of_the_product_decrypts_the_copy(stack, ctx, settings, tmp_path) -> None:
    store = LocalKeystore(settings.keystore_dir)
    backups.copy_account(ctx, ACCOUNT, settings, pendulum.now("UTC"), actor="test", store=store)
    run_id = offboard(ctx)
    result = backups.record_backups(ctx, run_id, settings, pendulum.now("UTC"), actor="test", store=store)
    assert result["encrypted_copies"] == 1 and result["key_held_by"] == []

    with pytest.raises(KeyPendingDeletion):  # as KMS: a key pending deletion decrypts nothing
        restore(ctx, settings, store, tmp_path)
    with pytest.raises(KeyPendingDeletion):  # and encrypts nothing new: no copy after the offboarding
        backups.copy_account(ctx, ACCOUNT, settings, pendulum.now("UTC"), actor="test", store=store)
    assert backups.write_account_copies(ctx, settings, pendulum.now("UTC"), actor="test", store=store,
                                        accounts=[ACCOUNT]) == []

    due = store.state(ACCOUNT).deletion_date + timedelta(minutes=1)
    assert backups.confirm_backups(ctx, settings, due, actor="test", store=store) == [ACCOUNT]
    assert not (settings.keystore_dir / f"{ACCOUNT}.key").exists()
    for keystore in (store, LocalKeystore(settings.keystore_dir)):  # nor after a restart
        with pytest.raises(KeyDestroyed):
            restore(ctx, settings, keystore, tmp_path)
    # The key file's bytes are nowhere in the keystore directory any more: nothing else could unwrap it.
    assert sorted(p.name for p in settings.keystore_dir.iterdir()) == [f"{ACCOUNT}.json"]

    section, exceptions = termination_section(ctx.ledger, run_id, ACCOUNT)
    [key_line] = [b for b in section["backups"] if b["line"] == "per_account_copies"]
    copy = backups.copies_of(ctx.ledger, ACCOUNT)[0]
    assert key_line["nist_800_88"] == "purge (cryptographic erase)" and key_line["status"] == "done"
    assert key_line["copies"] == [{"copy_id": copy["copy_id"], "sha256": copy["sha256"]}]
    assert "purge" in backup_text(key_line) and copy["sha256"] in backup_text(key_line)
    assert "may survive" in key_line["key_destruction"]  # the local keystore's limit is stated, not hidden
    [snapshots] = [b for b in section["backups"] if b["line"] == "shared_snapshots"]
    assert snapshots["nist_800_88"] is None and "expiry" in snapshots["method"]  # never crypto-erase


def test_a_key_without_copies_claims_no_crypto_erase(stack, ctx, settings) -> None:
    store = LocalKeystore(settings.keystore_dir)
    store.data_key(ACCOUNT)  # a key, but nothing was ever encrypted under it
    run_id = offboard(ctx)
    backups.record_backups(ctx, run_id, settings, pendulum.now("UTC"), actor="test", store=store)
    section, exceptions = termination_section(ctx.ledger, run_id, ACCOUNT)
    [key_line] = [b for b in section["backups"] if b["line"] == "per_account_copies"]
    assert key_line["nist_800_88"] is None and key_line["copies"] == []
    assert "no cryptographic erase is claimed" in backup_text(key_line)
    assert "purge" not in json.dumps(section)


def test_a_hold_placed_after_scheduling_stops_the_destruction_and_the_ledger_says_why(stack, ctx, settings,
                                                                                      tmp_path) -> None:
    store = LocalKeystore(settings.keystore_dir)
    backups.copy_account(ctx, ACCOUNT, settings, pendulum.now("UTC"), actor="test", store=store)
    run_id = offboard(ctx)
    backups.record_backups(ctx, run_id, settings, pendulum.now("UTC"), actor="test", store=store)
    due = store.state(ACCOUNT).deletion_date + timedelta(minutes=1)
    hold = ctx.ledger.place_hold(account_id=ACCOUNT, data_class="chat_transcripts", reason="litigation",
                                 reference="LEGAL-7", placed_by="counsel")

    assert backups.confirm_backups(ctx, settings, due, actor="test", store=store) == [ACCOUNT]
    assert store.state(ACCOUNT).state == "enabled"  # the deletion was cancelled: the held data stays readable
    assert restore(ctx, settings, store, tmp_path)["account_id"] == ACCOUNT
    [held] = ctx.ledger.events_of_kind("backup.key_deletion_held")
    assert held.payload == {"account_id": ACCOUNT, "holds": [hold.id], "stage": "destroy", "copies": 1}
    assert ctx.ledger.events_of_kind("backup.key_destroyed") == []
    assert backups.confirm_backups(ctx, settings, due + timedelta(days=1), actor="test", store=store) == []
    assert len(ctx.ledger.events_of_kind("backup.key_deletion_held")) == 1  # said once, not every day

    section, exceptions = termination_section(ctx.ledger, run_id, ACCOUNT)
    assert {"kind": "backup_key_held", "holds": [hold.id], "copies": 1} in exceptions
    assert "kept, not erased" in exception_text({"kind": "backup_key_held", "holds": [hold.id], "copies": 1})

    # Released: the key is scheduled again (a fresh window), then destroyed.
    ctx.ledger.release_hold(hold.id, released_by="counsel", reason="settled")
    assert backups.confirm_backups(ctx, settings, due + timedelta(days=2), actor="test", store=store) == [ACCOUNT]
    again = store.state(ACCOUNT)
    assert again.state == "pending_deletion"
    assert backups.confirm_backups(ctx, settings, again.deletion_date, actor="test", store=store) == [ACCOUNT]
    with pytest.raises(KeyDestroyed):
        restore(ctx, settings, store, tmp_path, "after")


def test_a_hold_in_force_at_the_backups_step_schedules_nothing(stack, ctx, settings) -> None:
    store = LocalKeystore(settings.keystore_dir)
    backups.copy_account(ctx, ACCOUNT, settings, pendulum.now("UTC"), actor="test", store=store)
    hold = ctx.ledger.place_hold(account_id=ACCOUNT, data_class=None, reason="audit", reference="LEGAL-8",
                                 placed_by="counsel")
    run_id = offboard(ctx)
    assert backups.record_backups(ctx, run_id, settings, pendulum.now("UTC"), actor="test",
                                  store=store)["key_held_by"] == [hold.id]
    assert store.state(ACCOUNT).state == "enabled"
    assert ctx.ledger.events_of_kind("backup.key_deletion_scheduled") == []
    later = pendulum.now("UTC").add(days=30)
    assert backups.confirm_backups(ctx, settings, later, actor="test", store=store) == []  # still held: nothing
    assert store.state(ACCOUNT).state == "enabled" and len(ctx.ledger.events_of_kind("backup.key_deletion_held")) == 1

    ctx.ledger.release_hold(hold.id, released_by="counsel", reason="closed")  # the approved deletion goes on
    assert backups.confirm_backups(ctx, settings, later, actor="test", store=store) == [ACCOUNT]
    [scheduled] = ctx.ledger.events_of_kind("backup.key_deletion_scheduled")
    assert len(scheduled.payload["copies"]) == 1
    due = store.state(ACCOUNT).deletion_date
    assert backups.confirm_backups(ctx, settings, due, actor="test", store=store) == [ACCOUNT]
    assert store.state(ACCOUNT).state == "destroyed"


# -- snapshots and copies past their period, under a hold -------------------------------------------------

def test_a_snapshot_past_its_period_is_not_expired_while_a_hold_is_in_force(stack, ctx, settings, tmp_path) -> None:
    catalog = SnapshotCatalog(embedded.s3_client(stack.endpoint), "backups", "app_db/", "app_db")
    dump = tmp_path / "old.dump"
    dump.write_bytes(b"PGDMP")
    now = pendulum.now("UTC")
    old = catalog.put(dump, now.subtract(days=40))  # the backup rule keeps snapshots 35 days
    young = catalog.put(dump, now.subtract(days=3))
    hold = ctx.ledger.place_hold(account_id=OTHER, data_class=None, reason="litigation", reference="LEGAL-9",
                                 placed_by="counsel")

    assert backups.expire_snapshots(ctx, settings, now, actor="test", snapshot_catalog=catalog) == []
    assert catalog.exists(old.id) and catalog.exists(young.id)
    [held] = ctx.ledger.events_of_kind("backup.snapshot_expiry_held")
    assert held.payload == {"source": "app_db", "snapshot": old.id, "holds": [hold.id]}

    ctx.ledger.release_hold(hold.id, released_by="counsel", reason="settled")
    assert backups.expire_snapshots(ctx, settings, now, actor="test", snapshot_catalog=catalog) == [old.id]
    assert not catalog.exists(old.id) and catalog.exists(young.id)
    [expired] = ctx.ledger.events_of_kind("backup.snapshot_expired")
    assert expired.payload["snapshot"] == old.id


def test_the_certificate_states_a_held_snapshot_as_kept(stack, ctx, settings, tmp_path) -> None:
    catalog = SnapshotCatalog(embedded.s3_client(stack.endpoint), "backups", "app_db/", "app_db")
    dump = tmp_path / "old.dump"
    dump.write_bytes(b"PGDMP")
    old = catalog.put(dump, pendulum.now("UTC").subtract(days=40))
    store = LocalKeystore(settings.keystore_dir)
    run_id = offboard(ctx)
    backups.record_backups(ctx, run_id, settings, pendulum.now("UTC"), actor="test", store=store)
    mine = ctx.ledger.place_hold(account_id=ACCOUNT, data_class=None, reason="r", reference="L-1", placed_by="c")
    ctx.ledger.place_hold(account_id=OTHER, data_class=None, reason="r", reference="L-2", placed_by="c")
    backups.expire_snapshots(ctx, settings, pendulum.now("UTC"), actor="test", snapshot_catalog=catalog)
    assert catalog.exists(old.id)
    section, exceptions = termination_section(ctx.ledger, run_id, ACCOUNT)
    [held] = [e for e in exceptions if e["kind"] == "backup_snapshots_held"]
    assert held["holds"] == [mine.id] and held["other_holds"] == 1  # another account's hold is only counted
    assert "kept past their expiry" in exception_text(held)


def test_a_copy_past_its_period_is_kept_while_its_account_is_held(stack, ctx, settings) -> None:
    store = LocalKeystore(settings.keystore_dir)
    written = backups.copy_account(ctx, ACCOUNT, settings, pendulum.now("UTC").subtract(days=40), actor="test",
                                   store=store)
    hold = ctx.ledger.place_hold(account_id=ACCOUNT, data_class=None, reason="r", reference="L-3", placed_by="c")
    assert backups.expire_copies(ctx, settings, pendulum.now("UTC"), actor="test") == []
    assert objects_under(stack, f"accounts/{ACCOUNT}/") == [written["key"]]
    assert ctx.ledger.events_of_kind("backup.copy_expiry_held")[0].payload["holds"] == [hold.id]
    ctx.ledger.release_hold(hold.id, released_by="c", reason="done")
    assert backups.expire_copies(ctx, settings, pendulum.now("UTC"), actor="test") == [written["copy_id"]]
    assert objects_under(stack, f"accounts/{ACCOUNT}/") == []


# -- AWS KMS on moto's server over HTTP -------------------------------------------------------------------

def _kms_key_by_stack(stack, account_id: str):
    """The account's KMS key and alias provisioned as infrastructure as code; deleting the stack removes the key,
    which is what KMS does when a deletion window ends (moto never ends a window by itself)."""
    cloudformation = boto3.client("cloudformation", endpoint_url=stack.endpoint, region_name="us-east-1",
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
    name = f"retention-{uuid.uuid4().hex[:12]}"
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps({"Resources": {
        "Key": {"Type": "AWS::KMS::Key",
                "Properties": {"KeyPolicy": json.dumps({"Version": "2012-10-17", "Statement": []})}},
        "Alias": {"Type": "AWS::KMS::Alias",
                  "Properties": {"AliasName": f"alias/retention/{account_id}", "TargetKeyId": {"Ref": "Key"}}}}}))
    return lambda: cloudformation.delete_stack(StackName=name)


def test_kms_envelope_copy_restores_then_kms_refuses_decrypt_once_the_key_is_destroyed(stack, ctx, settings, kms,
                                                                                     tmp_path) -> None:
    end_of_window = _kms_key_by_stack(stack, ACCOUNT)
    store = KmsKeystore(kms)
    written = backups.copy_account(ctx, ACCOUNT, settings, pendulum.now("UTC"), actor="test", store=store)
    assert written["keystore"] == "kms"
    assert restore(ctx, settings, store, tmp_path, "live")["account_id"] == ACCOUNT

    run_id = offboard(ctx)
    backups.record_backups(ctx, run_id, settings, pendulum.now("UTC"), actor="test", store=store)
    [scheduled] = ctx.ledger.events_of_kind("backup.key_deletion_scheduled")
    assert scheduled.payload["keystore"] == "kms" and scheduled.payload["key_id"]
    assert kms.describe_key(KeyId=scheduled.payload["key_id"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    with pytest.raises(KeyPendingDeletion):  # AWS refuses Decrypt now; moto does not, the keystore does
        restore(ctx, settings, KmsKeystore(kms), tmp_path, "pending")

    end_of_window()
    client = embedded.s3_client(stack.endpoint)
    sealed = tmp_path / "copy.rtbk"
    sealed.write_bytes(client.get_object(Bucket="backups", Key=written["key"])["Body"].read())
    header, _, _ = read_header(sealed)
    import base64

    with pytest.raises(ClientError):  # KMS itself, over HTTP: the wrapped data key cannot be unwrapped by anyone
        kms.decrypt(CiphertextBlob=base64.b64decode(header["wrapped_key"]),
                    EncryptionContext={"retention:account_id": ACCOUNT})
    with pytest.raises(KeystoreError):
        restore(ctx, settings, KmsKeystore(kms), tmp_path, "gone")

    # A later process (the daily DAG run) knows the key only from the ledger, and records its destruction.
    due = pendulum.parse(scheduled.payload["deletion_date"]).add(minutes=1)
    assert backups.confirm_backups(ctx, settings, due, actor="test", store=KmsKeystore(kms)) == [ACCOUNT]
    [destroyed] = ctx.ledger.events_of_kind("backup.key_destroyed")
    assert destroyed.payload["keystore"] == "kms" and destroyed.payload["copies"] == 1
    # The next day's copies: KMS no longer knows the alias, but no new key (and no copy) is made for the account.
    assert backups.write_account_copies(ctx, settings, due, actor="test", store=KmsKeystore(kms),
                                        accounts=[ACCOUNT]) == []
    with pytest.raises(ClientError, match="NotFound"):
        kms.describe_key(KeyId=f"alias/retention/{ACCOUNT}")


def test_kms_a_hold_during_the_window_cancels_the_deletion(stack, ctx, settings, kms, tmp_path) -> None:
    _kms_key_by_stack(stack, ACCOUNT)
    store = KmsKeystore(kms)
    backups.copy_account(ctx, ACCOUNT, settings, pendulum.now("UTC"), actor="test", store=store)
    run_id = offboard(ctx)
    backups.record_backups(ctx, run_id, settings, pendulum.now("UTC"), actor="test", store=store)
    hold = ctx.ledger.place_hold(account_id=ACCOUNT, data_class=None, reason="r", reference="L-4", placed_by="c")
    later = KmsKeystore(kms)  # the daily run: a fresh process
    tomorrow = pendulum.now("UTC").add(days=1)
    assert backups.confirm_backups(ctx, settings, tomorrow, actor="test", store=later) == [ACCOUNT]
    assert kms.describe_key(KeyId=f"alias/retention/{ACCOUNT}")["KeyMetadata"]["KeyState"] == "Enabled"
    assert restore(ctx, settings, later, tmp_path)["account_id"] == ACCOUNT
    assert ctx.ledger.events_of_kind("backup.key_deletion_held")[0].payload["holds"] == [hold.id]


def test_kms_is_reached_through_an_airflow_connection_when_one_is_configured(stack, settings, kms,
                                                                             monkeypatch) -> None:
    from retention.settings import Settings

    # RETENTION_BACKUPS_KMS_CONN_ID names an aws Connection; the embedded stack's object_store Connection
    # points at the same moto server, which also speaks KMS.
    monkeypatch.setenv("RETENTION_BACKUPS_KMS_CONN_ID", "object_store")
    chosen = backups.keystore(Settings.from_env())
    assert isinstance(chosen, KmsKeystore)
    account = f"acct_{uuid.uuid4().hex[:8]}"
    data_key = chosen.generate_data_key(account)
    assert len(data_key.plaintext) == 32 and data_key.wrapped != data_key.plaintext
    assert kms.describe_key(KeyId=f"alias/retention/{account}")["KeyMetadata"]["KeyState"] == "Enabled"
    assert chosen.decrypt_data_key(account, data_key.wrapped) == data_key.plaintext
    assert isinstance(backups.keystore(settings), LocalKeystore)  # no KMS Connection: the local keystore


def test_a_return_package_kept_under_a_hold_is_stated_as_kept(stack, ctx, settings) -> None:
    from retention.offboarding import returns

    run_id = offboard(ctx)
    ctx.ledger.append("return.delivered", {
        "package_id": "ret-1", "account_id": ACCOUNT, "format": returns.FORMAT, "manifest_sha256": "ab" * 32,
        "records": 3, "locations": 1, "bytes": 10, "bucket": "retention-returns",
        "key": f"returns/{ACCOUNT}/ret-1.tar.age",
        "window_ends_at": "2026-01-01T00:00:00+00:00"}, actor="test", run_id=run_id)
    hold = ctx.ledger.place_hold(account_id=ACCOUNT, data_class=None, reason="r", reference="L-5", placed_by="c")
    assert returns.remove_package(ctx.ledger, run_id, client=embedded.s3_client(stack.endpoint), actor="test") is False
    section, exceptions = termination_section(ctx.ledger, run_id, ACCOUNT)
    assert section["return"]["package_deleted_at"] is None
    assert section["return"]["package_kept_under_holds"] == [hold.id]
    [kept] = [e for e in exceptions if e["kind"] == "return_package_held"]
    assert exception_text(kept) == (
        f"Return package ret-1: kept, not deleted, while legal hold(s) {hold.id} are in force.")
