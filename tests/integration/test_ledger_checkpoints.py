"""Signed checkpoints of the ledger chain, published outside the ledger database, catch what the chain alone
cannot: a database writer who removes an event, re-hashes every later one and moves the chain head.

The attacks are made with plain SQL through SQLAlchemy Core, as someone with write access to the ledger
database could; the re-hash uses the product's own hash function. Both databases (the ``ledger`` fixture);
the S3 publisher runs against moto's server over HTTP with Object Lock.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from sqlalchemy import delete, select, update

from retention.certificates import KeySet, SigningKey, issue
from retention.cli import main
from retention.ledger import ChainHead, Event, Ledger, compute_hash
from retention.ledger.checkpoint_stores import DirectoryStore, configured_store
from retention.ledger.checkpoints import (
    Checkpoint,
    CheckpointError,
    create_key,
    load_key,
    publish_configured,
    verify,
    verify_configured,
)
from retention.settings import Settings
from tests.fixtures.ledger_writer import as_database_writer

REPO = Path(__file__).resolve().parents[2]
EVENTS = Event.__table__


@pytest.fixture
def home(ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The embedded stack's settings: ledger URL, $RETENTION_HOME, a checkpoint key made as a user would."""
    monkeypatch.setenv("RETENTION_DATABASE_URL", ledger.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path))
    for name in ("RETENTION_CHECKPOINT_KEY_FILE", "RETENTION_CHECKPOINT_JWKS_FILE", "RETENTION_CHECKPOINT_DIR",
                 "RETENTION_CHECKPOINT_CONN_ID", "RETENTION_CHECKPOINT_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    create_key(tmp_path / "checkpoint-key.pem", tmp_path / "checkpoint-key.jwks")
    return tmp_path


def _keys(home: Path) -> KeySet:
    return KeySet.read(home / "checkpoint-key.jwks")


def _store(home: Path) -> DirectoryStore:
    return DirectoryStore(home / "checkpoints")


def _events(ledger: Ledger, n: int) -> None:
    for i in range(n):
        ledger.append("test.event", {"i": i, "account_id": f"acct_{i}"}, actor="staff:1")


def _checkpoint_verify(ledger: Ledger, home: Path):
    return verify(ledger, _store(home), _keys(home), ledger.verify())


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _remove_and_rehash(ledger: Ledger, seq: int) -> None:
    """As a database writer: delete event ``seq``, renumber and re-hash every later event with the product's
    own hash function, and point chain_head at the new last event, so the chain alone verifies."""
    with as_database_writer(ledger) as conn:
        later = conn.execute(select(EVENTS).where(EVENTS.c.seq > seq).order_by(EVENTS.c.seq)).mappings().all()
        prev_hash = conn.execute(select(EVENTS.c.hash).where(EVENTS.c.seq == seq - 1)).scalar_one()
        conn.execute(delete(EVENTS).where(EVENTS.c.seq == seq))
        for row in later:
            fields = {name: row[name] for name in ("event_id", "kind", "occurred_at", "actor", "run_id",
                                                   "task_id", "payload")}
            fields.update(seq=row["seq"] - 1, prev_hash=prev_hash)
            new_hash = compute_hash(**fields)
            conn.execute(update(EVENTS).where(EVENTS.c.seq == row["seq"])
                         .values(seq=fields["seq"], prev_hash=prev_hash, hash=new_hash))
            prev_hash = new_hash
        conn.execute(update(ChainHead).where(ChainHead.id == 1).values(seq=seq - 1 + len(later), hash=prev_hash))


def test_a_released_hold_removed_and_rehashed_passes_the_chain_but_not_the_checkpoints(ledger, home) -> None:
    hold = ledger.place_hold(account_id="acct_1001", data_class=None, reason="litigation", reference="L-1",
                             placed_by="staff:1")
    _events(ledger, 2)
    first = publish_configured(ledger)
    ledger.release_hold(hold.id, released_by="staff:2", reason="case closed")
    _events(ledger, 3)
    last = publish_configured(ledger)
    released = ledger.events_of_kind("hold.released")[0]
    assert first.seq < released.seq < last.seq

    _remove_and_rehash(ledger, released.seq)

    assert ledger.events_of_kind("hold.released") == []
    assert ledger.verify().ok  # the attack: the chain alone says "chain intact"
    report = _checkpoint_verify(ledger, home)
    assert not report.ok
    assert report.bad_checkpoint == last.name
    # Events up to the first checkpoint still match it; the removed event lies after it.
    assert (report.first_bad_seq_from, report.first_bad_seq_to) == (first.seq + 1, last.seq)
    assert f"one of events {first.seq + 1}..{last.seq}" in report.reason, report.reason

    result = _cli("ledger", "verify")
    assert result.exit_code == 1
    assert "FAILED" in result.output and last.name in result.output, result.output
    document = json.loads(_cli("ledger", "verify", "--json").output)
    assert document["ok"] is False and document["reason"].endswith("chain intact")
    assert document["checkpoints"]["bad_checkpoint"] == last.name
    # And no new checkpoint will vouch for the rewritten chain.
    with pytest.raises(CheckpointError, match=f"event {last.seq}|chain head is at"):
        publish_configured(ledger)


def test_a_tail_removed_after_a_checkpoint_is_named(ledger, home) -> None:
    _events(ledger, 3)
    first = publish_configured(ledger)
    _events(ledger, 4)
    last = publish_configured(ledger)
    kept = last.seq - 2
    with as_database_writer(ledger) as conn:  # truncate and move the head back: the chain is whole again
        kept_hash = conn.execute(select(EVENTS.c.hash).where(EVENTS.c.seq == kept)).scalar_one()
        conn.execute(delete(EVENTS).where(EVENTS.c.seq > kept))
        conn.execute(update(ChainHead).where(ChainHead.id == 1).values(seq=kept, hash=kept_hash))

    assert ledger.verify().ok
    report = _checkpoint_verify(ledger, home)
    assert not report.ok and report.bad_checkpoint == last.name
    assert "has no such event" in report.reason
    # The chain is whole up to event `kept`, so the first missing one is right after it.
    assert (report.first_bad_seq_from, report.first_bad_seq_to) == (first.seq + 1, kept + 1)


def test_a_checkpoint_with_a_bad_signature_is_refused(ledger, home) -> None:
    _events(ledger, 3)
    honest = publish_configured(ledger)
    _events(ledger, 2)
    seq, hash_ = ledger.head()
    stranger = SigningKey.generate()
    forged = Checkpoint(seq=seq, hash=hash_, at=honest.at, kid=stranger.kid)
    _store(home).create(forged.name, forged.signed(stranger))

    report = _checkpoint_verify(ledger, home)
    assert not report.ok and report.bad_checkpoint == forged.name
    assert "unknown key" in report.reason

    # The known key's id over a body it never signed: the signature does not verify.
    (home / "checkpoints" / forged.name).unlink()
    honest_signature = json.loads(honest.signed(load_key(home / "checkpoint-key.pem")))["signature"]
    altered = Checkpoint(seq=seq, hash=hash_, at=honest.at, kid=honest.kid)
    document = {"checkpoint": altered.body(), "signature": honest_signature}
    _store(home).create(altered.name, json.dumps(document).encode())
    report = _checkpoint_verify(ledger, home)
    assert not report.ok and report.bad_checkpoint == altered.name
    assert "signature does not verify with its key" in report.reason, report.reason


def test_checkpoints_whose_times_go_back_are_refused(ledger, home) -> None:
    _events(ledger, 2)
    honest = publish_configured(ledger)
    _events(ledger, 1)
    seq, hash_ = ledger.head()
    earlier = (datetime.fromisoformat(honest.at) - timedelta(hours=1)).isoformat(timespec="microseconds")
    backdated = Checkpoint(seq=seq, hash=hash_, at=earlier, kid=honest.kid)
    _store(home).create(backdated.name, backdated.signed(load_key(home / "checkpoint-key.pem")))

    report = _checkpoint_verify(ledger, home)
    assert not report.ok and report.bad_checkpoint == backdated.name
    assert "times must not go back" in report.reason


def test_an_honest_ledger_with_several_checkpoints_verifies(ledger, home) -> None:
    published = []
    for n in (2, 3, 1):
        _events(ledger, n)
        published.append(publish_configured(ledger))
    assert publish_configured(ledger) == published[-1]  # nothing new: no second checkpoint of one event
    _events(ledger, 2)  # after the last checkpoint: vouched for by the chain only, and said so

    files = sorted(p.name for p in (home / "checkpoints" / "checkpoints").iterdir())
    assert files == [Path(c.name).name for c in published]
    assert all(stat.S_IMODE((home / "checkpoints" / c.name).stat().st_mode) == 0o444 for c in published)
    report = _checkpoint_verify(ledger, home)
    assert report.ok, report.reason
    assert (report.checkpoints_checked, report.last_checkpoint_seq) == (3, published[-1].seq)
    result = _cli("ledger", "verify")
    assert result.exit_code == 0, result.output
    assert f"3 checkpoint(s) in directory {home / 'checkpoints'} match the ledger up to event " \
           f"{published[-1].seq}; events after {published[-1].seq} are vouched for by the chain only" in result.output


def test_a_key_file_others_can_read_is_refused(home) -> None:
    os.chmod(home / "checkpoint-key.pem", 0o644)
    with pytest.raises(CheckpointError, match="mode 0644 lets other users read the key"):
        load_key(home / "checkpoint-key.pem")


def test_the_cli_creates_the_key_and_publishes(ledger, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RETENTION_DATABASE_URL", ledger.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("RETENTION_CHECKPOINT_KEY_FILE", str(tmp_path / "keys" / "cp.pem"))
    monkeypatch.setenv("RETENTION_CHECKPOINT_DIR", str(tmp_path / "published"))
    _events(ledger, 2)

    missing = _cli("ledger", "checkpoint")
    assert missing.exit_code == 1 and "RETENTION_CHECKPOINT_KEY_FILE" in missing.output
    made = _cli("ledger", "checkpoint", "--new-key", "--json")
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE((tmp_path / "keys" / "cp.pem").stat().st_mode) == 0o600
    body = json.loads(made.stdout)["checkpoint"]
    assert (body["seq"], body["hash"]) == ledger.head()
    assert body["kid"] == json.loads((tmp_path / "keys" / "cp.jwks").read_text())["keys"][0]["kid"]
    assert (tmp_path / "published" / "keys" / f"{body['kid']}.json").is_file()
    assert _cli("ledger", "checkpoint", "--new-key").exit_code == 1  # an existing key is never replaced


def _finished_run(ledger: Ledger) -> str:
    """A finished sweep with one account's location, for a certificate to be issued on."""
    run_id = ledger.start_run("sweep", dry_run=False, as_of=datetime.now(UTC), rules_digest="a" * 64,
                              actor="staff:1")
    ledger.add_planned_task(run_id, account_id="acct_1001", data_class="chat_transcripts",
                            location="chat_conversations", action="delete", rule_id="r1",
                            skip_reason="under legal hold")
    ledger.finish_run(run_id, "succeeded", actor="staff:1")
    return run_id


def test_issuing_a_certificate_publishes_a_checkpoint_of_its_event(ledger, home) -> None:
    run_id = _finished_run(ledger)

    issue(ledger, run_id, "acct_1001", SigningKey.generate(), exporter="Acme Ltd", importer="Service Inc.",
          rules_dir=REPO / "retention_rules", actor="staff:1")

    issued = ledger.events_of_kind("certificate.issued")[-1]
    report = _checkpoint_verify(ledger, home)
    assert report.ok and report.last_checkpoint_seq == issued.seq == ledger.head()[0], report.reason


def test_a_failed_publish_after_a_certificate_is_logged_and_the_certificate_kept(ledger, home, caplog) -> None:
    run_id = _finished_run(ledger)
    (home / "checkpoint-key.pem").unlink()

    with caplog.at_level(logging.ERROR, logger="retention.ledger.checkpoints"):
        document = issue(ledger, run_id, "acct_1001", SigningKey.generate(), exporter="Acme Ltd",
                         importer="Service Inc.", rules_dir=REPO / "retention_rules", actor="staff:1")

    assert json.loads(document)["certificate"]["account_id"] == "acct_1001"
    assert ledger.events_of_kind("certificate.issued")
    assert any("ledger.checkpoint_failed" in r.getMessage() and "cannot read the checkpoint key" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert not (home / "checkpoints" / "checkpoints").exists()


# -- production: S3 with Object Lock in COMPLIANCE mode --------------------------------------------


@pytest.fixture
def s3_home(home, s3_endpoint, s3_client, make_bucket, monkeypatch) -> str:
    bucket = make_bucket(object_lock=True)
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_CHECKPOINTS", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}))
    monkeypatch.setenv("RETENTION_CHECKPOINT_CONN_ID", "ledger_checkpoints")
    monkeypatch.setenv("RETENTION_CHECKPOINT_BUCKET", bucket)
    return bucket


def test_the_s3_publisher_puts_checkpoints_under_compliance_retention(ledger, home, s3_home, s3_client) -> None:
    _events(ledger, 3)
    checkpoint = publish_configured(ledger)

    # The object's retention as S3 reports it (moto answers GetObjectRetention with XML botocore cannot parse,
    # so it is read from the object's own lock headers).
    head = s3_client.head_object(Bucket=s3_home, Key=checkpoint.name)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=3649)
    version = head["VersionId"]
    with pytest.raises(ClientError) as refused:
        s3_client.delete_object(Bucket=s3_home, Key=checkpoint.name, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as refused:  # the publisher's own write never replaces a name
        s3_client.put_object(Bucket=s3_home, Key=checkpoint.name, Body=b"{}", IfNoneMatch="*")
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"

    settings = Settings.from_env()
    assert verify_configured(ledger, ledger.verify(), settings).ok
    # A plain overwrite adds a version; the signed one stays, and the forged one is named.
    s3_client.put_object(Bucket=s3_home, Key=checkpoint.name, Body=b'{"checkpoint": {}, "signature": ""}')
    assert [n for n, _ in configured_store(settings).read_all("checkpoints/")] == [checkpoint.name] * 2
    report = verify_configured(ledger, ledger.verify(), settings)
    assert not report.ok and report.bad_checkpoint == checkpoint.name and "not a signed checkpoint" in report.reason


def test_a_bucket_without_object_lock_is_refused(ledger, home, s3_home, make_bucket, monkeypatch) -> None:
    monkeypatch.setenv("RETENTION_CHECKPOINT_BUCKET", make_bucket(versioned=True))
    _events(ledger, 1)
    with pytest.raises(CheckpointError, match="Object Lock"):
        publish_configured(ledger)


def test_the_s3_checkpoints_catch_the_rehash_attack(ledger, home, s3_home) -> None:
    _events(ledger, 2)
    hold = ledger.place_hold(account_id="acct_1001", data_class=None, reason="litigation", reference="L-1",
                             placed_by="staff:1")
    ledger.release_hold(hold.id, released_by="staff:2", reason="case closed")
    last = publish_configured(ledger)
    _remove_and_rehash(ledger, ledger.events_of_kind("hold.released")[0].seq)

    assert ledger.verify().ok
    report = verify_configured(ledger, ledger.verify())
    assert not report.ok and report.bad_checkpoint == last.name
    assert (report.first_bad_seq_from, report.first_bad_seq_to) == (1, last.seq)


def test_publish_needs_the_checkpoint_key_in_the_trusted_keys(ledger, home) -> None:
    (home / "checkpoint-key.jwks").write_text(json.dumps({"keys": []}))
    _events(ledger, 1)
    with pytest.raises(CheckpointError, match="lacks the key"):
        publish_configured(ledger)
    assert not (home / "checkpoints").exists()


def test_no_checkpoint_vouches_for_a_broken_chain(ledger, home) -> None:
    _events(ledger, 3)
    with as_database_writer(ledger) as conn:
        conn.execute(update(EVENTS).where(EVENTS.c.seq == 2).values(actor="staff:9"))
    with pytest.raises(CheckpointError, match="no checkpoint published: event 2"):
        publish_configured(ledger)
    assert not (home / "checkpoints").exists()


@pytest.mark.parametrize("days", ["0", "ten"])
def test_a_bad_retention_period_is_refused_naming_the_setting(ledger, home, monkeypatch, days) -> None:
    monkeypatch.setenv("RETENTION_CHECKPOINT_RETENTION_DAYS", days)
    _events(ledger, 1)
    result = _cli("ledger", "checkpoint")
    assert result.exit_code == 1 and "RETENTION_CHECKPOINT_RETENTION_DAYS" in result.output, result.output
    assert not (home / "checkpoints").exists()
