"""Signed, expiring links for customers, who are not Airflow users: a certificate download, a return
receipt. Signed with ``RETENTION_LINK_SECRET`` (HMAC-SHA256); each purpose has its own salt, so a link made
for one purpose never opens another, and names every claim its route needs (the certificate or package,
and the account), so a link lacking one opens nothing.

Rotation: links made with a secret listed in ``RETENTION_LINK_SECRET_PREVIOUS`` keep opening until it is
removed from that list; new links are signed with the current secret only. One certificate link can be
revoked on its own (``link.revoked``, naming the token's sha256, its link id). Only the token's sha256
goes to the ledger, never the token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from itsdangerous import BadSignature, URLSafeSerializer

if TYPE_CHECKING:
    from retention.ledger import Ledger

CERTIFICATE_DOWNLOAD = "retention.certificate-download"
RETURN_RECEIPT = "retention.return-receipt"
REQUIRED_CLAIMS = {CERTIFICATE_DOWNLOAD: ("c", "a"), RETURN_RECEIPT: ("p", "a")}

SECRET_RULE = ("at least 32 random bytes written as hex (64+ characters) or base64/base64url (43+ characters), "
               "nothing else (no spaces), with at least 12 distinct characters; make one with "
               "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` or `openssl rand -hex 32`")
_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
MIN_BYTES, MIN_DISTINCT = 32, 12


class LinkNotConfigured(RuntimeError):
    """No RETENTION_LINK_SECRET, or one that breaks ``SECRET_RULE``."""


class LinkInvalid(ValueError):
    """Forged, altered, expired, made for another purpose, or lacking a claim its purpose needs."""


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` is too weak to sign links, or None. It refuses placeholders, typos and repeated
    characters; it cannot tell a random secret from a chosen one, so make it with a random generator."""
    if _HEX.fullmatch(secret):
        size = len(secret) // 2
    elif _BASE64.fullmatch(secret):
        size = len(secret.rstrip("=")) * 6 // 8
    else:
        return "has characters other than hex or base64 (spaces, punctuation)"
    if size < MIN_BYTES:
        return f"holds {size} bytes, fewer than {MIN_BYTES}"
    if len(set(secret.rstrip("="))) < MIN_DISTINCT:
        return f"has fewer than {MIN_DISTINCT} distinct characters: not random"
    return None


def sign_link(purpose: str, claims: Mapping[str, str], hours: int, secret: str | None) -> tuple[str, datetime]:
    missing = [name for name in REQUIRED_CLAIMS[purpose] if not claims.get(name)]
    if missing:
        raise ValueError(f"a {purpose} link needs the claims {', '.join(missing)}")
    expires = datetime.now(UTC) + timedelta(hours=hours)
    # A random nonce: two links with the same claims made in the same second would otherwise be the same
    # token, and revoking one (by its sha256) would revoke the other.
    nonce = secrets.token_urlsafe(9)
    return _serializer(purpose, secret, ()).dumps({**claims, "n": nonce, "exp": int(expires.timestamp())}), expires


def open_link(purpose: str, token: str, secret: str | None, previous: Sequence[str] = ()) -> dict[str, str]:
    """The claims its purpose needs (``REQUIRED_CLAIMS``), each a non-empty string, of a link signed with
    ``secret`` or one of the ``previous`` secrets and unexpired."""
    try:
        claims = _serializer(purpose, secret, previous).loads(token)
    except BadSignature:
        raise LinkInvalid("this link is not valid") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) \
            or claims["exp"] < datetime.now(UTC).timestamp() \
            or not all(isinstance(claims.get(name), str) and claims[name] for name in REQUIRED_CLAIMS[purpose]):
        raise LinkInvalid("this link is not valid")
    return {name: claims[name] for name in REQUIRED_CLAIMS[purpose]}


def token_digest(token: str) -> str:
    """A link's id: the sha256 of its token, as the ledger records it."""
    return hashlib.sha256(token.encode()).hexdigest()


def link_revoked(ledger: Ledger, token: str) -> bool:
    digest = token_digest(token)
    return any(e.payload.get("token_sha256") == digest for e in ledger.events_of_kind("link.revoked"))


def revoke_certificate_link(ledger: Ledger, certificate_id: str, link_id: str, *, actor: str) -> bool:
    """Record ``link.revoked`` for the download link ``link_id`` (its token's sha256) of ``certificate_id``;
    False if it was revoked already. LookupError if no such link was made for that certificate."""
    made = next((e for e in ledger.events_of_kind("certificate.link_created")
                 if e.payload.get("certificate_id") == certificate_id and e.payload.get("token_sha256") == link_id),
                None)
    if made is None:
        raise LookupError(f"no link {link_id} was made for {certificate_id}")
    if any(e.payload.get("token_sha256") == link_id for e in ledger.events_of_kind("link.revoked")):
        return False
    ledger.append("link.revoked", {"certificate_id": certificate_id, "account_id": made.payload["account_id"],
                                   "token_sha256": link_id}, actor=actor)
    return True


def _serializer(purpose: str, secret: str | None, previous: Sequence[str]) -> URLSafeSerializer:
    if not secret:
        raise LinkNotConfigured("customer links are not configured: set RETENTION_LINK_SECRET")
    for name, value in (("RETENTION_LINK_SECRET", secret), *(("RETENTION_LINK_SECRET_PREVIOUS", p) for p in previous)):
        if problem := secret_problem(value):
            raise LinkNotConfigured(f"{name} {problem}; expected {SECRET_RULE}")
    # itsdangerous signs with the last key and accepts any of them; SHA-256 instead of its default SHA-1.
    return URLSafeSerializer([*previous, secret], salt=purpose, signer_kwargs={"digest_method": hashlib.sha256})
