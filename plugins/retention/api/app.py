"""The retention API (certificates, returns, forecast, the operator views), mounted into Airflow's api-server
at ``/retention`` by ``retention_plugin``.

Airflow does not authenticate or authorize plugin apps: every staff route declares the permission it
needs (``requires``, on Airflow's own JWT from the Authorization header or the UI's cookie), so an
anonymous call answers 401 and a user without the permission 403. State-changing routes take only a
JSON body (415 otherwise).

Customers are not Airflow users: their systems call ``/customer/v1`` with a credential staff issued
(``retention.api.customers``, ``retention.api.credentials``), or they download through links signed with
``RETENTION_LINK_SECRET`` that name one certificate, its account and an expiry. A link that is forged,
expired, or used for another certificate answers 403; one whose certificate is not that account's answers
404; one revoked on its own (staff's ``.../links/{link_id}/revoke``) or whose certificate was revoked answers
410; the answers say no more than that. Every issue, revocation, link and download is a ledger event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Annotated

import pendulum
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Response
from fastapi import Path as FastApiPath
from pydantic import BaseModel, Field

from retention.api.accounts import router as account_routes
from retention.api.credentials import router as credential_routes
from retention.api.customer_names import customers_of, registry_accounts
from retention.api.customers import router as customer_routes
from retention.api.holds import router as hold_routes
from retention.api.operators import json_body, open_ledger, requires, staff_id
from retention.api.operators import router as operator_views
from retention.certificates import KeySet, as_pdf, certificate_link, issue, load_signing_key
from retention.certificates.archive import FORMATS, ID_PATTERN, Archive, Issued, issued
from retention.engine.forecast import MAX_DAYS, as_document, forecast
from retention.engine.tasks import context
from retention.ids import ACCOUNT_ID
from retention.ledger import Ledger
from retention.links import (
    CERTIFICATE_DOWNLOAD,
    RETURN_RECEIPT,
    LinkInvalid,
    LinkNotConfigured,
    link_revoked,
    open_link,
    revoke_certificate_link,
    token_digest,
)
from retention.offboarding.returns import ReceiptRefused, record_receipt
from retention.permissions import Permission
from retention.settings import Settings

NOT_VALID = "this link is not valid"
CertificateStaff = Annotated[BaseUser, requires(Permission.CERTIFICATES)]


class IssueRequest(BaseModel):
    run_id: str = Field(min_length=1, max_length=64)
    account_id: str = Field(pattern=ACCOUNT_ID)
    exporter: str = Field(min_length=1, max_length=200, description="The customer, as the DPA names it")
    importer: str = Field(min_length=1, max_length=200, description="The processor, as the DPA names it")


class RevokeRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=500)


class LinkRequest(BaseModel):
    hours: int = Field(default=168, ge=1, le=720, description="How long the link works (at most 30 days)")
    acknowledge_partial: bool = Field(default=False, description="The person saw that the certificate is partial")


def create_app() -> FastAPI:
    Settings.from_env()  # refuse to start on a bad setting (a weak RETENTION_LINK_SECRET), naming it
    app = FastAPI(title="Retention: certificates, returns, forecast and operator views", version="1")
    app.include_router(operator_views)
    app.include_router(hold_routes)
    app.include_router(account_routes)
    app.include_router(credential_routes)
    app.include_router(customer_routes)  # authenticated by customer credentials, not Airflow (retention.api.customers)

    @app.get("/.well-known/jwks.json")
    def jwks(response: Response) -> Mapping[str, object]:
        """The public keys that sign certificates, current and retired (public: no authentication)."""
        settings = Settings.from_env()
        response.headers["Cache-Control"] = "public, max-age=300"
        return KeySet.read(settings.jwks_file).as_jwks() if settings.jwks_file else {"keys": []}

    @app.get("/forecast", dependencies=[requires(Permission.READ)])
    def forecast_deletions(days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = 30,
                           max_lines: Annotated[int | None, Query(ge=0)] = None) -> dict[str, object]:
        """What the daily sweep will delete per day, data class and account, and why (staff only).

        ``max_lines``: when the forecast has more lines (one per account, location and day: hundreds of
        thousands at 10,000 accounts), the answer carries none of them, only the per-day series, and says so in
        ``lines_omitted``; a page that refreshes need not download and the server need not build them all."""
        start = pendulum.now("UTC")
        with context() as ctx:
            lines = forecast(ctx, start, days)
            omitted = max_lines is not None and len(lines) > max_lines
            named = [*(() if omitted else (line.account_id for line in lines)),
                     *(t.account_id for t in lines.terminations)]
            customers = customers_of(ctx.accounts, named)
        document = as_document(lines, days, with_lines=not omitted)
        return {"start": start.to_date_string(), **document, "customers": customers,
                "lines_total": len(lines), "lines_omitted": omitted}

    @app.get("/certificates", dependencies=[requires(Permission.READ)])
    def list_certificates(account_id: str | None = None) -> list[dict[str, object]]:
        with open_ledger() as ledger:
            found = list(issued(ledger, account_id).values())
        names = customers_of(registry_accounts(), (c.account_id for c in found))
        return [{**asdict(c), "customer": names[c.account_id]} for c in found]

    @app.post("/certificates", status_code=201, dependencies=[Depends(json_body)])
    def issue_certificate(body: IssueRequest, user: CertificateStaff) -> dict[str, str]:
        settings = Settings.from_env()
        key = load_signing_key(settings.signing_key_file)
        with open_ledger() as ledger:
            try:
                document = issue(ledger, body.run_id, body.account_id, key, exporter=body.exporter,
                                 importer=body.importer, rules_dir=settings.rules_dir, actor=staff_id(user))
            except (LookupError, ValueError) as exc:
                raise HTTPException(422, str(exc)) from None
        certificate_id = Archive(settings.certificates_dir).save(document, as_pdf(document, key))
        return {"certificate_id": certificate_id, "kid": key.kid}

    @app.post("/certificates/{certificate_id}/revoke", dependencies=[Depends(json_body)])
    def revoke(certificate_id: str, body: RevokeRequest, user: CertificateStaff) -> dict[str, str | bool]:
        with open_ledger() as ledger:
            record = _issued(ledger, certificate_id)
            try:  # the reason is free text: kept erasable outside the chain, the event carries reason_sha256
                ledger.append("certificate.revoked",
                              {"certificate_id": certificate_id, "account_id": record.account_id},
                              actor=staff_id(user), texts={"reason": body.reason})
            except ValueError as exc:  # refused by the ledger's checks: the message names the field
                raise HTTPException(422, str(exc)) from None
        return {"certificate_id": certificate_id, "revoked": True}

    @app.post("/certificates/{certificate_id}/links", status_code=201, dependencies=[Depends(json_body)])
    def create_link(certificate_id: str, body: LinkRequest, user: CertificateStaff) -> dict[str, object]:
        with open_ledger() as ledger:
            record = _issued(ledger, certificate_id)
            if record.revoked:
                raise HTTPException(409, "the certificate is revoked")
            if record.status == "partial" and not body.acknowledge_partial:  # the person confirms first
                raise HTTPException(409, f"acknowledge_partial: certificate {certificate_id} is partial: it lists "
                                         "exceptions (data kept under a legal hold or by law, residue, or a deletion "
                                         "not yet confirmed); send acknowledge_partial: true to link it anyway")
            try:
                link = certificate_link(ledger, certificate_id, record.account_id, body.hours, actor=staff_id(user))
            except LinkNotConfigured as exc:
                raise HTTPException(503, str(exc)) from None
        return {**link, "status": record.status}

    @app.post("/certificates/{certificate_id}/links/{link_id}/revoke", dependencies=[Depends(json_body)])
    def revoke_link(certificate_id: str, link_id: Annotated[str, FastApiPath(pattern="^[0-9a-f]{64}$")],
                    user: CertificateStaff) -> dict[str, str | bool]:
        """Stop one download link (its id: the token's sha256, as ``certificate.link_created`` records it)."""
        with open_ledger() as ledger:
            _issued(ledger, certificate_id)
            try:
                revoke_certificate_link(ledger, certificate_id, link_id, actor=staff_id(user))
            except LookupError:
                raise HTTPException(404, "no such link for this certificate") from None
        return {"certificate_id": certificate_id, "link_id": link_id, "revoked": True}

    @app.get("/certificates/{certificate_id}/download")
    def download(certificate_id: str, token: Annotated[str, Query(max_length=2000)],
                 format: Annotated[str, Query(pattern="^(pdf|json)$")] = "pdf") -> Response:
        claims = _claims(CERTIFICATE_DOWNLOAD, token)
        if claims.get("c") != certificate_id or not ID_PATTERN.match(certificate_id):
            raise HTTPException(403, NOT_VALID)
        with open_ledger() as ledger:
            if link_revoked(ledger, token):
                raise HTTPException(410, "this link was revoked; ask your contact for a new one")
            record = issued(ledger, claims["a"]).get(certificate_id)
            if record is None:
                raise HTTPException(404, "no such certificate")
            if record.revoked:
                raise HTTPException(410, "this certificate was revoked; ask your contact for the current one")
            data = Archive(Settings.from_env().certificates_dir).load(certificate_id, format)
            if data is None:
                raise HTTPException(404, "no such certificate")
            ledger.append("certificate.downloaded", {"certificate_id": certificate_id, "account_id": record.account_id,
                                                     "format": format, "token_sha256": token_digest(token)},
                          actor="customer-link")
        return Response(data, media_type=FORMATS[format], headers={
            "Content-Disposition": f'attachment; filename="{certificate_id}.{format}"', "Cache-Control": "no-store"})

    @app.post("/returns/{package_id}/receipt", dependencies=[Depends(json_body)])
    def confirm_return(package_id: str, token: Annotated[str, Query(max_length=2000)],
                       manifest_sha256: Annotated[str, Body(embed=True, pattern="^[0-9a-f]{64}$")]
                       ) -> dict[str, object]:
        """The customer confirms it received and opened its return package by quoting the manifest's sha256."""
        claims = _claims(RETURN_RECEIPT, token)
        if claims.get("p") != package_id:
            raise HTTPException(403, NOT_VALID)
        with open_ledger() as ledger:
            try:
                receipt = record_receipt(ledger, package_id, manifest_sha256, actor="customer-link",
                                         account_id=claims.get("a"))
            except ReceiptRefused as exc:
                raise HTTPException(409, str(exc)) from None
        return {"package_id": package_id, "received": True, "account_id": receipt["account_id"]}

    return app


def _claims(purpose: str, token: str) -> dict[str, str]:
    try:
        settings = Settings.from_env()
        return open_link(purpose, token, settings.link_secret, settings.link_secrets_previous)
    except LinkNotConfigured as exc:
        raise HTTPException(503, str(exc)) from None
    except LinkInvalid:
        raise HTTPException(403, NOT_VALID) from None


def _issued(ledger: Ledger, certificate_id: str) -> Issued:
    record = issued(ledger).get(certificate_id)
    if record is None:
        raise HTTPException(404, "no such certificate")
    return record

