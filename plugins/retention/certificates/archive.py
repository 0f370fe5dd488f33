"""Issued certificates on disk, by id: ``<id>.json`` (the signed original) and ``<id>.pdf``.

Ids are checked against their exact shape before they touch a path, so a request can never name a
file outside the archive. What was issued, for which account, and what was revoked is the ledger's
to say (``certificate.issued`` / ``certificate.revoked``); the archive only keeps the bytes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypedDict

from retention.ledger import Ledger

ID_PATTERN = re.compile(r"^cert-[0-9a-f]{32}$")
FORMATS = {"json": "application/json", "pdf": "application/pdf"}
ACCOUNT_DELETION = "account_deletion"  # the kind of an account's certificate (its events name no kind)


@dataclass(frozen=True)
class Issued:
    certificate_id: str
    account_id: str
    run_id: str
    status: str
    kid: str
    sha256: str
    issued_at: str
    revoked: str | None = None  # the revocation's reason ("(erased)" once its text was erased)
    kind: str = ACCOUNT_DELETION  # or "subject_erasure": one data subject's erasure request (``certificates.subject``)
    request_id: str | None = None  # the subject request a subject_erasure certificate is for


class SavedSupplement(TypedDict):
    supplement_id: str
    certificate_id: str  # the original it supplements
    status: str
    path: str


class Archive:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, document: bytes, pdf: bytes) -> str:
        certificate_id = json.loads(document)["certificate"]["certificate_id"]
        if not isinstance(certificate_id, str):
            raise ValueError("not a certificate id or format")
        self.directory.mkdir(parents=True, exist_ok=True)
        for fmt, data in (("json", document), ("pdf", pdf)):
            path = self._path(certificate_id, fmt)
            partial = path.with_name(path.name + ".partial")
            partial.write_bytes(data)
            os.replace(partial, path)
        return certificate_id

    def save_supplement(self, document: bytes) -> SavedSupplement:
        """A signed supplement, next to its original as ``supplements/<id>.json``."""
        content = json.loads(document)["certificate"]
        directory = self.directory / "supplements"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{content['supplement_id']}.json"
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(document)
        os.replace(partial, path)
        return {"supplement_id": content["supplement_id"], "certificate_id": content["supplements"]["certificate_id"],
                "status": content["status"], "path": str(path)}

    def load(self, certificate_id: str, fmt: str) -> bytes | None:
        path = self._path(certificate_id, fmt)
        return path.read_bytes() if path.is_file() else None

    def _path(self, certificate_id: str, fmt: str) -> Path:
        if not ID_PATTERN.match(certificate_id) or fmt not in FORMATS:
            raise ValueError("not a certificate id or format")
        return self.directory / f"{certificate_id}.{fmt}"


def issued(ledger: Ledger, account_id: str | None = None) -> dict[str, Issued]:
    """Every certificate the ledger records as issued (optionally for one account), with revocations."""
    found: dict[str, Issued] = {}
    for event in ledger.events():
        p = event.payload
        if event.kind == "certificate.issued" and account_id in (None, p["account_id"]):
            found[p["certificate_id"]] = Issued(p["certificate_id"], p["account_id"], p["run_id"], p["status"],
                                                p["kid"], p["sha256"], event.occurred_at.isoformat(),
                                                kind=p.get("kind", ACCOUNT_DELETION), request_id=p.get("request_id"))
        elif event.kind == "certificate.revoked" and p["certificate_id"] in found:
            # The reason is kept outside the chain (its digest in the event); events before issue 15 carried it.
            reason = ledger.text_or(p["reason_sha256"]) if "reason_sha256" in p else p["reason"]
            found[p["certificate_id"]] = replace(found[p["certificate_id"]], revoked=reason)
    return found
