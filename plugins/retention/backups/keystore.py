"""Per-account data keys, so that an account's backup copies can be made unreadable by destroying one key.

Lifecycle, as in AWS KMS: enabled → pending_deletion (a 7..30 day window in which the deletion can still
be noticed and cancelled by an operator) → destroyed. A scheduled key is never handed out again and a
destroyed key is never recreated: a fresh key would let new backups of an offboarded account exist.

Envelope encryption (``generate_data_key`` / ``decrypt_data_key``): every backup copy gets a fresh 256-bit data
key, returned in the clear for the one copy and wrapped under the account's key; only the wrapped form is kept,
beside the copy. Unwrapping needs the account's key, so destroying that one key makes every copy encrypted under
it unreadable: that is the crypto-erase a certificate may claim, and only for those copies. The wrapped key is
bound to the account (AES-GCM associated data locally, the KMS encryption context in AWS): a copy cannot be
opened under another account's key.

Only account ids reach log lines and messages; key bytes and key ids never do.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

KEY_BYTES = 32  # AES-256
MIN_WINDOW_DAYS, MAX_WINDOW_DAYS = 7, 30  # KMS's bounds for PendingWindowInDays
ENABLED, PENDING_DELETION, DESTROYED, ABSENT = "enabled", "pending_deletion", "destroyed", "absent"

_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")  # also a safe file name and alias suffix


class KeystoreError(RuntimeError):
    """A keystore operation failed; the message names the account id only."""


class KeyDestroyed(KeystoreError):
    """The account's key was destroyed: its backups are unreadable and it is never recreated."""


class KeyPendingDeletion(KeystoreError):
    """The account's key is scheduled for deletion: it encrypts nothing new and, as in KMS, decrypts nothing."""


class KeyUnavailable(KeystoreError):
    """The wrapped data key of a copy cannot be unwrapped: the account's key is gone or refuses it."""


@dataclass(frozen=True, slots=True, repr=False)
class DataKey:
    """A fresh data key for one copy: ``plaintext`` encrypts it and is then dropped; ``wrapped`` is stored."""
    plaintext: bytes
    wrapped: bytes


NONCE_BYTES = 12  # AES-GCM's standard nonce


def encryption_context(account_id: str) -> dict[str, str]:
    """What a wrapped data key is bound to: the account (KMS EncryptionContext; AES-GCM associated data locally)."""
    return {"retention:account_id": account_id}


@dataclass(frozen=True, slots=True)
class KeyState:
    account_id: str
    state: str  # enabled | pending_deletion | destroyed | absent
    deletion_date: datetime | None = None  # when a scheduled deletion takes effect
    destroyed_at: datetime | None = None  # when the key was really destroyed, if known


class Keystore(Protocol):
    def data_key(self, account_id: str) -> bytes:
        """The account's 32-byte key, created on first use."""

    def schedule_deletion(self, account_id: str, *, window_days: int, at: datetime) -> KeyState:
        """Schedule the key's deletion ``window_days`` (7..30) after ``at``; a second call keeps the first date."""

    def destroy_due(self, at: datetime, *, keep: frozenset[str] = frozenset()) -> list[KeyState]:
        """Destroy every key whose deletion date is at or before ``at``, except the accounts in ``keep`` (a legal
        hold came into force); the states of those destroyed now."""

    def state(self, account_id: str) -> KeyState:
        """Where the account's key is in its lifecycle."""

    def generate_data_key(self, account_id: str) -> DataKey:
        """A fresh data key for one copy, wrapped under the account's key (created on first use)."""

    def decrypt_data_key(self, account_id: str, wrapped: bytes) -> bytes:
        """Unwrap a copy's data key; refused once the account's key is scheduled for deletion or destroyed."""

    def cancel_deletion(self, account_id: str) -> KeyState:
        """Cancel a scheduled deletion (a legal hold came into force); the key is enabled again."""

    def destroy_if_due(self, account_id: str, at: datetime) -> KeyState | None:
        """Destroy (or, in KMS, find destroyed) the account's key if its deletion date is at or before ``at``."""


def _check_account(account_id: str) -> str:
    if not isinstance(account_id, str) or not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError("account id must be 1..128 characters of letters, digits, '_', '-' and '.' "
                         "(not starting with '.'): it names a key file and a KMS alias")
    return account_id


