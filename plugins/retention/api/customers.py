"""The customer API (``/retention/customer/v1``): a customer's systems file data subject requests, follow them, and
fetch the account's certificates (DPA 5(a); Annex 1 §4(b) item 8, certification "upon Customer's request").

Authentication is ``Authorization: Bearer <token>`` only, a credential staff issued for one account
(``retention.api.credentials``); Airflow logins and cookies open nothing here. A missing, malformed, unknown or
revoked token answers the same 401, after the same work. Everything is scoped to the credential's account: another
account's request or certificate answers 404, as one that does not exist, so ids reveal nothing. Identifiers are
never echoed: not in errors, not in answers; the ledger gets their keyed hashes (``retention.requests.filing``).

A filed request is started by triggering the ``subject_request`` DAG from inside the api-server with the conf
``{"request_id": ...}`` only, so identifiers never enter Airflow's metadata. If that trigger fails the answer is
503 with the request's id: the request stays ``filed`` and staff start it by triggering ``subject_request`` with
that same conf (Airflow's UI or ``POST /api/v2/dags/subject_request/dagRuns``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi import Path as FastApiPath
from pydantic import BaseModel, Field

from retention.api.credentials import account_registry
from retention.api.operators import json_body, open_ledger
from retention.certificates import certificate_link
from retention.certificates.archive import FORMATS, ID_PATTERN, Archive, Issued, issued
from retention.ledger import Ledger
from retention.ledger.chain import iso_utc
from retention.ledger.credentials import CredentialRefused, CustomerIdentity
from retention.ledger.models import SubjectRequestRow
from retention.links import LinkNotConfigured
from retention.requests.filing import file_request
from retention.requests.request import RequestError, parse_subject_request
from retention.settings import Settings

_log = logging.getLogger(__name__)

SUBJECT_REQUEST_DAG = "subject_request"
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
NOT_FOUND = "no such request"
MAX_AUTHORIZATION = 200  # a token is 76 characters; anything far longer is refused unread
NO_CERTIFICATE = "no such certificate"


@dataclass(frozen=True)
class CustomerCall:
    """An authenticated call: who it is and the ledger it reads, open for the call's length."""

    identity: CustomerIdentity
    ledger: Ledger

    @property
    def account_id(self) -> str:
        return self.identity.account_id


def authenticated(authorization: Annotated[str, Header()] = "") -> Iterator[CustomerCall]:
    """The call's credential, or 401. Whatever is wrong (no header, another scheme, an over-long, bad or revoked
    token) the ledger does the same work and the answer is the same; the header is never echoed or logged."""
    scheme, _, token = authorization[:MAX_AUTHORIZATION].partition(" ")
    if scheme.lower() != "bearer" or len(authorization) > MAX_AUTHORIZATION:
        token = ""
    with open_ledger() as ledger:
        try:
            identity = ledger.authenticate(token.strip())
        except CredentialRefused:
            raise HTTPException(401, "not authenticated", headers={"WWW-Authenticate": "Bearer"}) from None
        yield CustomerCall(identity, ledger)


Customer = Annotated[CustomerCall, Depends(authenticated)]


async def json_object(request: Request) -> dict[str, object]:
    """The body as a JSON object, read here rather than by FastAPI, whose validation errors echo the input."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise HTTPException(422, "body: is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(422, "body: must be a JSON object")
    return body


class ForwardLink(BaseModel):
    hours: int = Field(default=168, ge=1, le=720, description="How long the link works (at most 30 days)")


router = APIRouter(prefix="/customer/v1")


@router.post("/requests", status_code=202, dependencies=[Depends(json_body)])
def file_subject_request(call: Customer, body: Annotated[dict[str, object], Depends(json_object)]
                         ) -> dict[str, object]:
    """File an access or erasure request for one person of the credential's account, and start it."""
    if "account_id" in body:
        raise HTTPException(422, "body.account_id: the account is the credential's; leave it out")
    try:
        spec = parse_subject_request({**body, "account_id": call.account_id}, where="body")
        request_id = file_request(call.ledger, Settings.from_env(), account_registry(call.account_id), spec,
                                  filed_by=call.identity.actor)
    except RequestError as exc:
        raise HTTPException(422, str(exc)) from None
    row = call.ledger.subject_request(request_id)
    filed = {"request_id": request_id, "status": row.status, "received_at": iso_utc(row.received_at),
             "deadline_at": iso_utc(row.deadline_at)}
    try:
        dag_run_id = start(request_id, call.identity)
    except Exception as exc:  # the request is safely filed; staff can start it (module docstring)
        _log.warning("subject request %s is filed, but the %s DAG could not be triggered: %s: %s", request_id,
                     SUBJECT_REQUEST_DAG, type(exc).__name__, exc)
        raise HTTPException(503, {**filed, "message": "the request is filed but could not be started yet; we start "
                                  "it and you need not file it again"}) from None
    return {**filed, "dag_run_id": dag_run_id}


