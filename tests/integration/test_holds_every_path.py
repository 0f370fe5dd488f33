"""Every deleting path asks for the legal holds in force right before it acts, and "in force" means "not
released", read from the ledger's rows: a hold whose placed_at came from a clock ahead of this machine's
still stops the next step. One test per path: a hold placed between two steps, nothing more of the held
scope goes, and the ledger says which hold stopped it."""

from __future__ import annotations

import pendulum
import pytest

from retention.engine import SweepContext, sweep
from retention.engine.replay import replay
from retention.ledger import Ledger
from retention.offboarding import returns
from retention.settings import Settings
from retention.stores import open_store
from retention.subprocessors import Credentials, erase
from retention.subprocessors import tasks as subprocessor_steps
from tests.emulators.sentry import TOKEN, SentryEmulator
from tests.fixtures.subprocessors import shipped_spec
from tests.integration.test_sweep import HoldAfterFirstBatch

HELD = "acct_1001"
AHEAD = pendulum.duration(minutes=2)  # the api-server's clock, ahead of the worker's


def place_hold(ledger: Ledger, *, data_class: str | None = None, ahead: bool = True):
    """A hold as a machine whose clock runs two minutes ahead would record it."""
    return ledger.place_hold(account_id=HELD, data_class=data_class, reason="litigation", reference="LEGAL-14",
                             placed_by="counsel", at=pendulum.now("UTC") + AHEAD if ahead else None)


def test_sql_and_s3_batches_stop_at_a_hold_stamped_ahead_of_this_machines_clock(stack) -> None:
    before = stack.rows()
    with Ledger.open(stack.ledger_url) as ledger:
        ahead = pendulum.now("UTC") + AHEAD
        ctx = SweepContext.load(Settings.from_env(), ledger, open_store=lambda loc, spec: HoldAfterFirstBatch(
            open_store(loc, spec), stack.ledger_url, at=ahead))
        report = sweep(ctx, stack.now, dry_run=False, actor="test")
        hold = ledger.list_holds()[0]
        assert hold.placed_at > pendulum.now("UTC")  # not yet "placed" by this machine's clock, yet in force
        held_events = [e for e in ledger.run_events(report.run_id, "task.held") if e.payload["account_id"] == HELD]

    mine = [ln for ln in report.lines if ln.account_id == HELD and ln.action == "delete"]
    deleted = [ln for ln in mine if ln.affected]
    assert len(deleted) == 1, "only the batch before the hold deleted anything"
    # SQL deletes many accounts per batch: the first batch's task may be held with what that batch deleted.
    held = [ln for ln in mine if ln.status == "held"]
    assert held and all(ln.affected == 0 for ln in held if ln not in deleted)
    assert held_events and all(e.payload["holds"] == [hold.id] for e in held_events)
    after = stack.rows()
    for ln in held:
        if (ln.location, HELD) in before:
            assert before[(ln.location, HELD)] - after.get((ln.location, HELD), 0) == ln.affected


class HoldAfterFirstOutcome:
    """The real ledger, placing a hold as soon as the first delete call's outcome is recorded."""

    def __init__(self, ledger: Ledger, data_class: str):
        self.ledger, self.data_class = ledger, data_class

    def __getattr__(self, name):
        return getattr(self.ledger, name)

    def append(self, kind, payload, **kwargs):
        event = self.ledger.append(kind, payload, **kwargs)
        if kind == "subprocessor.outcome" and not self.ledger.list_holds():
            place_hold(self.ledger, data_class=self.data_class)
        return event


def test_a_subprocessor_erasure_stops_at_a_hold_placed_between_two_delete_calls(tmp_path) -> None:
    spec = shipped_spec("sentry")
    emulator = SentryEmulator(page_size=25)
    emulator.add_project(HELD, unresolved=130)  # two delete calls of 100 and 30 ids
    with emulator, Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        credentials = Credentials(base_url=emulator.url, login=None, password=TOKEN, extra=None,
                                  from_connection_host=True)
        result = erase(spec, "issues", HELD, ledger=HoldAfterFirstOutcome(ledger, "error_reports"), actor="test",
                       credentials=credentials, sleep=lambda s: None)
        kinds = [e.kind for e in ledger.events() if e.kind.startswith("subprocessor.")]
        held = ledger.events_of_kind("subprocessor.held")

    assert [len(r["ids"]) for r in emulator.bulk_removes] == [100]  # the second call was never sent
    assert result.status == "held" and result.deleted == 100
    assert kinds.count("subprocessor.intent") == kinds.count("subprocessor.outcome") == 1
    assert "subprocessor.verified" not in kinds  # what is kept is not residue
    assert [(e.payload["account_id"], e.payload["data_class"], len(e.payload["holds"])) for e in held] == [
        (HELD, "error_reports", 1)]


