"""`retention offboard` triggers through Airflow's REST API as the caller: Airflow's real api-server app on a
loopback port (``live_api``), the termination_offboarding DAG serialized into its metadata database, and the
real CLI in its own process. The run's requester is whoever the token or password authenticates; nobody can
name someone else."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
import sqlalchemy as sa

DAG_ID = "termination_offboarding"
CONF = {"account_id": "acct_1001", "choice": "delete", "reference": "OFF-1001", "subprocessors": ["sendgrid"]}
ARGS = ["offboard", "acct_1001", "--choice", "delete", "--reference", "OFF-1001", "--subprocessor", "sendgrid"]


def token(username: str, role: str) -> str:
    """An access token for a SimpleAuthManager user, as Airflow's /auth/token hands it out."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))


@pytest.fixture
def airflow(live_api, monkeypatch, tmp_path):
    """The live api-server with termination_offboarding in its metadata database, as the dag-processor puts
    it there, and one SimpleAuthManager user alice (op) whose password is in the passwords file."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"alice": "alice-password"}))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "alice:op")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
    manager = DagBundlesManager()
    with create_session() as session:
        manager.sync_bundles_to_db(session=session)
        session.execute(sa.delete(DagRun).where(DagRun.dag_id == DAG_ID))  # each test counts its own runs
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        assert bag.import_errors == {}
        sync_bag_to_db(bag, bundle.name, bundle.version)
    return live_api


def offboard(api_url: str, *args: str, token_env: str | None = None, stdin: str | None = None):
    """The real `retention offboard` in its own process."""
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_API_TOKEN"}
    if token_env is not None:
        env["AIRFLOW_API_TOKEN"] = token_env
    return subprocess.run([sys.executable, "-m", "retention.cli", *ARGS, "--api-url", api_url, *args], env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


def runs(api_url: str) -> list[dict]:
    answer = httpx.get(f"{api_url}/api/v2/dags/{DAG_ID}/dagRuns",
                       headers={"Authorization": f"Bearer {token('auditor', 'admin')}"}, timeout=30)
    answer.raise_for_status()
    return answer.json()["dag_runs"]


def test_the_run_is_requested_by_the_user_the_token_authenticates(airflow) -> None:
    result = offboard(airflow.url, "--json", token_env=token("alice", "op"))

    assert result.returncode == 0, result.stderr
    triggered = json.loads(result.stdout)
    assert triggered["requested_by"] == "alice"
    (run,) = runs(airflow.url)
    assert (run["dag_run_id"], run["triggering_user_name"]) == (triggered["dag_run_id"], "alice")
    assert run["conf"] == CONF and "requested_by" not in run["conf"]


def test_a_password_sign_in_makes_that_user_the_requester(airflow) -> None:
    result = offboard(airflow.url, "--username", "alice", stdin="alice-password\n")

    assert result.returncode == 0, result.stderr
    (run,) = runs(airflow.url)
    assert run["triggering_user_name"] == "alice" and run["dag_run_id"] in result.stdout


@pytest.mark.parametrize(("credentials", "status", "detail"), [
    (lambda: {"token_env": "not-a-jwt"}, "answered 403 to POST", "Invalid JWT token"),
    (lambda: {"args": ("--username", "alice"), "stdin": "wrong-password\n"}, "answered 401 to POST",
     "Invalid credentials"),
    (lambda: {"token_env": token("vera", "viewer")}, "answered 403 to POST", "Forbidden"),  # a Viewer may not trigger
], ids=["garbage-token", "wrong-password", "viewer"])
def test_bad_credentials_end_in_one_error_line_and_trigger_nothing(airflow, credentials, status, detail) -> None:
    given = credentials()
    result = offboard(airflow.url, *given.get("args", ()), token_env=given.get("token_env"), stdin=given.get("stdin"))

    assert result.returncode == 2, (result.stdout, result.stderr)
    error = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and status in error[0] and detail in error[0], result.stderr
    assert "Traceback" not in result.stderr
    assert runs(airflow.url) == []


def test_a_token_of_another_airflow_signs_nothing_in(airflow) -> None:
    """A JWT signed with another installation's secret names alice but proves nothing: refused."""
    import jwt

    forged = jwt.encode({"sub": "alice", "role": "admin", "aud": "apache-airflow", "iss": "airflow"},
                        "another-secret-of-at-least-32-bytes!", algorithm="HS512")
    result = offboard(airflow.url, token_env=forged)

    assert result.returncode == 2 and result.stderr.startswith("Error: Airflow's API answered 403 to POST")
    assert "Invalid JWT token" in result.stderr
    assert runs(airflow.url) == []


def test_a_typed_requester_is_refused_and_nothing_is_triggered(airflow) -> None:
    result = offboard(airflow.url, "--requested-by", "dpo-7", token_env=token("alice", "op"))

    assert result.returncode == 2 and "No such option '--requested-by'" in result.stderr
    assert runs(airflow.url) == []


def test_no_credentials_and_no_server_each_end_in_one_error_line(airflow) -> None:
    missing = offboard(airflow.url)
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("Error: no Airflow credentials: set AIRFLOW_API_TOKEN, or give --token-file "
                                      "or --username")

    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = offboard(f"http://127.0.0.1:{port}", token_env=token("alice", "op"))
    assert unreachable.returncode == 2 and unreachable.stderr.startswith("Error: cannot reach Airflow's API at ")
    assert runs(airflow.url) == []
