"""Customer API credentials in the ledger: issued and revoked by staff, one account each.

A token is ``<credential id>.<secret>``. The id is public (it names the credential in events and in
``filed_by``); only the secret's sha256 is kept, so the ledger database cannot hand out a working token.
Checking a token costs the same whatever is wrong with it (malformed, unknown, wrong secret, revoked): one
lookup by id, one digest, one constant-time comparison, then one error that says nothing of which it was.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from retention.ids import check_account_id
from retention.ledger.checks import check_staff
from retention.ledger.clock import db_now
from retention.ledger.events import EventLog, append_event
from retention.ledger.models import CustomerCredential, utc

SECRET_BYTES = 32
_TOKEN = re.compile(r"(?P<id>[0-9a-f]{32})\.(?P<secret>[A-Za-z0-9_-]{43})")
_CREDENTIAL_ID = re.compile(r"[0-9a-f]{32}")
# Looked up when a token is malformed, so that case costs a query too. Never issued: uuid4's hex has a 4 at 12.
_NO_SUCH_ID = "0" * 32
_NO_SUCH_DIGEST = hashlib.sha256(b"no credential").hexdigest()


class CredentialRefused(PermissionError):
    """The token is malformed, unknown, wrong or revoked; deliberately not which."""

    def __init__(self) -> None:
        super().__init__("credential refused")


@dataclass(frozen=True)
class CustomerIdentity:
    """Who a valid token is: its credential and the one account it acts for."""

    credential_id: str
    account_id: str

    @property
    def actor(self) -> str:
        """The ledger's name for what the credential does (``filed_by``, event actors)."""
        return f"customer:{self.credential_id}"


@dataclass(frozen=True)
class CredentialRecord:
    """A credential as staff see it: never its secret or digest."""

    id: str
    account_id: str
    issued_by: str
    issued_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None

    @classmethod
    def of(cls, row: CustomerCredential) -> CredentialRecord:
        return cls(row.id, row.account_id, row.issued_by, utc(row.issued_at),
                   None if row.revoked_at is None else utc(row.revoked_at), row.revoked_by)

    def as_dict(self) -> dict[str, str | None]:
        return {"credential_id": self.id, "account_id": self.account_id, "issued_by": self.issued_by,
                "issued_at": self.issued_at.isoformat(),
                "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
                "revoked_by": self.revoked_by}


class CustomerCredentials(EventLog):
    """Issuing, checking and revoking the credentials of the customer routes (``retention.api.customers``).
    Whether the account exists is the caller's to check (the registry is a layer beside the ledger)."""

    def issue_credential(self, account_id: str, *, issued_by: str) -> tuple[str, str]:
        """A new credential of ``account_id`` (``credential.issued``); returns (its id, the token). The token is
        shown once: nothing can rebuild it."""
        account_id, issued_by = check_account_id(account_id), check_staff(issued_by, "issued_by")
        credential_id, secret = uuid.uuid4().hex, secrets.token_urlsafe(SECRET_BYTES)

        def write() -> None:
            with self.session() as s:
                s.add(CustomerCredential(id=credential_id, account_id=account_id, secret_sha256=_digest(secret),
                                         issued_by=issued_by, issued_at=db_now(s)))
                s.flush()
                append_event(s, kind="credential.issued", actor=issued_by,
                             payload={"credential_id": credential_id, "account_id": account_id})
        self._retrying(write, "issue a customer credential")
        return credential_id, f"{credential_id}.{secret}"

    def revoke_credential(self, credential_id: str, *, revoked_by: str) -> CredentialRecord:
        """Stop a credential for good (``credential.revoked``). LookupError if there is no such credential,
        ValueError if it was revoked already."""
        revoked_by = check_staff(revoked_by, "revoked_by")

        def write() -> CredentialRecord:
            with self.session() as s:
                row = _locked(s, credential_id)
                if row.revoked_at is not None:
                    raise ValueError(f"credential {credential_id} was revoked already")
                row.revoked_at, row.revoked_by = db_now(s), revoked_by
                s.flush()
                append_event(s, kind="credential.revoked", actor=revoked_by,
                             payload={"credential_id": credential_id, "account_id": row.account_id})
                return CredentialRecord.of(row)
        return self._retrying(write, "revoke a customer credential")

    def credentials(self, account_id: str | None = None) -> list[CredentialRecord]:
        """Every credential (of one account, if given), newest first, revoked ones included."""
        query = select(CustomerCredential)
        if account_id is not None:
            query = query.where(CustomerCredential.account_id == check_account_id(account_id))
        with self._reader() as s:
            rows = s.scalars(query.order_by(CustomerCredential.issued_at.desc(), CustomerCredential.id))
            return [CredentialRecord.of(row) for row in rows]

    def authenticate(self, token: str) -> CustomerIdentity:
        """The credential and account a token stands for, or ``CredentialRefused`` whatever is wrong with it."""
        match = _TOKEN.fullmatch(token)
        credential_id = match["id"] if match else _NO_SUCH_ID
        with self._reader() as s:
            row = s.get(CustomerCredential, credential_id)
        presented = _digest(match["secret"] if match else token)
        expected = row.secret_sha256 if row is not None else _NO_SUCH_DIGEST
        # Every check is made before any is acted on, so no failure returns sooner than another.
        same = hmac.compare_digest(presented, expected)
        if not (same and match is not None and row is not None and row.revoked_at is None):
            raise CredentialRefused()
        return CustomerIdentity(row.id, row.account_id)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _locked(s: Session, credential_id: str) -> CustomerCredential:
    row = None
    if _CREDENTIAL_ID.fullmatch(credential_id):
        row = s.scalars(select(CustomerCredential).where(CustomerCredential.id == credential_id)
                        .with_for_update()).one_or_none()
    if row is None:
        raise LookupError(f"no customer credential {credential_id!r}")
    return row