def _check_window(window_days: int) -> int:
    if isinstance(window_days, bool) or not isinstance(window_days, int) \
            or not MIN_WINDOW_DAYS <= window_days <= MAX_WINDOW_DAYS:
        raise ValueError(f"window_days must be an integer from {MIN_WINDOW_DAYS} to {MAX_WINDOW_DAYS} "
                         f"(KMS's PendingWindowInDays), got {window_days!r}")
    return window_days


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a naive datetime is ambiguous; pass one with a time zone (UTC)")
    return datetime.fromtimestamp(moment.timestamp(), UTC)  # a plain datetime, also from a pendulum one


# -- the embedded stand-in for KMS ----------------------------------------------------------------

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
                                     f"{state.deletion_date.isoformat()}; it decrypts nothing")
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
        at = _utc(at)
        state = self.state(account_id)
        if state.state == PENDING_DELETION and state.deletion_date <= at:
            return self._destroy(account_id, state.deletion_date, at)
        return None

    def data_key(self, account_id: str) -> bytes:
        state = self.state(account_id)
        if state.state == DESTROYED:
            raise KeyDestroyed(f"the key of account {account_id} was destroyed; it is never recreated")
        if state.state == PENDING_DELETION:
            raise KeyPendingDeletion(f"the key of account {account_id} is scheduled for deletion "
                                     f"on {state.deletion_date.isoformat()}; it encrypts nothing new")
        if state.state == ABSENT:
            self._create_key(account_id)
        return self._read_key(account_id)

    def schedule_deletion(self, account_id: str, *, window_days: int, at: datetime) -> KeyState:
        """Due ``window_days`` after ``at``. An account without a key stays "absent": nothing to destroy."""
        _check_window(window_days)
        current = self.state(account_id)
        if current.state != ENABLED:  # absent: nothing to destroy; pending or destroyed: keep the first date
            return current
        deletion_date = _utc(at) + timedelta(days=window_days)
        self._write_state(account_id, deletion_date, None)
        log.info("key of account %s scheduled for deletion on %s", account_id, deletion_date.isoformat())
        return self.state(account_id)

    def destroy_due(self, at: datetime, *, keep: frozenset[str] = frozenset()) -> list[KeyState]:
        destroyed = []
        for path in sorted(self.directory.glob("*.json")):
            if path.stem not in keep and (state := self.destroy_if_due(path.stem, at)) is not None:
                destroyed.append(state)
        return destroyed

    def state(self, account_id: str) -> KeyState:
        _check_account(account_id)
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
        body = {"account_id": account_id, "deletion_date": deletion_date.isoformat(),
                "destroyed_at": destroyed_at.isoformat() if destroyed_at else None}
        tmp = self._write_private(json.dumps(body, sort_keys=True).encode())
        os.replace(tmp, self._state_path(account_id))
        _fsync_dir(self.directory)

    def _read_state(self, account_id: str) -> KeyState:
        try:
            body = json.loads(self._state_path(account_id).read_text())
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


# -- AWS KMS --------------------------------------------------------------------------------------

