"""Per-account backup copies, encrypted under the account's own key, so that destroying that key erases them.

What a copy is
    An export of one account's rows and objects, the same export the return package uses
    (``retention.offboarding.returns.export_account``: ``<location>/…`` with rows as JSON Lines per table,
    objects as stored, and a ``manifest.json`` of sha256 per file), as one tar file.

How it is encrypted (envelope encryption)
    Each copy gets a fresh 256-bit data key from the keystore (AWS KMS ``GenerateDataKey`` under the
    account's KMS key in production, the local keystore on the embedded stack). The tar is encrypted with
    AES-256-GCM under that data key; the data key itself is kept only in its wrapped form, in the copy's
    header. The header is the GCM associated data, so changing any byte of it (account, wrapped key,
    nonce) makes the copy fail to decrypt.

Where copies live
    In object storage: the backups bucket (``Settings.backups_bucket``, Connection
    ``Settings.backups_conn_id``) under ``accounts/<account_id>/<UTC time>-<copy id>.rtbk``, beside the
    whole-database snapshots (``Settings.backups_prefix``) but under their own prefix and suffix, which the
    snapshot catalog never lists. Keeping them in the backups bucket gives them the bucket's replication,
    versioning and lifecycle; keeping them under the account's prefix lets an operator find them.

Layout of a copy object: ``RTBK1\\n`` | header length (4 bytes, big-endian) | header (canonical JSON) |
ciphertext | GCM tag (16 bytes). The ledger records each copy's id, its object's sha256 and size, and
counts: never file names, which may be object keys, and never key material.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
import tarfile
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from retention.backups.keystore import NONCE_BYTES, Keystore

MAGIC = b"RTBK1\n"
PREFIX = "accounts/"
SUFFIX = ".rtbk"
TAG_BYTES = 16
CHUNK = 1 << 20
CIPHER = "AES-256-GCM"
CONTENT = "tar of the account's export: <location>/... (rows as JSON Lines per table, objects as stored), manifest.json"
KEY_TIME = "%Y%m%dT%H%M%S.%fZ"


class CopyError(RuntimeError):
    """A copy could not be written, read or decrypted; the message names the copy id and account only."""


class CopyHeader(TypedDict):
    """A copy's header: canonical JSON in the clear, and the GCM associated data."""
    format: int
    copy_id: str
    account_id: str
    created_at: str
    cipher: str
    nonce: str  # base64
    keystore: str  # "local" or "kms"
    wrapped_key: str  # base64: the data key, wrapped under the account's key
    content: str


class ManifestFile(TypedDict):
    path: str
    bytes: int
    sha256: str


class Manifest(TypedDict):
    """``manifest.json`` of an account's export (``retention.offboarding.returns.export_account`` writes it)."""
    package_id: str
    account_id: str
    created_at: str
    format: str
    records: dict[str, int]  # location -> records exported
    files: list[ManifestFile]


@dataclass(frozen=True, slots=True)
class AccountCopy:
    copy_id: str
    account_id: str
    key: str  # the object key: accounts/<account id>/<time>-<copy id>.rtbk
    sha256: str  # of the whole encrypted object, as stored
    size: int
    keystore: str  # "local" or "kms": where the account's key is
    created_at: datetime
    records: dict[str, int]  # location -> records exported


def object_key(account_id: str, copy_id: str, created_at: datetime, prefix: str = PREFIX) -> str:
    return f"{prefix}{account_id}/{created_at.astimezone(UTC).strftime(KEY_TIME)}-{copy_id}{SUFFIX}"


# -- encrypt and decrypt one file ------------------------------------------------------------------