@router.get("/requests")
def list_requests(call: Customer) -> list[dict[str, object]]:
    """The account's requests, newest first."""
    certified = certificates_of_requests(call.ledger)
    return [request_summary(row, certified) for row in call.ledger.subject_requests(account_id=call.account_id)]


@router.get("/requests/{request_id}")
def one_request(call: Customer, request_id: str) -> dict[str, object]:
    if not REQUEST_ID.fullmatch(request_id):
        raise HTTPException(404, NOT_FOUND)
    try:
        row = call.ledger.subject_request(request_id)
    except LookupError:
        raise HTTPException(404, NOT_FOUND) from None
    if row.account_id != call.account_id:
        raise HTTPException(404, NOT_FOUND)
    return request_summary(row, certificates_of_requests(call.ledger))


@router.get("/certificates")
def list_certificates(call: Customer) -> list[dict[str, object]]:
    """The account's certificates: its own deletion (``account_deletion``) and its erasure requests'
    (``subject_erasure``, with the request's id). A revoked one is listed as revoked, without the reason."""
    return [{"certificate_id": c.certificate_id, "kind": c.kind, "request_id": c.request_id, "status": c.status,
             "issued_at": c.issued_at, "revoked": c.revoked is not None}
            for c in issued(call.ledger, call.account_id).values()]


@router.get("/certificates/{certificate_id}.{fmt}")
def download(call: Customer, certificate_id: str, fmt: Annotated[str, FastApiPath(pattern="^(json|pdf)$")]
             ) -> Response:
    """The signed certificate, JSON or PDF; each download is a ``certificate.downloaded`` event."""
    record = _own_certificate(call, certificate_id)
    data = Archive(Settings.from_env().certificates_dir).load(certificate_id, fmt)
    if data is None:
        raise HTTPException(404, NO_CERTIFICATE)
    call.ledger.append("certificate.downloaded", {"certificate_id": certificate_id, "account_id": record.account_id,
                                                  "format": fmt, "credential_id": call.identity.credential_id},
                       actor=call.identity.actor)
    return Response(data, media_type=FORMATS[fmt], headers={
        "Content-Disposition": f'attachment; filename="{certificate_id}.{fmt}"', "Cache-Control": "no-store"})


@router.post("/certificates/{certificate_id}/link", status_code=201, dependencies=[Depends(json_body)])
def forward_link(call: Customer, certificate_id: str, body: ForwardLink) -> dict[str, object]:
    """A signed, expiring download link for one certificate, to forward (to an auditor, say) without a credential;
    staff can revoke it as any link."""
    _own_certificate(call, certificate_id)
    try:
        return certificate_link(call.ledger, certificate_id, call.account_id, body.hours, actor=call.identity.actor)
    except LinkNotConfigured as exc:
        raise HTTPException(503, str(exc)) from None


def start(request_id: str, identity: CustomerIdentity) -> str:
    """Trigger the ``subject_request`` DAG for a filed request, as its credential (Airflow's run shows
    ``triggering_user_name`` customer:<credential id>); returns the Airflow run id."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    run = trigger_dag(SUBJECT_REQUEST_DAG, triggered_by=DagRunTriggeredByType.REST_API,
                      triggering_user_name=identity.actor, conf={"request_id": request_id})
    if run is None:
        raise RuntimeError("Airflow made no run")
    return str(run.run_id)


def certificates_of_requests(ledger: Ledger) -> dict[str, str]:
    """{request id: its certificate id} from ``subject.certified`` (a reissue replaces the earlier one)."""
    return {str(e.payload["request_id"]): str(e.payload["certificate_id"])
            for e in ledger.events_of_kind("subject.certified")}


def request_summary(row: SubjectRequestRow, certified: dict[str, str], today: date | None = None
                    ) -> dict[str, object]:
    """A request as its customer sees it: what, where it stands, its deadline; never an identifier."""
    today = today or datetime.now(UTC).date()
    closed = row.closed_at
    return {"request_id": row.id, "request_type": row.request_type, "regime": row.regime, "status": row.status,
            "received_on": row.received_at.date().isoformat(), "deadline_at": iso_utc(row.deadline_at),
            # The last day counts as 0, an overdue request goes negative; a closed one has no deadline left.
            "days_left": (row.deadline_at.date() - today).days if closed is None else None,
            "filed_at": iso_utc(row.filed_at), "closed_at": None if closed is None else iso_utc(closed),
            "certificate_id": certified.get(row.id)}


def _own_certificate(call: CustomerCall, certificate_id: str) -> Issued:
    """The account's certificate, 404 if it is none of the account's, 410 if it was revoked."""
    record = issued(call.ledger, call.account_id).get(certificate_id) if ID_PATTERN.match(certificate_id) else None
    if record is None:
        raise HTTPException(404, NO_CERTIFICATE)
    if record.revoked is not None:
        raise HTTPException(410, "this certificate was revoked; ask your contact for the current one")
    return record