class KmsKeystore:
    """One KMS key per account, found by the alias ``alias/retention/<account_id>``.

    KMS destroys a key itself when its window ends, and deletes its alias with it. ``destroy_due`` only
    reports what KMS has destroyed, for the keys this instance scheduled (it remembers their key ids,
    because once the alias is gone nothing else leads to them); without that memory a destroyed key's
    account reads as "absent". KMS dates a deletion from its own clock, so ``at`` is not used there.
    """

    kind = "kms"

    def __init__(self, client: Any, *, alias_prefix: str = "alias/retention/") -> None:
        self._client = client
        self._alias_prefix = alias_prefix
        self._scheduled: dict[str, tuple[str, datetime]] = {}  # account id -> (key id, deletion date)
        self._destroyed: dict[str, KeyState] = {}

    def remember(self, account_id: str, key_id: str, deletion_date: datetime) -> None:
        """A deletion scheduled by an earlier process (the ledger keeps the key id): once KMS has destroyed the
        key its alias is gone too, and only the key id tells "destroyed" from "never had a key"."""
        _check_account(account_id)
        if account_id not in self._destroyed:
            self._scheduled.setdefault(account_id, (key_id, _utc(deletion_date)))

    def scheduled_key_id(self, account_id: str) -> str | None:
        """The id of the key whose deletion this instance scheduled or remembers (for the ledger)."""
        remembered = self._scheduled.get(account_id)
        return remembered[0] if remembered else None

    def generate_data_key(self, account_id: str) -> DataKey:
        """KMS GenerateDataKey (AES_256) under the account's key, bound to the account by the encryption context."""
        key_id = self.key_id(account_id)  # refuses a key pending deletion or destroyed
        response = self._call("GenerateDataKey", account_id, self._client.generate_data_key, KeyId=key_id,
                              KeySpec="AES_256", EncryptionContext=encryption_context(account_id))
        return DataKey(response["Plaintext"], response["CiphertextBlob"])

    def decrypt_data_key(self, account_id: str, wrapped: bytes) -> bytes:
        """KMS Decrypt. AWS refuses it for a key pending deletion (KMSInvalidStateException); the state is read
        first so that every KMS implementation (moto's does not refuse) behaves as AWS does here."""
        metadata = self._describe(self._alias(account_id))
        if metadata is not None and metadata["KeyState"] == "PendingDeletion":
            raise KeyPendingDeletion(f"the KMS key of account {account_id} is scheduled for deletion; "
                                     "it decrypts nothing")
        try:
            return self._client.decrypt(CiphertextBlob=wrapped, EncryptionContext=encryption_context(account_id))["Plaintext"]
        except ClientError as exc:
            raise KeyUnavailable(f"KMS Decrypt for account {account_id} refused: {_code(exc)}") from None

    def cancel_deletion(self, account_id: str) -> KeyState:
        """CancelKeyDeletion leaves a key disabled; EnableKey makes it usable again (held data stays readable)."""
        metadata = self._describe(self._alias(account_id))
        remembered = self._scheduled.get(account_id)
        key_id = metadata["KeyId"] if metadata else remembered[0] if remembered else None
        if key_id is None:
            return self.state(account_id)
        current = self._describe(key_id, account_id)
        if current is None or current["KeyState"] != "PendingDeletion":
            return self.state(account_id)
        self._call("CancelKeyDeletion", account_id, self._client.cancel_key_deletion, KeyId=key_id)
        self._call("EnableKey", account_id, self._client.enable_key, KeyId=key_id)
        self._scheduled.pop(account_id, None)
        log.info("deletion of the KMS key of account %s cancelled", account_id)
        return self.state(account_id)

    def destroy_if_due(self, account_id: str, at: datetime) -> KeyState | None:
        """KMS destroys the key itself when the window ends: report it once KMS no longer knows the key id."""
        remembered = self._scheduled.get(account_id)
        if remembered is None:
            return None
        key_id, deletion_date = remembered
        if deletion_date <= _utc(at) and self._describe(key_id, account_id) is None:
            state = KeyState(account_id, DESTROYED, deletion_date, None)  # KMS does not say when
            self._destroyed[account_id] = state
            del self._scheduled[account_id]
            return state
        return None

    def data_key(self, account_id: str) -> bytes:
        raise NotImplementedError(
            "KMS keys never leave KMS: backup copies are encrypted with data keys from GenerateDataKey under "
            "key_id(account_id) (generate_data_key), so there is no raw per-account key to return")

    def key_id(self, account_id: str) -> str:
        """The id of the account's KMS key, created with its alias on first use."""
        metadata = self._describe(self._alias(account_id))
        if metadata is not None:
            self._refuse_unless_enabled(account_id, metadata)
            return metadata["KeyId"]
        return self._create_key(account_id)

    def schedule_deletion(self, account_id: str, *, window_days: int, at: datetime) -> KeyState:
        _check_window(window_days)
        metadata = self._describe(self._alias(account_id))
        current = self._state_of(account_id, metadata) if metadata else self.state(account_id)
        if current.state == PENDING_DELETION:  # scheduled by an earlier process: remember it for destroy_if_due
            self._scheduled.setdefault(account_id, (metadata["KeyId"], current.deletion_date))
        if current.state != ENABLED:  # absent: nothing to destroy; pending or destroyed: keep the first date
            return current
        key_id = metadata["KeyId"]
        response = self._call("ScheduleKeyDeletion", account_id, self._client.schedule_key_deletion,
                              KeyId=key_id, PendingWindowInDays=window_days)
        deletion_date = _utc(response["DeletionDate"])
        self._scheduled[account_id] = (key_id, deletion_date)
        log.info("KMS key of account %s scheduled for deletion on %s", account_id, deletion_date.isoformat())
        return KeyState(account_id, PENDING_DELETION, deletion_date)

    def destroy_due(self, at: datetime, *, keep: frozenset[str] = frozenset()) -> list[KeyState]:
        """KMS destroys keys itself when their window ends; a held account's deletion is cancelled first."""
        at = _utc(at)
        for account_id in sorted(keep & self._scheduled.keys()):
            self.cancel_deletion(account_id)
        return [state for account_id in sorted(self._scheduled) if (state := self.destroy_if_due(account_id, at))]

    def state(self, account_id: str) -> KeyState:
        metadata = self._describe(self._alias(account_id))
        if metadata is None:
            remembered = self._scheduled.get(account_id)
            if remembered and self._describe(remembered[0], account_id) is None:
                return KeyState(account_id, DESTROYED, remembered[1], None)
            return self._destroyed.get(account_id, KeyState(account_id, ABSENT))
        return self._state_of(account_id, metadata)

    # -- KMS calls --------------------------------------------------------------------------------

    def _alias(self, account_id: str) -> str:
        return self._alias_prefix + _check_account(account_id)

    def _state_of(self, account_id: str, metadata: dict) -> KeyState:
        kms_state = metadata["KeyState"]
        if kms_state == "Enabled":
            return KeyState(account_id, ENABLED)
        if kms_state == "PendingDeletion":
            return KeyState(account_id, PENDING_DELETION, _utc(metadata["DeletionDate"]))
        raise KeystoreError(f"the KMS key of account {account_id} is in state {kms_state}, which this keystore "
                            "does not manage; an operator changed it outside the retention orchestrator")

    def _refuse_unless_enabled(self, account_id: str, metadata: dict) -> None:
        state = self._state_of(account_id, metadata)
        if state.state == PENDING_DELETION:
            raise KeyPendingDeletion(f"the KMS key of account {account_id} is scheduled for deletion "
                                     f"on {state.deletion_date.isoformat()}; it encrypts nothing new")

    def _create_key(self, account_id: str) -> str:
        if account_id in self._scheduled or account_id in self._destroyed:
            raise KeyDestroyed(f"the KMS key of account {account_id} was scheduled for deletion; "
                               "it is never recreated")
        created = self._call("CreateKey", account_id, self._client.create_key,
                             Description=f"retention: backup data key of account {account_id}",
                             KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")
        key_id = created["KeyMetadata"]["KeyId"]
        try:
            self._client.create_alias(AliasName=self._alias(account_id), TargetKeyId=key_id)
        except ClientError as exc:
            if _code(exc) != "AlreadyExistsException":
                raise KeystoreError(f"KMS CreateAlias for account {account_id} failed: {_code(exc)}") from None
            # Another process created the account's key first: use theirs and retire ours.
            self._call("ScheduleKeyDeletion", account_id, self._client.schedule_key_deletion,
                       KeyId=key_id, PendingWindowInDays=MIN_WINDOW_DAYS)
            return self.key_id(account_id)
        log.info("created the KMS key of account %s", account_id)
        return key_id

    def _describe(self, key: str, account_id: str | None = None) -> dict | None:
        """DescribeKey's metadata, or None when KMS does not know the key or alias."""
        try:
            return self._client.describe_key(KeyId=key)["KeyMetadata"]
        except ClientError as exc:
            if _code(exc) == "NotFoundException":
                return None
            who = account_id or key.removeprefix(self._alias_prefix)
            raise KeystoreError(f"KMS DescribeKey for account {who} failed: {_code(exc)}") from None

    @staticmethod
    def _call(operation: str, account_id: str, method, **kwargs) -> dict:
        # botocore's messages can quote ARNs; only the error code goes into ours.
        try:
            return method(**kwargs)
        except ClientError as exc:
            raise KeystoreError(f"KMS {operation} for account {account_id} failed: {_code(exc)}") from None


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "unknown")
