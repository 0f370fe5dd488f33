"""An access request's package (GDPR Art. 15, CCPA §1798.110): everything the request found of one person, as
the termination's return package is made (``retention.offboarding.returns``), for the customer to hand on.

The package is a tar of ``<location>/…`` (the person's rows as JSON Lines per table, their objects as they are
stored) and ``subprocessors/<name>/…`` (what each provider with a subject API returns for the person), with a
``manifest.json`` giving each file's sha256 and size and the records per location and provider; encrypted with
age for the customer's X25519 key (``age -d -i key.txt``), uploaded to the returns bucket
(``RETENTION_RETURNS_BUCKET`` through the Connection ``RETENTION_RETURNS_CONN_ID``) and reachable through a
presigned link that expires after ``LINK_DAYS``; the daily ``subject_request_housekeeping`` deletes the package
once its link has expired (``remove_expired``). Only an approved request is packaged.

The ledger gets ``subject.exported`` (package id, file and record counts, the manifest's sha256, the link's
expiry) and one ``subject.subprocessor`` per provider asked: never a file name, which may hold a visitor id.
A retried task finds the package already made and only signs a fresh link to it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
from collections.abc import Collection
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import pendulum

from retention.engine.context import SweepContext
from retention.ledger import Ledger
from retention.ledger.chain import iso_utc
from retention.offboarding.returns import (
    MAX_LINK,
    delete_package,
    download_link,
    export_locations,
    seal_and_upload,
    write_manifest,
)
from retention.rules.subjects import Subject
from retention.stores import Selector

FORMAT = ("tar+age (X25519); the person's rows as JSON Lines per table, objects as stored, subprocessors/<name>/ as "
          "each provider returns them; manifest.json with sha256 per file")
LINK_DAYS = MAX_LINK.days  # the longest an S3 (SigV4) presigned link can live
SUBPROCESSORS = "subprocessors"  # the package's folder of provider exports (no location id may take this name)


class NotPackaged(RuntimeError):
    """The request cannot be packaged (not an access request, not previewed or approved, or no key to encrypt
    to); nothing was exported."""


class Delivered(TypedDict):
    """``subject.exported``'s payload, and the link the customer downloads the package through."""

    request_id: str
    package_id: str
    files: int
    records: int
    manifest_sha256: str
    expires_at: str
    url: str


def deliver(request_id: str, recipient: str | None, *, actor: str,
            subprocessors: Collection[str] | None = None) -> Delivered:
    """The access request's step as the DAG and the CLI run it: package everything found of the person, with the
    exports of ``subprocessors`` (None: every provider the preview found the person at), for ``recipient`` (None:
    the customer's age key the request was filed with)."""
    from retention.requests.tasks import request_context
    from retention.settings import Settings
    from retention.stores import s3_client

    settings = Settings.from_env()
    with request_context(request_id) as ctx:  # the request's account's registry entry alone
        return package_request(ctx, request_id, recipient, client=s3_client(settings.returns_conn_id),
                               bucket=settings.returns_bucket, actor=actor, subprocessors=subprocessors)


def package_request(ctx: SweepContext, request_id: str, recipient: str | None, *, client: Any, bucket: str, actor: str,
                    subprocessors: Collection[str] | None = None, now: datetime | None = None) -> Delivered:
    """Export, seal, upload and record the package (once per request); returns its record and a fresh link."""
    moment = pendulum.instance(now or pendulum.now("UTC"))
    row = ctx.ledger.subject_request(request_id)
    if row.request_type != "access":
        raise NotPackaged(f"subject request {request_id} is an {row.request_type} request: only an access request "
                          "is packaged")
    if row.run_id is None:
        raise NotPackaged(f"subject request {request_id} was never previewed: nothing to package")
    if not ctx.ledger.run_events(row.run_id, "subject.approved"):
        raise NotPackaged(f"subject request {request_id} was not approved: nothing is packaged before it is")
    earlier = ctx.ledger.run_events(row.run_id, "subject.exported")
    if earlier:
        made = earlier[0].payload
    else:
        key = recipient or row.recipient
        if key is None:
            raise NotPackaged(f"subject request {request_id} was filed without the customer's age public key: give "
                              "its recipient (age1...)")
        made = _package(ctx, request_id, row.account_id, row.run_id, key, client=client, bucket=bucket,
                        actor=actor, subprocessors=subprocessors, now=moment)
    expires = timedelta(days=LINK_DAYS)
    return {"request_id": request_id, "package_id": str(made["package_id"]), "files": int(made["files"]),
            "records": int(made["records"]), "manifest_sha256": str(made["manifest_sha256"]),
            "expires_at": iso_utc(moment + expires),
            "url": download_link(client, bucket, package_key(row.account_id, str(made["package_id"])), expires)}


