"""Signed, expiring links for customers, who are not Airflow users: a certificate download, a return
receipt. Signed with ``RETENTION_LINK_SECRET``; each purpose has its own salt, so a link made for one
purpose never opens another. Only the token's sha256 goes to the ledger."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer

CERTIFICATE_DOWNLOAD = "retention.certificate-download"
RETURN_RECEIPT = "retention.return-receipt"


class LinkNotConfigured(RuntimeError):
    """No RETENTION_LINK_SECRET (or one shorter than 32 characters)."""


class LinkInvalid(ValueError):
    """Forged, altered, expired, or made for another purpose."""


def sign_link(purpose: str, claims: dict, hours: int, secret: str | None) -> tuple[str, datetime]:
    expires = datetime.now(UTC) + timedelta(hours=hours)
    return _serializer(purpose, secret).dumps({**claims, "exp": int(expires.timestamp())}), expires


def open_link(purpose: str, token: str, secret: str | None) -> dict:
    try:
        claims = _serializer(purpose, secret).loads(token)
    except BadSignature:
        raise LinkInvalid("this link is not valid") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) \
            or claims["exp"] < datetime.now(UTC).timestamp():
        raise LinkInvalid("this link is not valid")
    return claims


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _serializer(purpose: str, secret: str | None) -> URLSafeSerializer:
    if not secret or len(secret) < 32:
        raise LinkNotConfigured("customer links are not configured (RETENTION_LINK_SECRET, 32+ characters)")
    return URLSafeSerializer(secret, salt=purpose)
