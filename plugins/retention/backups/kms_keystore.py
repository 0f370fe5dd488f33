"""AWS KMS as the keystore: one KMS key per account, found by its alias; the keys never leave KMS.

See ``retention.backups.keystore`` for the lifecycle and the envelope encryption both keystores implement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn, NotRequired, TypedDict

from botocore.exceptions import ClientError

from retention.backups.keystore import (
    ABSENT,
    DESTROYED,
    ENABLED,
    MIN_WINDOW_DAYS,
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


class RawKeyRefused(KeystoreError, NotImplementedError):
    """Asked for an account's raw key, which KMS never hands out: KMS wraps and unwraps data keys itself.
    Deliberate, not unfinished: code that needs the raw key (``LocalKeystore.data_key``) cannot run on KMS."""


class KeyMetadata(TypedDict):
    """The part of KMS DescribeKey's ``KeyMetadata`` this keystore reads."""
    KeyId: str
    KeyState: str  # Enabled | PendingDeletion | Disabled | ...
    DeletionDate: NotRequired[datetime]  # while PendingDeletion


class KmsKeystore:
    """One KMS key per account, found by the alias ``alias/retention/<account_id>``.

    KMS destroys a key itself when its window ends, and deletes its alias with it. ``destroy_due`` only
    reports what KMS has destroyed, for the keys this instance scheduled (it remembers their key ids,
    because once the alias is gone nothing else leads to them); without that memory a destroyed key's
    account reads as "absent". KMS dates a deletion from its own clock, so ``at`` is not used there.
    """

    kind = "kms"

    def __init__(self, client: Any, *, alias_prefix: str = "alias/retention/") -> None:  # a boto3 KMS client
        self._client = client
        self._alias_prefix = alias_prefix
        self._scheduled: dict[str, tuple[str, datetime]] = {}  # account id -> (key id, deletion date)
        self._destroyed: dict[str, KeyState] = {}

    def remember(self, account_id: str, key_id: str, deletion_date: datetime) -> None:
        """A deletion scheduled by an earlier process (the ledger keeps the key id): once KMS has destroyed the
        key its alias is gone too, and only the key id tells "destroyed" from "never had a key"."""
        checked_account(account_id)
        if account_id not in self._destroyed:
            self._scheduled.setdefault(account_id, (key_id, as_utc(deletion_date)))

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
            plaintext: bytes = self._client.decrypt(CiphertextBlob=wrapped,
                                                    EncryptionContext=encryption_context(account_id))["Plaintext"]
            return plaintext
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
        if deletion_date <= as_utc(at) and self._describe(key_id, account_id) is None:
            state = KeyState(account_id, DESTROYED, deletion_date, None)  # KMS does not say when
            self._destroyed[account_id] = state
            del self._scheduled[account_id]
            return state
        return None

    def data_key(self, account_id: str) -> NoReturn:
        """Refused, by design: ``LocalKeystore.data_key`` has no KMS counterpart (see ``RawKeyRefused``)."""
        raise RawKeyRefused(
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
        checked_window(window_days)
        metadata = self._describe(self._alias(account_id))
        if metadata is None:  # absent, or destroyed: nothing to schedule
            return self.state(account_id)
        current = self._state_of(account_id, metadata)
        if current.state == PENDING_DELETION:  # scheduled by an earlier process: remember it for destroy_if_due
            self._scheduled.setdefault(account_id, (metadata["KeyId"], current.scheduled_date))
        if current.state != ENABLED:  # absent: nothing to destroy; pending or destroyed: keep the first date
            return current
        key_id = metadata["KeyId"]
        response = self._call("ScheduleKeyDeletion", account_id, self._client.schedule_key_deletion,
                              KeyId=key_id, PendingWindowInDays=window_days)
        deletion_date = as_utc(response["DeletionDate"])
        self._scheduled[account_id] = (key_id, deletion_date)
        log.info("KMS key of account %s scheduled for deletion on %s", account_id, deletion_date.isoformat())
        return KeyState(account_id, PENDING_DELETION, deletion_date)

    def destroy_due(self, at: datetime, *, keep: frozenset[str] = frozenset()) -> list[KeyState]:
        """KMS destroys keys itself when their window ends; a held account's deletion is cancelled first."""
        at = as_utc(at)
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
        return self._alias_prefix + checked_account(account_id)

    def _state_of(self, account_id: str, metadata: KeyMetadata) -> KeyState:
        kms_state = metadata["KeyState"]
        if kms_state == "Enabled":
            return KeyState(account_id, ENABLED)
        if kms_state == "PendingDeletion":
            return KeyState(account_id, PENDING_DELETION, as_utc(metadata["DeletionDate"]))
        raise KeystoreError(f"the KMS key of account {account_id} is in state {kms_state}, which this keystore "
                            "does not manage; an operator changed it outside the retention orchestrator")

    def _refuse_unless_enabled(self, account_id: str, metadata: KeyMetadata) -> None:
        state = self._state_of(account_id, metadata)
        if state.state == PENDING_DELETION:
            raise KeyPendingDeletion(f"the KMS key of account {account_id} is scheduled for deletion "
                                     f"on {state.scheduled_date.isoformat()}; it encrypts nothing new")

    def _create_key(self, account_id: str) -> str:
        if account_id in self._scheduled or account_id in self._destroyed:
            raise KeyDestroyed(f"the KMS key of account {account_id} was scheduled for deletion; "
                               "it is never recreated")
        created = self._call("CreateKey", account_id, self._client.create_key,
                             Description=f"retention: backup data key of account {account_id}",
                             KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")
        key_id: str = created["KeyMetadata"]["KeyId"]
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

    def _describe(self, key: str, account_id: str | None = None) -> KeyMetadata | None:
        """DescribeKey's metadata, or None when KMS does not know the key or alias."""
        try:
            metadata: KeyMetadata = self._client.describe_key(KeyId=key)["KeyMetadata"]
            return metadata
        except ClientError as exc:
            if _code(exc) == "NotFoundException":
                return None
            who = account_id or key.removeprefix(self._alias_prefix)
            raise KeystoreError(f"KMS DescribeKey for account {who} failed: {_code(exc)}") from None

    @staticmethod
    def _call(operation: str, account_id: str, method: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
        # botocore's messages can quote ARNs; only the error code goes into ours.
        try:
            response: dict[str, Any] = method(**kwargs)
            return response
        except ClientError as exc:
            raise KeystoreError(f"KMS {operation} for account {account_id} failed: {_code(exc)}") from None


def _code(exc: ClientError) -> str:
    code: str = exc.response.get("Error", {}).get("Code", "unknown")
    return code