def remove_expired(ledger: Ledger, *, client: Any, bucket: str, now: datetime, actor: str) -> list[str]:
    """Delete every access package whose link has expired (all versions): it is a copy of a person's data, even
    if only the customer can decrypt it. Each removal is recorded as ``subject.package_removed``; a legal hold on
    the account keeps its packages (tried again on the next day's run). Returns the package ids removed."""
    removed = {str(e.payload["package_id"]) for e in ledger.events_of_kind("subject.package_removed")}
    done = []
    for event in ledger.events_of_kind("subject.exported"):
        package_id = str(event.payload["package_id"])
        if package_id in removed or datetime.fromisoformat(str(event.payload["expires_at"])) > now:
            continue
        row = ledger.subject_request(str(event.payload["request_id"]))
        if ledger.holds_in_force(row.account_id):  # the package holds every data class the request found
            continue
        delete_package(client, bucket, package_key(row.account_id, package_id), package_id)
        ledger.append("subject.package_removed", {"request_id": row.id, "package_id": package_id},
                      actor=actor, run_id=event.run_id)
        done.append(package_id)
    return done


def package_key(account_id: str, package_id: str) -> str:
    """Where the sealed package lies in the returns bucket: ids only, never an identifier."""
    return f"access/{account_id}/{package_id}.tar.age"


def _package(ctx: SweepContext, request_id: str, account_id: str, run_id: str, recipient: str, *, client: Any,
             bucket: str, actor: str, subprocessors: Collection[str] | None,
             now: pendulum.DateTime) -> dict[str, Any]:
    subject = ctx.ledger.request_subject(request_id)
    locations = sorted({task.location for task in ctx.ledger.tasks(run_id)})
    if SUBPROCESSORS in locations:
        raise NotPackaged(f"a location is named {SUBPROCESSORS!r}, the package's folder of provider exports")
    package_id = f"dsr-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="retention-access-") as tmp:
        root = Path(tmp) / package_id
        records = export_locations(ctx, Selector(account_id, subject=subject), locations, root)
        asked = _export_subprocessors(ctx, run_id, account_id, subject, root / SUBPROCESSORS, subprocessors)
        records.update({f"{SUBPROCESSORS}/{a['subprocessor']}": a["count"]
                        for a in asked if a["outcome"] == "exported"})
        manifest = write_manifest(root, package_id, account_id, records, now, FORMAT)
        files = len(json.loads(manifest)["files"])
        seal_and_upload(root, recipient, client=client, bucket=bucket, key=package_key(account_id, package_id))
    made: dict[str, Any] = {"request_id": request_id, "package_id": package_id, "files": files,
                            "records": sum(records.values()), "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
                            "expires_at": iso_utc(now + timedelta(days=LINK_DAYS))}
    with ctx.ledger.session() as s:  # together: a retry after a failed write asks no provider twice in the ledger
        for result in asked:
            ctx.ledger.append("subject.subprocessor", {"request_id": request_id, **result}, actor=actor,
                              run_id=run_id, session=s)
        ctx.ledger.append("subject.exported", made, actor=actor, run_id=run_id, session=s)
    return made


class Asked(TypedDict):
    """What one provider gave for the package (``subject.subprocessor``'s payload, less the request id)."""

    subprocessor: str
    outcome: str  # exported | manual | nothing_found
    count: int


def _export_subprocessors(ctx: SweepContext, run_id: str, account_id: str, subject: Subject, root: Path,
                          chosen: Collection[str] | None) -> list[Asked]:
    """Each provider the preview found the person at (API scope, matches) exported under ``root/<name>/``; one
    without a subject API is ``manual`` (a person must ask it), one that matched nothing ``nothing_found``."""
    previewed = ctx.ledger.run_events(run_id, "subject.previewed")
    found = previewed[-1].payload.get("subprocessors", []) if previewed else []
    asked: list[Asked] = []
    for entry in found:
        name, scope, matched = str(entry["subprocessor"]), entry["scope"], entry.get("matched")
        if (chosen is not None and name not in chosen) or scope == "none":
            continue
        if scope == "api" and matched:
            from retention.subprocessors import subjects

            result = subjects.export(name, account_id, subject, root)  # writes root/<name>/...
            asked.append({"subprocessor": name, "outcome": "exported", "count": result.records})
        else:
            asked.append({"subprocessor": name, "outcome": "manual" if scope == "manual" else "nothing_found",
                          "count": 0})
    return asked
