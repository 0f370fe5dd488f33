"""The offboarding's last step: close the run, sign its certificate, give the customer a link."""

from __future__ import annotations

from typing import Any, TypedDict

from retention.certificates import as_pdf, certificate_link, issue, load_signing_key
from retention.certificates.archive import Archive
from retention.certificates.termination import SCC
from retention.engine.context import SweepContext
from retention.engine.executor import APPROVAL
from retention.engine.report import build_report, finish_sweep
from retention.offboarding.plan import account_of
from retention.settings import PROCESSOR_NAME_UNSET, Settings

LINK_HOURS = 30 * 24


class OffboardingFailed(RuntimeError):
    """Something is unfinished or left behind: no certificate; `retention report RUN` says what."""


class Certified(TypedDict):
    """The certify task's result: where the signed certificate is and the customer's link (None without a
    link secret)."""
    certificate_id: str
    account_id: str
    pdf: str
    link: dict[str, Any] | None  # retention.certificates.certificate_link's answer


def certify_run(ctx: SweepContext, run_id: str, settings: Settings, *, actor: str) -> Certified:
    if not ctx.ledger.run_events(run_id, APPROVAL["offboarding"]):
        raise OffboardingFailed(f"offboarding {run_id} was never approved: no certificate")
    if settings.processor_name == PROCESSOR_NAME_UNSET:
        raise OffboardingFailed("set RETENTION_PROCESSOR_NAME: a certificate names the data importer who signs it")
    run = ctx.ledger.get_run(run_id)
    if run is None:
        raise OffboardingFailed(f"offboarding {run_id} is not in the ledger: no certificate")
    # A retry after the run was closed issues the certificate; it does not close the run again.
    report = finish_sweep(ctx.ledger, run_id, actor=actor) if run.status == "running" \
        else build_report(ctx.ledger, run_id)
    if report.status != "succeeded":
        raise OffboardingFailed(f"offboarding {run_id} {report.status}: no certificate; "
                                f"see `retention report {run_id}`")
    if not ctx.ledger.run_events(run_id, "backup.copies_recorded"):
        raise OffboardingFailed(f"offboarding {run_id}: its backups were not recorded; "
                                "no certificate until they are")
    account = ctx.accounts[account_of(ctx.ledger, run_id)]
    archive = Archive(settings.certificates_dir)
    issued = ctx.ledger.run_events(run_id, "certificate.issued")
    if issued:  # a retried or cleared certify: the run's certificate stands, only a new link is made
        return _reissue_link(ctx, archive, str(issued[-1].payload["certificate_id"]), account.id, settings,
                             actor=actor)
    key = load_signing_key(settings.signing_key_file)
    document = issue(ctx.ledger, run_id, account.id, key, exporter=account.customer or account.id,
                     importer=settings.processor_name, rules_dir=settings.rules_dir, actor=actor,
                     legal_basis=("dpa7b", SCC[account.scc]) if account.scc else ("dpa7b",))
    certificate_id = archive.save(document, as_pdf(document, key))
    return _certified(ctx, archive, certificate_id, account.id, settings, actor=actor)


def _reissue_link(ctx: SweepContext, archive: Archive, certificate_id: str, account_id: str, settings: Settings, *,
                  actor: str) -> Certified:
    """The run's certificate was issued by an earlier try: never a second one. Its archived file must be there."""
    if archive.load(certificate_id, "pdf") is None:
        raise OffboardingFailed(f"certificate {certificate_id} was issued for this run, but its file is not in the "
                                f"archive ({archive.directory}); no second certificate is issued: restore the file")
    return _certified(ctx, archive, certificate_id, account_id, settings, actor=actor)


def _certified(ctx: SweepContext, archive: Archive, certificate_id: str, account_id: str, settings: Settings, *,
               actor: str) -> Certified:
    link = certificate_link(ctx.ledger, certificate_id, account_id, LINK_HOURS, actor=actor) \
        if settings.link_secret else None
    return {"certificate_id": certificate_id, "account_id": account_id,
            "pdf": str(archive.directory / f"{certificate_id}.pdf"), "link": link}
