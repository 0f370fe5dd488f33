"""Airflow's own processes on loopback, as the compose stack runs them: ``api-server``, ``scheduler``,
``dag-processor``, ``triggerer`` and, for the CeleryExecutor, ``celery worker`` on the queues the DAGs use.

Each is ``python -m airflow <command>`` of this interpreter, in its own process group, with an environment
built here from nothing but PATH and the values given (not the test session's AIRFLOW_HOME or SQLite
settings). Its output goes to ``<home>/<name>.log``; when a wait fails, the tail of every log is printed.
Loopback only: the api-server listens on 127.0.0.1, and the scheduler, triggerer and worker start no log
server (``--skip-serve-logs``: Airflow's binds every interface; the logs are files under AIRFLOW_HOME, which
the api-server reads on the same machine). The metadata database is PostgreSQL, migrated by ``airflow db
migrate`` before anything starts; the pools are made by the product's own ``retention pools sync``, as
compose's airflow-init does.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx
from cryptography.fernet import Fernet

from retention.embedded import free_port

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 240.0  # seconds for every process to report healthy and every DAG to be serialized
STOP_TIMEOUT = 20.0  # seconds between SIGTERM and SIGKILL of a process group
# SimpleAuthManager users and their roles: alice requests, bob approves, admin manages pools.
USERS = {"alice": "op", "bob": "op", "viewer": "viewer", "admin": "admin"}
# The queues tasks are routed to (dags/termination_offboarding.py: deliver_return and certify on `certify`).
QUEUES = "default,certify"
HEALTHY = ("metadatabase", "scheduler", "triggerer", "dag_processor")
T = TypeVar("T")


PR_SET_PDEATHSIG = 1  # prctl(2)


def _die_with_the_test_session() -> None:
    """In the child before exec: SIGTERM when the pytest process dies, even by SIGKILL or pytest-timeout's
    os._exit, so no Airflow process outlives the session that started it (Linux only, like the suite)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class StackFailed(AssertionError):
    """A process of the stack exited, or a condition was not met in time (the message holds the logs' tails)."""


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(text[-lines:])

    def kill_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.popen.pid, sig)  # started with start_new_session: its pid is its group's id
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after STOP_TIMEOUT; waits for the leader either way."""
        if self.popen.poll() is None:
            self.kill_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self.kill_group(signal.SIGKILL)  # children of an exited leader too
        try:
            self.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class AirflowStack:
    """The processes and what a test needs to talk to them: the api-server's URL, each user's password."""

    executor: str
    home: Path
    env: dict[str, str]
    url: str
    passwords: dict[str, str]
    processes: dict[str, Process] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> Process:
        """``airflow <args>`` as ``name``; a process of that name already running is an error."""
        running = self.processes.get(name)
        if running is not None and running.popen.poll() is None:
            raise RuntimeError(f"{name} is already running")
        log = self.home / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen([sys.executable, "-m", "airflow", *args], env=self.env, cwd=self.home,
                                     stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_die_with_the_test_session)
        self.processes[name] = Process(name, popen, log)
        return self.processes[name]

    def start_worker(self, name: str = "worker") -> Process:
        return self.start(name, "celery", "worker", "--queues", QUEUES, "--concurrency", "4", "--skip-serve-logs")

    def run(self, *args: str, timeout: float = 300) -> str:
        """A one-off command (``airflow ...`` or the product's CLI) with the stack's environment; its output."""
        done = subprocess.run([sys.executable, "-m", *args], env=self.env, cwd=self.home, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            raise StackFailed(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                              f"{done.stderr[-3000:]}")
        return done.stdout

    def logs(self) -> str:
        return "\n".join(f"----- {p.name} (exit {p.popen.poll()}) {p.log}\n{p.tail()}"
                         for p in self.processes.values())

    def check_alive(self) -> None:
        for process in self.processes.values():
            code = process.popen.poll()
            if code is not None and process.name in self.required:
                raise StackFailed(f"{process.name} exited with {code}\n{self.logs()}")

    @property
    def required(self) -> set[str]:
        return {"api-server", "scheduler", "dag-processor", "triggerer"} | (
            {"worker"} if self.executor == "CeleryExecutor" else set())

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
        """``probe()``'s first answer that is not None (or False), polled until ``timeout``; the processes'
        logs in the error otherwise."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                answer = probe()
            except httpx.TransportError as exc:  # the api-server is not listening yet, or restarting
                answer, last = None, exc
            if answer is not None and answer is not False:
                return answer
            time.sleep(every)
        raise StackFailed(f"not within {timeout:.0f} s: {what} (last error: {last!r})\n{self.logs()}")

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()


def airflow_env(executor: str, home: Path, metadata_url: str, port: int, passwords_file: Path,
                broker_url: str | None, result_backend: str | None) -> dict[str, str]:
    """Airflow's configuration for one stack (everything else is Airflow's default)."""
    base = f"http://127.0.0.1:{port}"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{user}:{role}" for user, role in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        # Only triggered runs: a scheduled sweep of its own would queue in front of the tests' (max_active_runs=1).
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # A killed worker's task is found dead after 20 s of silence instead of five minutes.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "3",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        # The killed worker's task is retried after seconds, not the two minutes production waits.
        "RETENTION_RETRY_DELAY_SECONDS": "5",
    }
    if executor == "CeleryExecutor":
        if broker_url is None or result_backend is None:
            raise ValueError("the CeleryExecutor needs a broker and a result backend")
        env |= {"AIRFLOW__CELERY__BROKER_URL": broker_url, "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4"}
    return env


