"""The embedded stack's keystore: one 0600 key file per account in one directory (the stand-in for AWS KMS).

See ``retention.backups.keystore`` for the lifecycle and the envelope encryption both keystores implement.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypedDict

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from retention.backups.keystore import (
    ABSENT,
    DESTROYED,
    ENABLED,
    KEY_BYTES,
    NONCE_BYTES,
    PENDING_DELETION,
    DataKey,
    KeyDestroyed,
    KeyPendingDeletion,
    KeyState,
    KeystoreError,
    KeyUnavailable,
    as_utc,
    checked_account,
    checked_window,
    encryption_context,
)

log = logging.getLogger(__name__)


class _StateFile(TypedDict):
    """``<account_id>.json``: written when the key's deletion is scheduled, and again when it is destroyed."""
    account_id: str
    deletion_date: str
    destroyed_at: str | None


class LocalKeystore:
    """Keys as 0600 files in one directory, with a JSON state file per account once deletion is scheduled.

    Destroying overwrites the key with zeros, fsyncs and unlinks it. On journaling or copy-on-write file
    systems and SSDs the old bytes may survive elsewhere on the device, so this is the embedded stack's
    stand-in for KMS, not a substitute for it in production.
    """

    kind = "local"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def generate_data_key(self, account_id: str) -> DataKey:
        """A random data key wrapped with AES-256-GCM under the account's key file (nonce || ciphertext || tag)."""
        account_key = self.data_key(account_id)  # refuses a key pending deletion or destroyed
        plaintext, nonce = secrets.token_bytes(KEY_BYTES), secrets.token_bytes(NONCE_BYTES)
        return DataKey(plaintext, nonce + AESGCM(account_key).encrypt(nonce, plaintext, _aad(account_id)))

    def decrypt_data_key(self, account_id: str, wrapped: bytes) -> bytes:
        state = self.state(account_id)
        if state.state == DESTROYED:
            raise KeyDestroyed(f"the key of account {account_id} was destroyed: its copies cannot be decrypted")
        if state.state == PENDING_DELETION:  # as KMS refuses Decrypt under a key pending deletion
            raise KeyPendingDeletion(f"the key of account {account_id} is scheduled for deletion on "
                                     f"{state.scheduled_date.isoformat()}; it decrypts nothing")
        if state.state == ABSENT:  # never create a key to decrypt: a fresh one could not open anything
            raise KeyUnavailable(f"account {account_id} has no key in this keystore")
        try:
            return AESGCM(self._read_key(account_id)).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                                                              _aad(account_id))
        except (InvalidTag, ValueError):
            raise KeyUnavailable(f"the wrapped data key does not open under the key of account {account_id}") from None

    def cancel_deletion(self, account_id: str) -> KeyState:
        """Drop the scheduled deletion (the key file was never touched); a destroyed key stays destroyed."""
        state = self.state(account_id)
        if state.state == PENDING_DELETION:
            self._state_path(account_id).unlink()
            _fsync_dir(self.directory)
            log.info("deletion of the key of account %s cancelled", account_id)
            return self.state(account_id)
        return state

    def destroy_if_due(self, account_id: str, at: datetime) -> KeyState | None:
        at = as_utc(at)
        state = self.state(account_id)
        if state.state == PENDING_DELETION and state.scheduled_date <= at:
            return self._destroy(account_id, state.scheduled_date, at)
        return None

    def data_key(self, account_id: str) -> bytes:
        """The account's own 32-byte key, created on first use: it wraps the copies' data keys. Only this
        keystore has one to give; a KMS key never leaves KMS."""
        state = self.state(account_id)
        if state.state == DESTROYED:
            raise KeyDestroyed(f"the key of account {account_id} was destroyed; it is never recreated")
        if state.state == PENDING_DELETION:
            raise KeyPendingDeletion(f"the key of account {account_id} is scheduled for deletion "
                                     f"on {state.scheduled_date.isoformat()}; it encrypts nothing new")
        if state.state == ABSENT:
            self._create_key(account_id)
        return self._read_key(account_id)

    def schedule_deletion(self, account_id: str, *, window_days: int, at: datetime) -> KeyState:
        """Due ``window_days`` after ``at``. An account without a key stays "absent": nothing to destroy."""
        checked_window(window_days)
        current = self.state(account_id)
        if current.state != ENABLED:  # absent: nothing to destroy; pending or destroyed: keep the first date
            return current
        deletion_date = as_utc(at) + timedelta(days=window_days)
        self._write_state(account_id, deletion_date, None)
        log.info("key of account %s scheduled for deletion on %s", account_id, deletion_date.isoformat())
        return self.state(account_id)

    def destroy_due(self, at: datetime, *, keep: frozenset[str] = frozenset()) -> list[KeyState]:
        """Destroy every key whose deletion date is at or before ``at``, except the accounts in ``keep`` (a legal
        hold came into force); the states of those destroyed now. The offboarding destroys account by account
        (``destroy_if_due``, each right after its hold check); this sweeps the whole directory."""
        destroyed = []
        for path in sorted(self.directory.glob("*.json")):
            if path.stem not in keep and (state := self.destroy_if_due(path.stem, at)) is not None:
                destroyed.append(state)
        return destroyed

    def state(self, account_id: str) -> KeyState:
        checked_account(account_id)
        if self._state_path(account_id).exists():
            return self._read_state(account_id)
        if self._key_path(account_id).exists():
            return KeyState(account_id, ENABLED)
        return KeyState(account_id, ABSENT)

    # -- files ------------------------------------------------------------------------------------

    def _key_path(self, account_id: str) -> Path:
        return self.directory / f"{account_id}.key"

    def _state_path(self, account_id: str) -> Path:
        return self.directory / f"{account_id}.json"

    def _create_key(self, account_id: str) -> None:
        """Write a fresh key under a temporary name, then link it in: readers never see a partial key,
        and of two concurrent creators the second finds the first's key (link fails if it exists)."""
        tmp = self._write_private(secrets.token_bytes(KEY_BYTES))
        try:
            os.link(tmp, self._key_path(account_id))
            _fsync_dir(self.directory)
            log.info("created the data key of account %s", account_id)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    def _read_key(self, account_id: str) -> bytes:
        key = self._key_path(account_id).read_bytes()
        if len(key) != KEY_BYTES:
            raise KeystoreError(f"the key file of account {account_id} is not {KEY_BYTES} bytes long")
        return key

    def _destroy(self, account_id: str, deletion_date: datetime, at: datetime) -> KeyState:
        """Zero, fsync and unlink the key, then record it; rerunning after a crash finishes the job."""
        path = self._key_path(account_id)
        if path.exists():
            with path.open("r+b") as handle:
                handle.write(b"\0" * path.stat().st_size)
                handle.flush()
                os.fsync(handle.fileno())
            path.unlink()
            _fsync_dir(self.directory)
        self._write_state(account_id, deletion_date, at)
        log.info("destroyed the data key of account %s", account_id)
        return KeyState(account_id, DESTROYED, deletion_date, at)

    def _write_state(self, account_id: str, deletion_date: datetime, destroyed_at: datetime | None) -> None:
        body: _StateFile = {"account_id": account_id, "deletion_date": deletion_date.isoformat(),
                "destroyed_at": destroyed_at.isoformat() if destroyed_at else None}
        tmp = self._write_private(json.dumps(body, sort_keys=True).encode())
        os.replace(tmp, self._state_path(account_id))
        _fsync_dir(self.directory)

    def _read_state(self, account_id: str) -> KeyState:
        try:
            body: _StateFile = json.loads(self._state_path(account_id).read_text())
            deletion_date = datetime.fromisoformat(body["deletion_date"])
            destroyed_at = datetime.fromisoformat(body["destroyed_at"]) if body["destroyed_at"] else None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeystoreError(f"the key state file of account {account_id} is unreadable: "
                                f"{type(exc).__name__}") from None
        return KeyState(account_id, DESTROYED if destroyed_at else PENDING_DELETION, deletion_date, destroyed_at)

    def _write_private(self, data: bytes) -> Path:
        """A new 0600 file in the directory holding ``data``, fsynced (same file system: link/replace work)."""
        fd, name = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")  # mkstemp creates it 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return Path(name)


def _aad(account_id: str) -> bytes:
    return json.dumps(encryption_context(account_id), sort_keys=True).encode()


def _fsync_dir(directory: Path) -> None:
    """Make a create, rename or unlink in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
