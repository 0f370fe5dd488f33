"""docker-compose.yml can't be started here (no Docker engine), so its structure is checked instead:
the services and executor of a production stack, health checks, mounts, migrations, no secret in it, ports
on the loopback interface only, and each secret only in the services whose work needs it (issue 15)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-worker-certify"]
# Who signs certificates or makes/opens customer links: the api-server (POST /retention/certificates, the
# link and JWKS routes) and the worker of the `certify` queue. No other service gets the key or the secret.
SIGNERS = {"airflow-apiserver", "airflow-worker-certify"}
CERTIFY_TASKS = {("termination_offboarding", "certify"), ("termination_offboarding", "deliver_return"),
                 ("backup_expiry", "supplement"), ("ledger_checkpoint", "publish"),
                 ("subject_request", "certify")}
SIGNING_SECRETS = {"retention_signing_key": "RETENTION_SIGNING_KEY_FILE",
                   "retention_checkpoint_key": "RETENTION_CHECKPOINT_KEY_FILE"}
RUNTIME_ROLE, OWNER_ROLE = "retention_ledger_runtime", "retention_ledger_owner"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|_KEY\b|TOKEN|AIRFLOW_CONN_")
REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+(:?[?-][^}]*)?\}$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def test_the_stack_has_every_service_of_a_distributed_airflow(compose) -> None:
    assert set(compose["services"]) >= {"postgres", "redis", "minio", "minio-init", "airflow-init", *AIRFLOW_SERVICES}
    for name in AIRFLOW_SERVICES:
        assert environment(compose["services"][name])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
    assert compose["services"]["airflow-worker"]["command"] == "celery worker --queues default"
    assert compose["services"]["airflow-worker-certify"]["command"].startswith("celery worker --queues certify ")
    assert compose["services"]["airflow-triggerer"]["command"] == "triggerer"  # deferred subprocessor jobs


def test_every_long_running_service_has_a_health_check_and_airflow_waits_for_init(compose) -> None:
    for name, service in compose["services"].items():
        if name.endswith("-init"):
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in AIRFLOW_SERVICES:
        depends = compose["services"][name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
        assert {"postgres", "redis", "minio"} <= set(depends), name


def test_the_project_is_mounted_into_every_airflow_service(compose) -> None:
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        targets = {volume.split(":")[1] for volume in compose["services"][name]["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/retention_rules"} <= targets, name


def test_init_migrates_the_ledger_as_its_owner_then_grants_the_runtime_role(compose) -> None:
    lines = [line.strip() for line in compose["services"]["airflow-init"]["command"][-1].splitlines()]
    migrate = 'RETENTION_DATABASE_URL="$$RETENTION_LEDGER_OWNER_URL" retention ledger migrate'  # compose: $$ is $
    assert "airflow db migrate" in lines and lines.index(migrate) < lines.index("retention ledger grant")
    env = environment(compose["services"]["airflow-init"])
    assert _user_and_database(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]) == ("airflow", "airflow")
    assert _user_and_database(env["RETENTION_LEDGER_OWNER_URL"]) == (OWNER_ROLE, "retention_ledger")
    assert env["RETENTION_LEDGER_RUNTIME_ROLE"] == RUNTIME_ROLE
    assert "RETENTION_DATABASE_URL" not in env  # its one ledger connection is the owner's


def test_init_sets_the_pools_from_their_declarations_after_migrating_airflow(compose) -> None:
    lines = [line.strip() for line in compose["services"]["airflow-init"]["command"][-1].splitlines()]
    assert lines.index("airflow db migrate") < lines.index("retention pools sync")  # the pools live in Airflow's DB
    assert not [line for line in lines if line.startswith("airflow pools")]  # sizes are declared once, in the code


def test_the_postgres_superuser_is_no_service_s_role(compose) -> None:
    assert environment(compose["services"]["postgres"])["POSTGRES_USER"] == "postgres"
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            assert "://postgres:" not in value, f"{name}: {key} connects as the superuser"
    script = (REPO / "deploy/postgres-init/10-roles.sh").read_text()
    for role in ("airflow", OWNER_ROLE, RUNTIME_ROLE):
        assert f"CREATE ROLE {role} LOGIN PASSWORD" in script, role


def _user_and_database(url: str) -> tuple[str, str]:
    parsed = make_url(url)
    return parsed.username, parsed.database


def _published(service: dict) -> list[str]:
    """Each published port's host address (long syntax) or its whole short-syntax string."""
    return [p.get("host_ip", "") if isinstance(p, dict) else str(p) for p in service.get("ports", [])]