def test_a_manual_request_is_not_opened_for_held_data(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("RETENTION_DATABASE_URL", url)
    with Ledger.open(url) as ledger:
        hold = place_hold(ledger, data_class="enrichment_data")
    answer = subprocessor_steps.open_manual_request("sixsense", HELD, requested_by="csm-3", actor="test")
    other = subprocessor_steps.open_manual_request("sixsense", "acct_2002", requested_by="csm-3", actor="test")
    with Ledger.open(url) as ledger:
        requested = [e.payload["account_id"] for e in ledger.events_of_kind("subprocessor.manual_requested")]
        held = ledger.events_of_kind("subprocessor.held")
    assert answer == {"held": [hold.id]} and "channel" in other
    assert requested == ["acct_2002"]
    assert [(e.payload["account_id"], e.payload["holds"]) for e in held] == [(HELD, [hold.id])]


@pytest.fixture
def package(s3_endpoint, tmp_path):
    """A delivered return package in a real (local) S3 bucket, and the ledger run that delivered it."""
    from retention import embedded

    client = embedded.s3_client(s3_endpoint)
    bucket = f"returns-{tmp_path.name.lower().replace('_', '-')[:40]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="pkg-1/package.tar.age", Body=b"sealed")
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    run_id = ledger.start_run("offboarding", dry_run=False, as_of=pendulum.now("UTC"), rules_digest="0" * 64,
                              actor="test")
    ledger.append("return.delivered", {"package_id": "pkg-1", "account_id": HELD, "bucket": bucket,
                                       "key": "pkg-1/package.tar.age"}, actor="test", run_id=run_id)
    yield ledger, run_id, client, bucket
    ledger.close()


def test_a_return_package_is_kept_while_a_hold_covers_the_account(package) -> None:
    ledger, run_id, client, bucket = package
    hold = place_hold(ledger, data_class="call_recordings", ahead=False)  # any class: the package holds them all

    assert returns.remove_package(ledger, run_id, client=client, actor="test") is False
    assert returns.remove_package(ledger, run_id, client=client, actor="test") is False
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 1
    assert [e.payload["holds"] for e in ledger.run_events(run_id, "return.removal_held")] == [[hold.id]]

    ledger.release_hold(hold.id, released_by="counsel-2", reason="matter closed")
    assert returns.remove_package(ledger, run_id, client=client, actor="test") is True
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_replay_after_a_restore_does_not_delete_held_data_again(stack) -> None:
    from tests.integration.test_crash import reseed

    since = pendulum.now("UTC")
    with Ledger.open(stack.ledger_url) as ledger:
        ctx = SweepContext.load(Settings.from_env(), ledger)
        sweep(ctx, stack.now, dry_run=False, actor="test")
    restored = stack.rows()
    reseed(stack)  # a restore brings the deleted rows back
    restored_again = stack.rows()
    assert sum(restored_again.values()) > sum(restored.values())
    with Ledger.open(stack.ledger_url) as ledger:
        hold = place_hold(ledger)
        report = replay(SweepContext.load(Settings.from_env(), ledger), since, actor="test")
        skipped = [t for t in ledger.tasks(report.run_id) if t.account_id == HELD]
    after = stack.rows()
    assert skipped and all(t.status == "skipped" and hold.id in t.skip_reason for t in skipped)
    assert {k: v for k, v in after.items() if k[1] == HELD} == {k: v for k, v in restored_again.items() if k[1] == HELD}
    assert sum(after.values()) < sum(restored_again.values())  # the rest was deleted again


def test_placing_a_hold_cancels_a_scheduled_key_deletion_at_once(tmp_path) -> None:
    """KMS destroys a key by itself when its window ends: the hold cannot wait for the daily run."""
    from retention.backups import LocalKeystore
    from retention.backups.keystore import ENABLED, PENDING_DELETION
    from retention.offboarding.backups import _record_scheduled, protect_held_keys

    store = LocalKeystore(tmp_path / "keys")
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        for account in (HELD, "acct_2002"):
            store.generate_data_key(account)
            key = store.schedule_deletion(account, window_days=7, at=pendulum.now("UTC"))
            _record_scheduled(ledger, store, account, key, [], actor="test")
        hold = place_hold(ledger, ahead=False)

        assert protect_held_keys(ledger, Settings.from_env(), actor="test", store=store) == [HELD]
        assert protect_held_keys(ledger, Settings.from_env(), actor="test", store=store) == []  # kept already
        held = ledger.events_of_kind("backup.key_deletion_held")
    assert store.state(HELD).state == ENABLED and store.state("acct_2002").state == PENDING_DELETION
    assert [(e.payload["account_id"], e.payload["holds"], e.payload["stage"]) for e in held] == [
        (HELD, [hold.id], "destroy")]