def seal(plain: Path, sealed: Path, *, account_id: str, copy_id: str, created_at: datetime,
         keystore: Keystore) -> CopyHeader:
    """Encrypt ``plain`` into ``sealed`` under a fresh data key wrapped by the account's key; returns the header."""
    data_key = keystore.generate_data_key(account_id)
    nonce = secrets.token_bytes(NONCE_BYTES)  # a fresh key per copy: a random nonce can never repeat under it
    header: CopyHeader = {"format": 1, "copy_id": copy_id, "account_id": account_id,
                          "created_at": created_at.isoformat(), "cipher": CIPHER, "nonce": _b64(nonce),
                          "keystore": keystore.kind, "wrapped_key": _b64(data_key.wrapped), "content": CONTENT}
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    encryptor = Cipher(algorithms.AES(data_key.plaintext), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(header_bytes)
    with plain.open("rb") as source, sealed.open("wb") as out:
        out.write(MAGIC + struct.pack(">I", len(header_bytes)) + header_bytes)
        for chunk in iter(lambda: source.read(CHUNK), b""):
            out.write(encryptor.update(chunk))
        out.write(encryptor.finalize() + encryptor.tag)
    return header


def read_header(sealed: Path) -> tuple[CopyHeader, bytes, int]:
    """(header, its bytes, offset of the ciphertext) of a sealed copy."""
    with sealed.open("rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise CopyError("not a retention backup copy (bad magic)")
        (length,) = struct.unpack(">I", f.read(4))
        header_bytes = f.read(length)
    try:
        header: CopyHeader = json.loads(header_bytes)
    except ValueError:
        raise CopyError("the copy's header is not JSON") from None
    return header, header_bytes, len(MAGIC) + 4 + length


def unseal(sealed: Path, plain: Path, *, keystore: Keystore, account_id: str) -> CopyHeader:
    """Decrypt a copy of ``account_id`` into ``plain``; nothing is left in ``plain`` unless the tag verifies.

    The data key is unwrapped by the keystore, which refuses once the account's key is scheduled for
    deletion or destroyed (``KeystoreError``): then no means of this product can read the copy."""
    header, header_bytes, offset = read_header(sealed)
    if header.get("account_id") != account_id or header.get("cipher") != CIPHER:
        raise CopyError(f"copy {header.get('copy_id')} is not an {CIPHER} copy of account {account_id}")
    data_key = keystore.decrypt_data_key(account_id, base64.b64decode(header["wrapped_key"]))
    end = sealed.stat().st_size - TAG_BYTES
    with sealed.open("rb") as f:
        f.seek(end)
        tag = f.read(TAG_BYTES)
        decryptor = Cipher(algorithms.AES(data_key), modes.GCM(base64.b64decode(header["nonce"]), tag)).decryptor()
        decryptor.authenticate_additional_data(header_bytes)
        f.seek(offset)
        remaining = end - offset
        try:
            with plain.open("wb") as out:
                while remaining > 0:
                    chunk = f.read(min(CHUNK, remaining))
                    remaining -= len(chunk)
                    out.write(decryptor.update(chunk))
                out.write(decryptor.finalize())
        except InvalidTag:
            plain.unlink(missing_ok=True)  # unauthenticated plaintext is never left behind
            raise CopyError(f"copy {header['copy_id']} of account {account_id} fails authentication: "
                            "changed or truncated") from None
    return header


# -- write and restore through object storage -------------------------------------------------------

def write_copy(export: Callable[[Path], dict[str, int]], account_id: str, *, keystore: Keystore, client: Any,
               bucket: str, now: datetime, prefix: str = PREFIX) -> AccountCopy:
    """Export the account (``export(root)`` writes the files and returns records per location), tar it,
    encrypt it under a fresh data key, upload it, and check the stored object's size and sha256."""
    copy_id = f"bkp-{uuid.uuid4().hex}"
    created_at = now.astimezone(UTC)
    with tempfile.TemporaryDirectory(prefix="retention-copy-") as tmp:  # 0700: the export is in the clear here
        work = Path(tmp)
        root = work / copy_id
        records = export(root)
        archive, sealed = work / "copy.tar", work / f"copy{SUFFIX}"
        with tarfile.open(archive, "w") as tar:
            for path in sorted(root.rglob("*")):
                tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
        seal(archive, sealed, account_id=account_id, copy_id=copy_id, created_at=created_at, keystore=keystore)
        archive.unlink()
        digest, size = _sha256(sealed), sealed.stat().st_size
        key = object_key(account_id, copy_id, created_at, prefix)
        try:
            client.upload_file(str(sealed), bucket, key)
            stored = client.head_object(Bucket=bucket, Key=key)
        except (ClientError, OSError) as exc:
            raise CopyError(f"copy {copy_id} of account {account_id}: upload to bucket {bucket} failed: "
                            f"{type(exc).__name__}") from None
    if stored["ContentLength"] != size:
        raise CopyError(f"copy {copy_id} of account {account_id}: bucket {bucket} holds {stored['ContentLength']} "
                        f"bytes, {size} were written")
    return AccountCopy(copy_id, account_id, key, digest, size, keystore.kind, created_at, records)


def restore_copy(client: Any, bucket: str, key: str, destination: Path, *, keystore: Keystore,
                 account_id: str, sha256: str | None = None) -> Manifest:
    """Download one account's copy, check it against the ledger's sha256 when given, decrypt it and unpack
    its files into ``destination``; returns the copy's manifest (files with sha256, records per location)."""
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="retention-restore-copy-") as tmp:
        sealed, archive = Path(tmp) / f"copy{SUFFIX}", Path(tmp) / "copy.tar"
        try:
            client.download_file(bucket, key, str(sealed))
        except ClientError as exc:
            raise CopyError(f"a copy of account {account_id}: download from bucket {bucket} failed: "
                            f"{exc.response.get('Error', {}).get('Code', 'unknown')}") from None
        if sha256 is not None and _sha256(sealed) != sha256:
            raise CopyError(f"a copy of account {account_id} does not match the sha256 the ledger recorded")
        unseal(sealed, archive, keystore=keystore, account_id=account_id)
        with tarfile.open(archive) as tar:
            tar.extractall(destination, filter="data")  # refuses absolute paths, "..", links out of the tree
    manifest: Manifest = json.loads((destination / "manifest.json").read_bytes())
    for listed in manifest["files"]:  # what was exported is what comes back, file by file
        if _sha256(destination / listed["path"]) != listed["sha256"]:
            raise CopyError(f"a restored file of account {account_id} does not match the copy's manifest")
    return manifest


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
