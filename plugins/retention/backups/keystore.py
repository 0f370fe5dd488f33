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

This module is the interface (``Keystore``), the lifecycle states and the checks both keystores share; the
keystores are ``local_keystore.LocalKeystore`` (the embedded stack's key files) and ``kms_keystore.KmsKeystore``
(AWS KMS). Only account ids reach log lines and messages; key bytes and key ids never do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # AES-GCM's standard nonce
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


@dataclass(frozen=True, slots=True)
class KeyState:
    account_id: str
    state: str  # enabled | pending_deletion | destroyed | absent
    deletion_date: datetime | None = None  # when a scheduled deletion takes effect
    destroyed_at: datetime | None = None  # when the key was really destroyed, if known

    @property
    def scheduled_date(self) -> datetime:
        """The deletion date of a key pending deletion or destroyed: both keystores always record one then."""
        if self.deletion_date is None:
            raise KeystoreError(f"the key of account {self.account_id} is {self.state} without a deletion date")
        return self.deletion_date


class Keystore(Protocol):
    """What the backups need of a keystore: envelope keys for copies, and the key's lifecycle.

    It does not promise the account's key itself: a KMS key never leaves KMS."""

    @property
    def kind(self) -> str:
        """Where the account keys are: "local" or "kms" (recorded with every copy and key event)."""

    def generate_data_key(self, account_id: str) -> DataKey:
        """A fresh data key for one copy, wrapped under the account's key (created on first use)."""

    def decrypt_data_key(self, account_id: str, wrapped: bytes) -> bytes:
        """Unwrap a copy's data key; refused once the account's key is scheduled for deletion or destroyed."""

    def state(self, account_id: str) -> KeyState:
        """Where the account's key is in its lifecycle."""

    def schedule_deletion(self, account_id: str, *, window_days: int, at: datetime) -> KeyState:
        """Schedule the key's deletion ``window_days`` (7..30) after ``at``; a second call keeps the first date."""

    def cancel_deletion(self, account_id: str) -> KeyState:
        """Cancel a scheduled deletion (a legal hold came into force); the key is enabled again."""

    def destroy_if_due(self, account_id: str, at: datetime) -> KeyState | None:
        """Destroy (or, in KMS, find destroyed) the account's key if its deletion date is at or before ``at``."""


def encryption_context(account_id: str) -> dict[str, str]:
    """What a wrapped data key is bound to: the account (KMS EncryptionContext; AES-GCM associated data locally)."""
    return {"retention:account_id": account_id}


def checked_account(account_id: str) -> str:
    """``account_id`` when it is a plain name: it names a key file and a KMS alias."""
    if not isinstance(account_id, str) or not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError("account id must be 1..128 characters of letters, digits, '_', '-' and '.' "
                         "(not starting with '.'): it names a key file and a KMS alias")
    return account_id


def checked_window(window_days: int) -> int:
    """``window_days`` when KMS would accept it as PendingWindowInDays."""
    if isinstance(window_days, bool) or not isinstance(window_days, int) \
            or not MIN_WINDOW_DAYS <= window_days <= MAX_WINDOW_DAYS:
        raise ValueError(f"window_days must be an integer from {MIN_WINDOW_DAYS} to {MAX_WINDOW_DAYS} "
                         f"(KMS's PendingWindowInDays), got {window_days!r}")
    return window_days


def as_utc(moment: datetime) -> datetime:
    """A plain UTC datetime (also from a pendulum one); a naive one is refused as ambiguous."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime is ambiguous; pass one with a time zone (UTC)")
    return datetime.fromtimestamp(moment.timestamp(), UTC)
