"""docker-compose.yml can't be started here (no Docker engine), so its structure is checked instead:
the services and executor of a production stack, health checks, mounts, migrations, and no secret in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker"]
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
    assert compose["services"]["airflow-worker"]["command"] == "celery worker"
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


def test_init_migrates_airflow_and_the_ledger_into_separate_databases(compose) -> None:
    script = compose["services"]["airflow-init"]["command"][-1]
    assert "airflow db migrate" in script and "retention ledger migrate" in script
    env = environment(compose["services"]["airflow-init"])
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
    assert env["RETENTION_DATABASE_URL"].endswith("@postgres/retention_ledger")
    assert "CREATE DATABASE retention_ledger" in (REPO / "deploy/postgres-init/10-ledger.sql").read_text()


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