def base_env() -> dict[str, str]:
    """What every process inherits from the machine: the PATH and a locale; dummy AWS credentials so that no
    profile of the developer's can be read."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": "UTC",
            "PYTHONUNBUFFERED": "1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


@contextmanager
def airflow_stack(executor: str, home: Path, metadata_url: str, product_env: dict[str, str], *,
                  broker_url: str | None = None, result_backend: str | None = None,
                  sync_pools: bool = True, dag_ids: tuple[str, ...] = ()) -> Iterator[AirflowStack]:
    """Migrate, sync the pools, start every process, wait until all are healthy and ``dag_ids`` are
    serialized; stop every process on the way out, whatever happened."""
    home.mkdir(parents=True, exist_ok=True)
    passwords = {user: secrets.token_urlsafe(16) for user in USERS}
    passwords_file = home / "passwords.json"
    passwords_file.write_text(json.dumps(passwords))
    port = free_port()
    env = base_env() | product_env | airflow_env(executor, home, metadata_url, port, passwords_file, broker_url,
                                                 result_backend)
    stack = AirflowStack(executor, home, env, f"http://127.0.0.1:{port}", passwords)
    try:
        stack.run("airflow", "db", "migrate")
        if sync_pools:
            stack.run("retention.cli", "pools", "sync")
        stack.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(port))
        stack.start("scheduler", "scheduler", "--skip-serve-logs")
        stack.start("dag-processor", "dag-processor")
        stack.start("triggerer", "triggerer", "--skip-serve-logs")
        if executor == "CeleryExecutor":
            stack.start_worker()
        stack.wait("every component healthy", lambda: _healthy(stack.url), START_TIMEOUT)
        token = login(stack.url, "admin", passwords["admin"])
        for dag_id in dag_ids:
            stack.wait(f"{dag_id} serialized", partial(_serialized, stack.url, token, dag_id), START_TIMEOUT)
        yield stack
    finally:
        stack.stop()


def login(url: str, username: str, password: str) -> str:
    """A JWT from SimpleAuthManager's POST /auth/token."""
    answer = httpx.post(f"{url}/auth/token", json={"username": username, "password": password}, timeout=30)
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


def _healthy(url: str) -> bool:
    answer = httpx.get(f"{url}/api/v2/monitor/health", timeout=10)
    if answer.status_code != 200:
        return False
    health = answer.json()
    return all((health.get(part) or {}).get("status") == "healthy" for part in HEALTHY)


def _serialized(url: str, token: str, dag_id: str) -> bool:
    answer = httpx.get(f"{url}/api/v2/dags/{dag_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return answer.status_code == 200 and not answer.json().get("has_import_errors", False)
