"""The termination_offboarding DAG end to end through dag.test() on the embedded stack: real PostgreSQL,
the local S3 endpoint, the SendGrid emulator, the local keystore; each run is triggered by an Airflow user
(``retention.triggered.run_as``), the approval is answered from another thread as another SimpleAuthManager
user through Airflow's HITL API function, the return receipt through the plugin's customer route."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pendulum
import pyrage
import pytest

from retention import embedded
from retention.backups import LocalKeystore, SnapshotCatalog, restore_snapshot, take_snapshot
from retention.certificates import KeySet, rotate, verify_file
from retention.ledger import Ledger
from retention.offboarding import tasks as offboarding_tasks
from retention.triggered import run_as
from tests.dags.test_subprocessor_erasure import answer_when_asked
from tests.emulators.sendgrid import KEY, SendGridEmulator

os.environ["RETENTION_RETURN_POLL_SECONDS"] = "1"  # read when the DAG file is parsed
DAGS = Path(__file__).resolve().parents[2] / "dags"
ACCOUNT = "acct_1001"  # EEA, active: its invoices are kept ten years under §147 AO, isolated
OTHERS = ["acct_2002", "acct_3003", "acct_4004", "acct_5005", "acct_6006"]
# SimpleAuthManager users: alice requests; dpo-7 (op) approves; vera is a Viewer.
USERS = "alice:op,dpo-7:op,vera:viewer"


@pytest.fixture(scope="module")
def offboarding_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.dags["termination_offboarding"]
    # Airflow 3.3.2's dag.test() runs a DAG's own failure callbacks itself, in a context rebuilt from the serialized
    # tasks, whose Params without a default fail validation before the run's conf is applied (ParamValidationError
    # out of dag.test()). Under the scheduler the dag processor runs them on the parsed DAG (tests/e2e); here the
    # DAG-level notifier is left out, each task's own stays (test_dag_integrity checks both are declared).
    dag.on_failure_callback, dag.has_on_failure_callback = None, False
    return dag


@pytest.fixture
def sendgrid():
    with SendGridEmulator(pending_polls=1) as emulator:
        emulator.add_tenant(ACCOUNT, contacts=60)
        emulator.add_tenant("acct_2002", contacts=7)
        yield emulator


@pytest.fixture
def world(stack, sendgrid, tmp_path, monkeypatch):
    """The stack plus what an offboarding needs: keys, a link secret, a snapshot, a data key per account."""
    home = tmp_path / "home"
    host, port = sendgrid.url.removeprefix("http://").split(":")
    env = {"RETENTION_HOME": str(home), "RETENTION_SIGNING_KEY_FILE": str(home / "keys" / "signing.pem"),
           "RETENTION_JWKS_FILE": str(home / "keys" / "jwks.json"),
           "RETENTION_LINK_SECRET": "RxcHTQZQtHvYtTccZ9tclN6xQ0XWXUTbpgjfiE_s_q4",
           "RETENTION_PROCESSOR_NAME": "Demo Processor Inc.", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
           "AIRFLOW_CONN_SENDGRID": json.dumps({"conn_type": "http", "host": host, "port": int(port),
                                                "schema": "http", "password": KEY})}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    rotate(home / "keys" / "signing.pem", home / "keys" / "jwks.json")
    Ledger.open(stack.ledger_url).close()
    for account in [ACCOUNT, *OTHERS]:
        LocalKeystore(home / "keystore").data_key(account)
    catalog = SnapshotCatalog(embedded.s3_client(stack.endpoint), "backups", "app_db/", "app_db")
    snapshot = take_snapshot(stack.app_url, catalog)
    return {"stack": stack, "home": home, "catalog": catalog, "snapshot": snapshot, "sendgrid": sendgrid}


def conf(**overrides) -> dict:
    return {"account_id": ACCOUNT, "choice": "delete", "reference": "OFF-1001",
            "subprocessors": ["sendgrid", "sixsense"], **overrides}


def run_dag(dag, run_conf: dict, answer: str = "Approve", reason: str = "contract ended, DPA 7(b)", *,
            requester: str = "alice", approver: str = "dpo-7", approver_role: str = "op"):
    """The run as ``requester`` triggered it, answered by ``approver`` when it asks."""
    helper = answer_when_asked("termination_offboarding", "approve", [answer], {"reason": reason}, user=approver,
                               role=approver_role)
    run = run_as(dag, requester, run_conf=run_conf)
    helper.join(timeout=10)
    assert helper.error is None
    return run, {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def others(stack) -> dict:
    rows = {k: v for k, v in stack.rows().items() if k[1] != ACCOUNT}
    objects = {(b, a): stack.objects(b, a) for b in ("chat-attachments", "call-recordings") for a in OTHERS}
    return {"rows": rows, "objects": objects}


def account_rows(stack) -> dict:
    return {table: n for (table, account), n in stack.rows().items() if account == ACCOUNT}


def events(stack, prefix: str = "") -> list:
    with Ledger.open(stack.ledger_url) as ledger:
        assert ledger.verify().ok
        return [e for e in ledger.events() if e.kind.startswith(prefix)]


def certificate_of(world) -> dict:
    directory = world["home"] / "certificates"
    pdfs = sorted(directory.glob("cert-*.pdf"))
    assert len(pdfs) == 1
    return verify_file(pdfs[0].read_bytes(), KeySet.read(world["home"] / "keys" / "jwks.json")).certificate


def test_delete_leaves_nothing_of_the_account_isolates_billing_and_certifies(offboarding_dag, world) -> None:
    stack = world["stack"]
    before_others, invoices = others(stack), account_rows(stack)["invoices"]

    run, states = run_dag(offboarding_dag, conf())

    assert str(run.state) == "success", states
    left = account_rows(stack)
    assert {t: n for t, n in left.items() if n} == {"retention_vault.invoices": invoices}  # only the isolated copy
    assert stack.objects("chat-attachments", ACCOUNT) == 0 and stack.objects("call-recordings", ACCOUNT) == 0
    assert world["sendgrid"].remaining(ACCOUNT)["contacts"] == 0
    assert world["sendgrid"].remaining("acct_2002")["contacts"] == 7
    assert others(stack) == before_others

    certificate = certificate_of(world)
    termination = certificate["termination"]
    assert certificate["data_exporter"] == "Northwind Traders GmbH"
    assert certificate["legal_basis"] == ["DPA 7(b)", "SCC 2010/87/EU Clause 12"]
    assert (termination["requested"]["by"], termination["approved"]["by"]) == ("api:alice", "api:dpo-7")
    assert termination["election"]["choice"] == "delete" and termination["return"] is None
    kinds = {e["kind"]: e for e in certificate["exceptions"]}
    assert set(kinds) == {"retained_under_law", "backup_key_pending", "backup_copies_expiring",
                          "subprocessor_requested"}
    assert "§147 AO" in kinds["retained_under_law"]["law"] and kinds["retained_under_law"]["retain_until"]
    assert kinds["backup_copies_expiring"]["snapshots"] == 1
    assert kinds["subprocessor_requested"]["subprocessor"] == "sixsense"
    assert all(line["verification"]["result"] == "verified" for line in certificate["locations"])
    affected = {line["location"]: line["records_affected"] for line in certificate["locations"]}
    assert affected["invoices"] == invoices and all(n >= 0 for n in affected.values())
    links = events(stack, "certificate.link_created")
    assert [e.payload["certificate_id"] for e in links] == [certificate["certificate_id"]]

    # certify cleared after it succeeded: the same certificate, a new link, never a second certificate
    (issued,) = events(stack, "certificate.issued")
    again = offboarding_tasks.certify(issued.run_id, actor="on-call")
    assert again["certificate_id"] == certificate["certificate_id"] and again["link"] is not None
    assert len(events(stack, "certificate.issued")) == 1 and len(events(stack, "certificate.link_created")) == 2
    assert certificate_of(world)["certificate_id"] == certificate["certificate_id"]  # still one file


def test_a_failed_subprocessor_erasure_fails_the_run_before_any_certificate(offboarding_dag, world,
                                                                             monkeypatch) -> None:
    """The subprocessor groups gate certify both ways: the unselected ones are skipped and do not hold it back, a
    selected one that fails keeps the certificate back and fails the run."""
    sendgrid = world["sendgrid"]
    host, port = sendgrid.url.removeprefix("http://").split(":")
    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID", json.dumps({"conn_type": "http", "host": host, "port": int(port),
                                                            "schema": "http", "password": "SG.revoked-key"}))
    monkeypatch.setattr(offboarding_dag.get_task("sendgrid.erase_1"), "retries", 0)  # dag.test() waits out retries

    run, states = run_dag(offboarding_dag, conf())

    assert str(run.state) == "failed", states
    assert states["sendgrid.erase_1"] == "failed" and states["certify"] == "upstream_failed"
    assert states["twilio.selected"] == "skipped" and states["sixsense.open_request"] == "success"
    assert states["backups"] == "success"  # the deletions went on beside the subprocessors
    assert sendgrid.remaining(ACCOUNT)["contacts"] == 60
    assert not list((world["home"] / "certificates").glob("*.pdf")) and not events(world["stack"], "certificate.")


def test_held_data_stays_backups_included_and_everything_else_is_deleted_and_verified(offboarding_dag, world) -> None:
    from retention.offboarding.tasks import confirm_backups

    stack, keystore = world["stack"], LocalKeystore(world["home"] / "keystore")
    with Ledger.open(stack.ledger_url) as ledger:  # everything in object storage is held: execute_s3 maps over nothing
        held = [ledger.place_hold(account_id=ACCOUNT, data_class=data_class, reason="litigation", reference="LEGAL-7",
                                  placed_by="legal-1").id for data_class in ("chat_transcripts", "call_recordings")]
    objects = {bucket: stack.objects(bucket, ACCOUNT) for bucket in ("chat-attachments", "call-recordings")}

    run, states = run_dag(offboarding_dag, conf())

    assert str(run.state) == "success", states
    assert states["execute_s3"] == "skipped" and states["verify"] == "success" and states["backups"] == "success"
    assert {bucket: stack.objects(bucket, ACCOUNT) for bucket in objects} == objects and all(objects.values())
    left = account_rows(stack)
    assert left.get("chat_conversations", 0) > 0 and left.get("contacts", 0) == 0  # held class kept, the rest deleted
    certificate = certificate_of(world)
    lines = {line["location"]: line for line in certificate["locations"]}
    assert lines["call_recordings"]["nist_800_88"]["category"] == "none (kept)"
    assert lines["contacts"]["verification"]["result"] == "verified"
    key_held = next(e for e in certificate["exceptions"] if e["kind"] == "backup_key_held")
    assert key_held["holds"] == sorted(held)
    assert confirm_backups(actor="test", now=pendulum.now("UTC").add(days=31)) == []
    assert keystore.state(ACCOUNT).state == "enabled"  # the backups keep the held data readable


def test_isolated_billing_records_are_out_of_reach_of_application_roles(offboarding_dag, world) -> None:
    import sqlalchemy as sa

    stack = world["stack"]
    run, states = run_dag(offboarding_dag, conf())
    assert str(run.state) == "success", states
    admin = sa.create_engine(stack.app_url)
    with admin.begin() as conn:
        conn.execute(sa.text("DROP ROLE IF EXISTS app_reader"))
        conn.execute(sa.text("CREATE ROLE app_reader"))
        conn.execute(sa.text("GRANT SELECT ON ALL TABLES IN SCHEMA public TO app_reader"))
    with admin.connect() as conn:
        conn.execute(sa.text("SET ROLE app_reader"))
        assert conn.execute(sa.text("SELECT count(*) FROM invoices")).scalar_one() > 0  # others' invoices
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("SELECT count(*) FROM retention_vault.invoices"))
    admin.dispose()


def test_return_delivers_a_package_matching_the_data_then_deletes(offboarding_dag, world) -> None:
    stack, identity = world["stack"], pyrage.x25519.Identity.generate()
    before = account_rows(stack)
    customer = open_package_and_confirm(identity)

    run, states = run_dag(offboarding_dag, conf(choice="return", return_recipient=str(identity.to_public())))
    customer.join(timeout=10)

    assert customer.error is None and str(run.state) == "success", (customer.error, states)
    assert customer.receipt_status == 200
    files = customer.files
    manifest = json.loads(files["manifest.json"])
    assert sorted(files) == sorted(["manifest.json", *(entry["path"] for entry in manifest["files"])])
    for entry in manifest["files"]:
        assert hashlib.sha256(files[entry["path"]]).hexdigest() == entry["sha256"]
    contacts = next(data for path, data in files.items() if path.endswith("contacts.jsonl"))
    assert len(contacts.splitlines()) == manifest["records"]["contacts"] == before["contacts"]
    assert manifest["records"]["invoices"] == before["invoices"]
    attachments = sum(1 for path in files if path.startswith("chat_attachments/"))
    assert attachments == manifest["records"]["chat_attachments"] > 0
    assert {t: n for t, n in account_rows(stack).items() if n} == {"retention_vault.invoices": before["invoices"]}
    returned = certificate_of(world)["termination"]["return"]
    assert returned["manifest_sha256"] == hashlib.sha256(files["manifest.json"]).hexdigest()
    assert returned["receipt"] is not None
    assert [e.kind for e in events(stack, "return.")] == ["return.delivered", "return.received",
                                                          "return.package_removed"]
    delivered = events(stack, "return.delivered")[0].payload
    listed = embedded.s3_client(stack.endpoint).list_object_versions(Bucket=delivered["bucket"],
                                                                     Prefix=delivered["key"])
    assert not listed.get("Versions") and not listed.get("DeleteMarkers")  # the encrypted copy is gone too
    assert returned["package_deleted_at"]


def test_without_a_receipt_deletion_waits_for_the_return_window_to_end(offboarding_dag, world) -> None:
    stack, identity = world["stack"], pyrage.x25519.Identity.generate()
    invoices = account_rows(stack)["invoices"]
    run, states = run_dag(offboarding_dag, conf(choice="return", return_recipient=str(identity.to_public()),
                                                return_window_days=0))

    assert str(run.state) == "success", states
    assert [e.kind for e in events(stack, "return.")] == ["return.delivered", "return.window_elapsed",
                                                          "return.package_removed"]
    assert {t: n for t, n in account_rows(stack).items() if n} == {"retention_vault.invoices": invoices}
    returned = certificate_of(world)["termination"]["return"]
    assert returned["receipt"] is None and returned["window_elapsed_at"]


def test_rejection_touches_nothing_and_the_ledger_says_who_and_why(offboarding_dag, world) -> None:
    stack = world["stack"]
    before = stack.rows()
    run, states = run_dag(offboarding_dag, conf(), answer="Reject", reason="customer withdrew the notice")

    assert states["approve"] == "success" and states["execute_sql"] in ("skipped", "None")
    assert stack.rows() == before and stack.objects("chat-attachments", ACCOUNT) > 0
    assert world["sendgrid"].remaining(ACCOUNT)["contacts"] == 60
    rejected = events(stack, "offboarding.rejected")
    assert [e.payload["approver_id"] for e in rejected] == ["api:dpo-7"]
    with Ledger.open(stack.ledger_url) as ledger:  # the reason is kept erasable, outside the chain
        assert ledger.text(rejected[0].payload["reason_sha256"]) == "customer withdrew the notice"
    assert [e.payload["status"] for e in events(stack, "run.finished")] == ["rejected"]
    assert not events(stack, "batch.intent") and not list((world["home"] / "certificates").glob("*.pdf"))

    from retention.engine import tasks as engine
    from retention.engine.executor import NotPermitted

    with pytest.raises(NotPermitted, match="rejected"):  # as if someone cleared an execute task afterwards
        engine.execute(rejected[0].run_id, "contacts", actor="test")
    assert stack.rows() == before


def test_the_triggering_user_cannot_approve_their_own_offboarding(offboarding_dag, world) -> None:
    """alice triggered the run; alice holds the approval permission (op) but answers her own request."""
    stack = world["stack"]
    before = stack.rows()
    run, states = run_dag(offboarding_dag, conf(), requester="alice", approver="alice")

    assert str(run.state) == "failed" and states["approve"] == "failed"
    assert stack.rows() == before
    refused = events(stack, "offboarding.")
    assert [e.kind for e in refused] == ["offboarding.requested", "offboarding.self_approval_refused"]
    assert (refused[0].payload["requested_by"], refused[1].payload["approver_id"]) == ("api:alice", "api:alice")


def test_a_viewer_cannot_answer_an_offboarding(offboarding_dag, world) -> None:
    """vera is another person than the requester, but only a Viewer: her approval is refused and recorded."""
    stack = world["stack"]
    before = stack.rows()
    run, states = run_dag(offboarding_dag, conf(), approver="vera", approver_role="viewer")

    assert str(run.state) == "failed" and states["approve"] == "failed"
    assert stack.rows() == before and world["sendgrid"].remaining(ACCOUNT)["contacts"] == 60
    refused = events(stack, "offboarding.")
    assert [e.kind for e in refused] == ["offboarding.requested", "offboarding.approval_not_permitted"]
    assert refused[1].payload["approver_id"] == "api:vera"
    assert not events(stack, "batch.intent")


@pytest.mark.parametrize(("requester", "extra"), [(None, {}), ("alice", {"requested_by": "dpo-7"})],
                         ids=["no-triggering-user", "typed-requester"])
def test_a_run_without_an_authenticated_requester_plans_nothing(offboarding_dag, world, requester, extra) -> None:
    """A run the scheduler or an internal trigger made has no user; a conf naming a requester claims one."""
    stack = world["stack"]
    before = stack.rows()
    run = run_as(offboarding_dag, requester, run_conf=conf(**extra))

    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "failed" and states["plan"] == "failed", states
    assert states["approve"] == "upstream_failed"
    assert events(stack) == [] and stack.rows() == before


def test_invalid_conf_is_refused_before_any_task_runs(offboarding_dag, world) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="choice"):
        offboarding_dag.test(run_conf=conf(choice="archive"))
    assert not events(world["stack"])


def test_a_restored_snapshot_is_deleted_again_by_replay(offboarding_dag, world) -> None:
    from click.testing import CliRunner

    from retention.cli import main

    stack = world["stack"]
    invoices = account_rows(stack)["invoices"]
    run, states = run_dag(offboarding_dag, conf())
    assert str(run.state) == "success", states

    restore_snapshot(stack.app_url, world["catalog"], world["snapshot"].id)  # the database as it was before
    assert account_rows(stack)["contacts"] > 0 and account_rows(stack).get("retention_vault.invoices", 0) == 0

    result = CliRunner().invoke(main, ["replay", "--since", world["snapshot"].taken_at.isoformat(), "--json"])
    assert result.exit_code == 0, result.output
    assert {t: n for t, n in account_rows(stack).items() if n} == {"retention_vault.invoices": invoices}
    assert json.loads(result.output)["status"] == "succeeded"


def test_backup_expiry_confirms_snapshots_and_key_destruction_by_supplement(offboarding_dag, world) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from retention.backups import KeyDestroyed
    from retention.offboarding.tasks import confirm_backups, supplement_certificates

    stack, keystore = world["stack"], LocalKeystore(world["home"] / "keystore")
    run, states = run_dag(offboarding_dag, conf())
    assert str(run.state) == "success", states
    certificate_id = certificate_of(world)["certificate_id"]
    assert keystore.state(ACCOUNT).state == "pending_deletion"

    embedded.s3_client(stack.endpoint).delete_object(Bucket="backups", Key=world["snapshot"].id)  # expired by lifecycle
    expiry = DagBag(dag_folder=str(DAGS)).dags["backup_expiry"].test()
    assert str(expiry.state) == "success"
    first = supplements(world)
    assert [(s["supplements"]["certificate_id"], s["status"]) for s in first] == [(certificate_id, "partial")]
    assert [e["kind"] for e in first[0]["resolved"]] == ["backup_copies_expiring"]
    assert "backup_key_pending" in [e["kind"] for e in first[0]["still_open"]]

    due = keystore.state(ACCOUNT).deletion_date + timedelta(minutes=1)  # the daily run after the key's window
    assert confirm_backups(actor="test", now=due - timedelta(days=1)) == []  # not yet
    keystore.destroy_due(due)  # a run that crashed after destroying the key, before the ledger heard of it
    assert confirm_backups(actor="test", now=due) == [ACCOUNT]
    supplement_certificates([ACCOUNT], actor="test")
    with pytest.raises(KeyDestroyed):
        keystore.data_key(ACCOUNT)
    latest = supplements(world)[-1]
    destroyed = next(e for e in latest["resolved"] if e["kind"] == "backup_key_pending")
    assert destroyed["evidence"] == f"destroyed at {events(stack, 'backup.key_destroyed')[0].payload['destroyed_at']}"
    assert keystore.state("acct_2002").state == "enabled"  # other customers' keys are untouched


def supplements(world) -> list[dict]:
    keys = KeySet.read(world["home"] / "keys" / "jwks.json")
    found = [verify_file(p.read_bytes(), keys).certificate
             for p in (world["home"] / "certificates" / "supplements").glob("*.json")]
    return sorted(found, key=lambda s: s["issued_at"])


def open_package_and_confirm(identity, *, timeout: float = 240) -> threading.Thread:
    """The customer, in another thread: takes the link the DAG delivered (its XCom, as staff would forward it),
    downloads and decrypts the package, and confirms receipt by quoting the manifest's sha256."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from retention.api.app import create_app

    def confirm() -> None:
        try:
            delivered = _wait_for_xcom("termination_offboarding", "deliver_return", timeout)
            with urllib.request.urlopen(delivered["url"]) as response:
                package = pyrage.decrypt(response.read(), [identity])
            thread.files = _untar(package, delivered["package_id"])
            site = FastAPI()
            site.mount("/retention", create_app())  # where the plugin mounts it
            answer = TestClient(site).post(delivered["receipt_path"], json={
                "manifest_sha256": hashlib.sha256(thread.files["manifest.json"]).hexdigest()})
            thread.receipt_status = answer.status_code
        except BaseException as exc:  # surfaced by the test through thread.error
            thread.error = exc

    thread = threading.Thread(target=confirm, daemon=True)
    thread.error, thread.files, thread.receipt_status = None, {}, None
    thread.start()
    return thread


