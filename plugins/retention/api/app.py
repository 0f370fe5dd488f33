"""The certificates API, mounted into Airflow's api-server at ``/retention`` by ``retention_plugin``.

Airflow does not authenticate plugin apps: every staff route declares ``GetUserDep`` (Airflow's own
JWT, from the Authorization header or the UI's cookie), so an anonymous call answers 401.

Customers are not Airflow users: they download through links signed with ``RETENTION_LINK_SECRET``
that name one certificate, its account and an expiry. A link that is forged, expired, or used for
another certificate answers 403; one whose certificate is not that account's answers 404; the
answers say no more than that. Every issue, revocation, link and download is a ledger event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query, Response
from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, Field

from airflow.api_fastapi.core_api.security import GetUserDep
from retention.certificates import KeySet, as_pdf, issue, load_signing_key
from retention.certificates.archive import FORMATS, ID_PATTERN, Archive, issued
from retention.ledger import Ledger
from retention.settings import Settings

LINK_SALT = "retention.certificate-download"
NOT_VALID = "this download link is not valid"


class IssueRequest(BaseModel):
    run_id: str = Field(min_length=1, max_length=64)
    account_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    exporter: str = Field(min_length=1, max_length=200, description="The customer, as the DPA names it")
    importer: str = Field(min_length=1, max_length=200, description="The processor, as the DPA names it")


class RevokeRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=500)


class LinkRequest(BaseModel):
    hours: int = Field(default=168, ge=1, le=720, description="How long the link works (at most 30 days)")


def create_app() -> FastAPI:
    app = FastAPI(title="Retention: deletion certificates", version="1")

    @app.get("/.well-known/jwks.json")
    def jwks(response: Response) -> dict:
        """The public keys that sign certificates, current and retired (public: no authentication)."""
        settings = Settings.from_env()
        response.headers["Cache-Control"] = "public, max-age=300"
        return KeySet.read(settings.jwks_file).as_jwks() if settings.jwks_file else {"keys": []}

    @app.get("/certificates")
    def list_certificates(user: GetUserDep, account_id: str | None = None) -> list[dict]:
        with _ledger() as ledger:
            return [c.__dict__ for c in issued(ledger, account_id).values()]

    @app.post("/certificates", status_code=201)
    def issue_certificate(body: IssueRequest, user: GetUserDep) -> dict:
        settings = Settings.from_env()
        key = load_signing_key(settings.signing_key_file)
        with _ledger() as ledger:
            try:
                document = issue(ledger, body.run_id, body.account_id, key, exporter=body.exporter,
                                 importer=body.importer, rules_dir=settings.rules_dir, actor=_actor(user))
            except (LookupError, ValueError) as exc:
                raise HTTPException(422, str(exc)) from None
        certificate_id = Archive(settings.certificates_dir).save(document, as_pdf(document, key))
        return {"certificate_id": certificate_id, "kid": key.kid}

    @app.post("/certificates/{certificate_id}/revoke")
    def revoke(certificate_id: str, body: RevokeRequest, user: GetUserDep) -> dict:
        with _ledger() as ledger:
            record = _issued(ledger, certificate_id)
            ledger.append("certificate.revoked", {"certificate_id": certificate_id, "account_id": record.account_id,
                                                  "reason": body.reason}, actor=_actor(user))
        return {"certificate_id": certificate_id, "revoked": True}

    @app.post("/certificates/{certificate_id}/links", status_code=201)
    def create_link(certificate_id: str, body: LinkRequest, user: GetUserDep) -> dict:
        expires = datetime.now(UTC) + timedelta(hours=body.hours)
        with _ledger() as ledger:
            record = _issued(ledger, certificate_id)
            if record.revoked:
                raise HTTPException(409, "the certificate is revoked")
            token = _serializer().dumps({"c": certificate_id, "a": record.account_id, "exp": int(expires.timestamp())})
            ledger.append("certificate.link_created", {
                "certificate_id": certificate_id, "account_id": record.account_id,
                "expires_at": expires.isoformat(timespec="seconds"), "token_sha256": _digest(token)},
                actor=_actor(user))
        return {"path": f"/retention/certificates/{certificate_id}/download?token={token}",
                "expires_at": expires.isoformat(timespec="seconds")}

    @app.get("/certificates/{certificate_id}/download")
    def download(certificate_id: str, token: Annotated[str, Query(max_length=2000)],
                 format: Annotated[str, Query(pattern="^(pdf|json)$")] = "pdf") -> Response:
        claims = _claims(token)
        if claims.get("c") != certificate_id or not ID_PATTERN.match(certificate_id):
            raise HTTPException(403, NOT_VALID)
        with _ledger() as ledger:
            record = issued(ledger, claims.get("a")).get(certificate_id)
            if record is None:
                raise HTTPException(404, "no such certificate")
            if record.revoked:
                raise HTTPException(410, "this certificate was revoked; ask your contact for the current one")
            data = Archive(Settings.from_env().certificates_dir).load(certificate_id, format)
            if data is None:
                raise HTTPException(404, "no such certificate")
            ledger.append("certificate.downloaded", {"certificate_id": certificate_id, "account_id": record.account_id,
                                                     "format": format, "token_sha256": _digest(token)},
                          actor="customer-link")
        return Response(data, media_type=FORMATS[format], headers={
            "Content-Disposition": f'attachment; filename="{certificate_id}.{format}"', "Cache-Control": "no-store"})

    return app


def _claims(token: str) -> dict:
    try:
        claims = _serializer().loads(token)
    except BadSignature:
        raise HTTPException(403, NOT_VALID) from None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) \
            or claims["exp"] < datetime.now(UTC).timestamp():
        raise HTTPException(403, NOT_VALID)
    return claims


def _serializer() -> URLSafeSerializer:
    secret = Settings.from_env().link_secret
    if not secret or len(secret) < 32:
        raise HTTPException(503, "download links are not configured (RETENTION_LINK_SECRET, 32+ characters)")
    return URLSafeSerializer(secret, salt=LINK_SALT)


@contextmanager
def _ledger() -> Iterator[Ledger]:
    with Ledger.open(Settings.from_env().database_url) as ledger:
        yield ledger


def _issued(ledger: Ledger, certificate_id: str):
    record = issued(ledger).get(certificate_id)
    if record is None:
        raise HTTPException(404, "no such certificate")
    return record


def _actor(user) -> str:
    return f"api:{user.get_id()}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
