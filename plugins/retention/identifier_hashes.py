"""Keyed hashes of data subject identifiers: what the ledger's chain and certificates carry instead of a value.

HMAC-SHA256 under a secret key (``RETENTION_SUBJECT_KEY_FILE``), over the account, the kind and the normalized
value: without the key nobody can test a guessed e-mail address against the ledger, and the same person in two
accounts hashes differently (accounts are never linked through the ledger). The key is made on first use (0600).
``keyed_digest`` is what a subprocessor's intent event carries for the ids it deletes, which can be identifiers
themselves (SendGrid names a bounce by its e-mail address).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from retention.rules.subjects import Subject
from retention.settings import Settings

KEY_BYTES = 32


def key_file(settings: Settings) -> Path:
    return settings.subject_key_file or settings.home / "keys" / "subject-hmac.key"


def load_key(settings: Settings) -> bytes:
    """The HMAC key, created (mode 0600) when it does not exist yet."""
    path = key_file(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return bytes.fromhex(path.read_text().strip())
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(KEY_BYTES))
    key = bytes.fromhex(path.read_text().strip())
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: the subject hash key must be {KEY_BYTES} bytes, hex-encoded")
    return key


def identifier_hash(key: bytes, account_id: str, kind: str, value: str) -> str:
    """The keyed hash of one normalized identifier of one account."""
    message = "\x1f".join((account_id, kind, value)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def keyed_digest(values: list[str], settings: Settings | None = None) -> str:
    """HMAC-SHA256 of the sorted values under the installation's key: evidence of which ids a call named that
    cannot be tested against a guessed address by whoever reads the ledger."""
    key = load_key(settings or Settings.from_env())
    return hmac.new(key, "\n".join(sorted(values)).encode(), hashlib.sha256).hexdigest()


def subject_hashes(key: bytes, account_id: str, subject: Subject) -> list[str]:
    """Every identifier of ``subject`` as its keyed hash, in a stable order (kind, then value)."""
    return [identifier_hash(key, account_id, kind, value)
            for kind in sorted(subject.identifiers) for value in subject.values(kind)]
