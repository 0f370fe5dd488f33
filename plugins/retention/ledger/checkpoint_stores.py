"""Where ledger checkpoints are published: objects written once, never replaced.

A directory in the embedded stack (a read-only file per object, hard-linked into place so an existing name
is never overwritten); in production an S3 bucket under Object Lock in COMPLIANCE mode, each object put
with ``If-None-Match`` so a name that exists never gets a new version.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from retention.settings import Settings

# boto3's S3 client: boto3 ships no type stubs and none are installed, so its calls are untyped here.
S3Client = Any


class CheckpointError(RuntimeError):
    """A checkpoint cannot be published: the settings, the key, the store, or a ledger that disagrees."""




class CheckpointStore(Protocol):
    where: str

    def create(self, name: str, data: bytes) -> bool:
        """Write ``name`` once; False if an object of that name exists already (it is left as it is)."""

    def read_all(self, prefix: str) -> list[tuple[str, bytes]]:
        """Every object under ``prefix`` (for S3 every version), in name order."""


class DirectoryStore:
    """The embedded stack: one read-only file per object. Written atomically and never overwritten: the
    bytes go to a temporary file first, which is then hard-linked to its name (``link`` fails, like
    ``O_EXCL``, when the name exists)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = f"directory {root}"

    def create(self, name: str, data: bytes) -> bool:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o444)
            os.link(temporary, target)
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)
        return True

    def read_all(self, prefix: str) -> list[tuple[str, bytes]]:
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return [(f"{prefix}{p.name}", p.read_bytes()) for p in sorted(folder.iterdir())
                if p.is_file() and not p.name.startswith(".")]


class S3Store:
    """Production: a bucket with Object Lock, every object put with COMPLIANCE retention (no one, the root
    account included, can delete a version or shorten its retention before it ends) and ``If-None-Match``
    (a name that exists is never given a new version)."""

    def __init__(self, client: S3Client, bucket: str, retention_days: int) -> None:
        self.client, self.bucket, self.retention_days = client, bucket, retention_days
        self.where = f"s3://{bucket}"
        self._lock_checked = False

    def create(self, name: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        self._check_object_lock()
        until = datetime.now(UTC) + timedelta(days=self.retention_days)
        try:
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data, IfNoneMatch="*",
                                   ContentType="application/json", ObjectLockMode="COMPLIANCE",
                                   ObjectLockRetainUntilDate=until)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            raise
        return True

    def read_all(self, prefix: str) -> list[tuple[str, bytes]]:
        from botocore.exceptions import ClientError

        try:
            return self._read_all(prefix)
        except ClientError as exc:
            raise CheckpointError(f"RETENTION_CHECKPOINT_BUCKET {self.bucket}: cannot list or read the checkpoints "
                                  f"({exc.response.get('Error', {}).get('Code')})") from None

    def _read_all(self, prefix: str) -> list[tuple[str, bytes]]:
        found = []
        for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            for version in page.get("Versions", []):  # delete markers hide versions; they remove none
                body = self.client.get_object(Bucket=self.bucket, Key=version["Key"], VersionId=version["VersionId"])
                found.append((version["Key"], body["Body"].read()))
        return sorted(found, key=lambda item: item[0])

    def _check_object_lock(self) -> None:
        if self._lock_checked:
            return
        from botocore.exceptions import ClientError

        try:
            config = self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        except ClientError as exc:
            raise CheckpointError(f"RETENTION_CHECKPOINT_BUCKET {self.bucket}: cannot read its Object Lock "
                                  f"configuration ({exc.response.get('Error', {}).get('Code')}); checkpoints need "
                                  "a bucket created with Object Lock") from None
        if config.get("ObjectLockEnabled") != "Enabled":
            raise CheckpointError(f"RETENTION_CHECKPOINT_BUCKET {self.bucket}: Object Lock is not enabled, so "
                                  "its checkpoints could be deleted")
        self._lock_checked = True


def configured_store(settings: Settings) -> CheckpointStore:
    """S3 when RETENTION_CHECKPOINT_CONN_ID names an Airflow `aws` Connection, else the directory."""
    if settings.checkpoint_conn_id:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        try:
            client = S3Hook(aws_conn_id=settings.checkpoint_conn_id).get_conn()
        except Exception as exc:  # noqa: BLE001 - a missing or broken Connection, whatever Airflow raises for it
            raise CheckpointError(f"RETENTION_CHECKPOINT_CONN_ID {settings.checkpoint_conn_id}: "
                                  f"{type(exc).__name__}: {exc}") from None
        return S3Store(client, settings.checkpoint_bucket, settings.checkpoint_retention_days)
    return DirectoryStore(settings.checkpoint_dir or settings.home / "checkpoints")


__all__ = ["CheckpointError", "CheckpointStore", "DirectoryStore", "S3Store", "configured_store"]