def _wait_for_xcom(dag_id: str, task_id: str, timeout: float):
    """The value ``task_id`` returns in a run that starts after this call."""
    import sqlalchemy as sa
    from airflow.models.xcom import XComModel
    from airflow.sdk import timezone
    from airflow.utils.session import create_session

    since, deadline = timezone.utcnow(), time.monotonic() + timeout
    query = sa.select(XComModel.value).where(XComModel.dag_id == dag_id, XComModel.task_id == task_id,
                                             XComModel.key == "return_value", XComModel.timestamp >= since)
    while time.monotonic() < deadline:
        try:
            with create_session() as session:
                row = session.execute(query).first()
            if row is not None:
                return XComModel.deserialize_value(row)
        except sa.exc.OperationalError:  # SQLite "database is locked" while dag.test() writes: try again
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{dag_id}.{task_id} returned nothing in {timeout} s")


def _untar(data: bytes, top: str) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.removeprefix(f"{top}/"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_a_redis_location_is_offboarded_verified_and_certified(offboarding_dag, world, redis_server, tmp_path,
                                                               monkeypatch) -> None:
    """A Redis location added to the inventory only: its execute task, pool and NIST statement come from the
    kind registry."""
    from retention.stores.kinds import REDIS_PHYSICAL
    from tests.dags.test_retention_sweep import seed_presence, with_redis_location

    stack = world["stack"]
    with_redis_location(stack, redis_server, tmp_path, monkeypatch)
    client = redis_server.client()
    made = seed_presence(client, stack.now, [ACCOUNT, *OTHERS])

    run, states = run_dag(offboarding_dag, conf())

    assert str(run.state) == "success" and states["execute_redis"] == "success", states
    assert [k for k in made[ACCOUNT] if client.exists(k)] == []
    kept = [k for account, keys in made.items() if account != ACCOUNT for k in keys]
    assert all(client.exists(k) for k in kept) and len(kept) == 6 * (len(OTHERS) + 1)  # acct_10011 too
    line = next(line for line in certificate_of(world)["locations"] if line["location"] == "presence")
    assert (line["store"], line["action"], line["records_affected"]) == ("redis", "delete", 6)
    assert line["verification"]["result"] == "verified" and line["verification"]["remaining"] == 0
    assert line["nist_800_88"] == {"category": "clear", "method": "keys removed (Redis UNLINK)",
                                   "physical": REDIS_PHYSICAL}
