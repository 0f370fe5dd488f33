"""The signed certificate of a closed erasure request (``certificates.subject``), saved in the archive beside the
account certificates; issued once per request (a retry answers with the one issued)."""

from __future__ import annotations

from typing import TypedDict

from retention.certificates import as_pdf, load_signing_key
from retention.certificates.archive import Archive
from retention.engine.context import SweepContext
from retention.settings import PROCESSOR_NAME_UNSET, Settings

CERTIFIABLE = ("completed", "held", "nothing_found")  # a failed or rejected request gets no certificate


class NotCertifiable(RuntimeError):
    """The request is not an erasure that closed with an outcome a certificate can state."""


class SubjectCertified(TypedDict):
    certificate_id: str
    request_id: str
    pdf: str


def certify_request(ctx: SweepContext, settings: Settings, request_id: str, *, actor: str) -> SubjectCertified:
    from retention.certificates.subject import issue_subject_certificate

    row = ctx.ledger.subject_request(request_id)
    if row.request_type != "erasure" or row.status not in CERTIFIABLE:
        raise NotCertifiable(f"subject request {request_id} is a{'n' if row.request_type == 'access' else ''} "
                             f"{row.request_type} request, {row.status}: no certificate")
    if settings.processor_name == PROCESSOR_NAME_UNSET:
        raise NotCertifiable("set RETENTION_PROCESSOR_NAME: a certificate names the data importer who signs it")
    archive = Archive(settings.certificates_dir)
    issued = ctx.ledger.run_events(row.run_id, "subject.certified") if row.run_id else []
    if issued:
        certificate_id = str(issued[-1].payload["certificate_id"])
    else:
        key = load_signing_key(settings.signing_key_file)
        account = ctx.accounts.get(row.account_id)
        document = issue_subject_certificate(ctx.ledger, request_id, key,
                                             exporter=(account.customer if account else None) or row.account_id,
                                             importer=settings.processor_name, rules_dir=settings.rules_dir,
                                             actor=actor)
        certificate_id = archive.save(document, as_pdf(document, key))
    return {"certificate_id": certificate_id, "request_id": request_id,
            "pdf": str(archive.directory / f"{certificate_id}.pdf")}