def test_no_port_is_published_on_every_interface(compose) -> None:
    published = {name: _published(service) for name, service in compose["services"].items() if "ports" in service}
    assert set(published) == {"airflow-apiserver", "minio"}
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("127.0.0.1"), f"{name} publishes {port!r} beyond the loopback interface"


@pytest.mark.parametrize("secret", SIGNING_SECRETS)
def test_the_signing_keys_are_mounted_only_where_certificates_and_checkpoints_are_signed(compose, secret) -> None:
    mounted = {name for name, service in compose["services"].items() if secret in service.get("secrets", [])}
    told = {name for name, service in compose["services"].items() if SIGNING_SECRETS[secret] in environment(service)}
    assert mounted == told == SIGNERS
    assert "secrets" not in compose["x-airflow-common"]


def test_every_airflow_service_can_mail_on_call(compose) -> None:
    """Failure callbacks run on workers and the dag-processor, the sweep's deadline callback in the triggerer."""
    for name in AIRFLOW_SERVICES:
        env = environment(compose["services"][name])
        assert env.get("RETENTION_ALERT_RECIPIENTS") == "${RETENTION_ALERT_RECIPIENTS:-}", name
        assert env.get("AIRFLOW_CONN_SMTP_DEFAULT") == "${AIRFLOW_CONN_SMTP_DEFAULT:-}", name


def test_the_link_secret_only_where_links_are_made_or_opened(compose) -> None:
    for variable in ("RETENTION_LINK_SECRET", "RETENTION_LINK_SECRET_PREVIOUS"):
        holders = {name for name, service in compose["services"].items() if variable in environment(service)}
        assert holders == SIGNERS, variable


def test_every_service_reaches_the_ledger_as_its_runtime_role(compose) -> None:
    urls = {name: environment(service)["RETENTION_DATABASE_URL"] for name, service in compose["services"].items()
            if "RETENTION_DATABASE_URL" in environment(service)}
    assert set(urls) == {"airflow-apiserver", "airflow-worker", "airflow-worker-certify"}  # task code runs there
    for name, url in urls.items():
        assert _user_and_database(url) == (RUNTIME_ROLE, "retention_ledger"), name
    for name, service in compose["services"].items():
        owner = [key for key, value in environment(service).items() if "RETENTION_LEDGER_OWNER" in value + key]
        assert not owner or name in {"airflow-init", "postgres"}, f"{name} gets the ledger owner's credentials: {owner}"


def test_the_tasks_that_sign_or_make_links_run_on_the_certify_queue() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    queued = {(dag_id, task.task_id) for dag_id, dag in bag.dags.items() for task in dag.tasks
              if task.queue == "certify"}
    assert queued == CERTIFY_TASKS, bag.import_errors


def test_no_secret_is_written_in_the_file(compose) -> None:
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and not value.startswith("/run/secrets/"):
                assert REFERENCE.match(value), f"{name}: {key} holds a literal, not ${{…}} from the environment"
            for credentials in re.findall(r"://[^:/@\s]+:(\$\{[^}]*\}|[^@\s]+)@", value):  # passwords inside URLs
                assert REFERENCE.match(credentials), f"{name}: {key} embeds a literal password"
    for secret in compose["secrets"].values():
        path = REPO / secret["file"]
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO).returncode == 0
        assert ignored, f"{secret['file']} must be git-ignored: it holds a private key"


def test_the_image_runs_the_pinned_airflow_version() -> None:
    pinned = re.search(r"^apache-airflow==(\S+)", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert f"FROM apache/airflow:{pinned}-python3.11" in (REPO / "deploy/Dockerfile").read_text()
