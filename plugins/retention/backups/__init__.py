"""Backups: how they stop holding an account's data once the account is deleted.

Two ways, and a certificate says which one applies and when:

Crypto-erase
    Per-account copies (``copies``: the account's export, AES-256-GCM under a fresh data key per copy,
    the data key kept only wrapped by the account's key in the ``Keystore``) become unreadable when
    that key is destroyed. Deletion is scheduled with a 7..30 day window (as in AWS KMS) and only takes
    effect when it ends, so a certificate dates the erasure by ``KeyState.destroyed_at`` (or by when the
    key was found gone), never by when the deletion was scheduled, and claims it only for the copies the
    ledger recorded as encrypted under that key.

Expiry
    Whole-database snapshots hold every account's data in the clear and cannot be edited, so they can
    only expire. The snapshots taken at or before the deletion (``clear_copies``) are recorded, and the
    certificate states the date by which the last of them expires under the backup policy
    (``last_expiry``) as pending, confirmed later by a supplement.
"""

from __future__ import annotations

from retention.backups.keystore import (
    DataKey,
    KeyDestroyed,
    KeyPendingDeletion,
    KeyState,
    Keystore,
    KeystoreError,
    KeyUnavailable,
)
from retention.backups.kms_keystore import KmsKeystore, RawKeyRefused
from retention.backups.local_keystore import LocalKeystore
from retention.backups.snapshots import (
    Snapshot,
    SnapshotCatalog,
    SnapshotError,
    clear_copies,
    last_expiry,
    restore_snapshot,
    take_snapshot,
)

__all__ = [
    "DataKey", "KeyDestroyed", "KeyPendingDeletion", "KeyState", "KeyUnavailable", "Keystore", "KeystoreError",
    "KmsKeystore", "LocalKeystore", "RawKeyRefused", "Snapshot", "SnapshotCatalog", "SnapshotError", "clear_copies",
    "last_expiry", "restore_snapshot", "take_snapshot",
]
