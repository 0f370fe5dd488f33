"""Supplements: what completed after a certificate was issued, signed and tied to the original.

A certificate lists what it could not yet certify as exceptions (an asynchronous subprocessor
deletion, a legal hold, residue). When the ledger later shows one of them completed, a supplement
names the original (its id and the sha256 of its signed bytes) and lists each exception as resolved,
with the ledger's evidence, or as still open. A supplement never edits the original: both stay valid
documents, and the supplement is only as strong as the evidence it names.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from retention.certificates.content import DONE, SCHEMA, subprocessor_results
from retention.certificates.signed import JsonObject, verify
from retention.ledger import Ledger
from retention.ledger.chain import iso_utc
from retention.signing_keys import KeySet


class NothingToSupplement(ValueError):
    """No exception of the certificate has completed since it was issued."""


class Resolution(TypedDict):
    """Evidence, from the ledger, that an exception of the original completed."""

    resolution: str
    evidence: str
    recorded_at: str


class KeyHeld(TypedDict):
    """Why a pending key destruction is still open: a hold came into force."""

    now: str
    recorded_at: str


class Original(TypedDict):
    certificate_id: str
    sha256: str  # of the original's signed bytes


class LedgerHead(TypedDict):
    chain_head_seq: int
    chain_head_hash: str
    hash: Literal["sha256"]


class Supplement(TypedDict):
    schema: str
    supplement_id: str
    supplements: Original
    issued_at: str
    account_id: str
    status: Literal["complete", "partial"]
    resolved: list[JsonObject]  # the original's exceptions, each with its Resolution
    still_open: list[JsonObject]
    ledger: LedgerHead


BackupKey = tuple[str | None, ...]  # ("key",) or ("copies", source)
SubprocessorLine = Mapping[str, Any]  # a line of content.subprocessor_results


def build_supplement(ledger: Ledger, original: bytes, keys: KeySet, *,
                     issued_at: datetime | None = None) -> Supplement:
    """The unsigned supplement to the signed certificate ``original``; refuses when nothing completed."""
    certificate = verify(original, keys).certificate  # never supplement a document that does not verify
    now = issued_at or datetime.now(UTC)
    latest: dict[tuple[str, str], SubprocessorLine] = {
        (s["subprocessor"], s["resource"]): s for s in subprocessor_results(ledger, certificate["account_id"])}
    backups, key_held = _backup_evidence(ledger, certificate["account_id"])
    resolved: list[JsonObject] = []
    still_open: list[JsonObject] = []
    for exception in certificate["exceptions"]:
        backup_key = _backup_key(exception)
        resolution = _resolution(exception, latest, now) or (backups.get(backup_key) if backup_key else None)
        if resolution is None and backup_key == ("key",) and key_held is not None:
            exception = {**exception, **key_held}  # still open, and why: the key is kept under a hold
        (resolved if resolution else still_open).append({**exception, **(resolution or {})})
    if not resolved:
        raise NothingToSupplement(f"nothing has completed since {certificate['certificate_id']}: "
                                  "no supplement to issue")
    seq, head = ledger.head()
    return {
        "schema": f"{SCHEMA}/supplement",
        "supplement_id": f"supp-{uuid.uuid4().hex}",
        "supplements": {"certificate_id": certificate["certificate_id"],
                        "sha256": hashlib.sha256(original).hexdigest()},
        "issued_at": iso_utc(now),
        "account_id": certificate["account_id"],
        "status": "complete" if not still_open else "partial",
        "resolved": resolved,
        "still_open": still_open,
        "ledger": {"chain_head_seq": seq, "chain_head_hash": head, "hash": "sha256"},
    }


def _resolution(exception: JsonObject, latest: Mapping[tuple[str, str], SubprocessorLine],
                now: datetime) -> Resolution | None:
    """Evidence that an exception completed, or None. A released legal hold or residue is not resolved
    by a supplement: that data is deleted by a later run, which gets its own certificate."""
    kind = exception["kind"]
    if kind.startswith("subprocessor_"):
        line = latest.get((exception["subprocessor"], exception["resource"]))
        if line and line["status"] in DONE:
            return {"resolution": line["status"], "evidence": line["verification"],
                    "recorded_at": line["recorded_at"]}
        complete_by = exception.get("complete_by")
        if kind == "subprocessor_awaiting_provider" and complete_by and datetime.fromisoformat(complete_by) <= now:
            return {"resolution": "provider completion date passed",
                    "evidence": "the provider offers no status to query; it completes deletions by this date "
                                "(see the connector spec's source)", "recorded_at": iso_utc(now)}
    return None


def _backup_key(exception: JsonObject) -> BackupKey | None:
    # A held key or snapshot is resolved too once the hold was released and the key destroyed or the
    # snapshots gone: the evidence is the same ledger event.
    return {"backup_key_pending": ("key",), "backup_key_held": ("key",),
            "backup_copies_expiring": ("copies", exception.get("source")),
            "backup_snapshots_held": ("copies", exception.get("source"))}.get(exception["kind"])


def _backup_evidence(ledger: Ledger, account_id: str) -> tuple[dict[BackupKey, Resolution], KeyHeld | None]:
    """A destroyed key or expired snapshots of the account, as the daily backup_expiry run recorded them; and
    why the key is still kept, when a hold came into force after it was scheduled."""
    found: dict[BackupKey, Resolution] = {}
    key_held: KeyHeld | None = None
    for e in ledger.events():
        if e.payload.get("account_id") != account_id:
            continue
        if e.kind == "backup.key_destroyed":
            copies = e.payload.get("copies", 0)
            found[("key",)] = {"resolution": f"key destroyed: cryptographic erase (NIST 800-88 purge) of {copies} "
                                             "per-account copy(ies)" if copies else "key destroyed",
                               "evidence": f"destroyed at {e.payload['destroyed_at']}",
                               "recorded_at": iso_utc(e.occurred_at)}
        elif e.kind == "backup.key_deletion_held":  # a hold came into force: the key is kept, not destroyed
            key_held = {"now": f"kept under legal hold(s) {', '.join(e.payload['holds'])}",
                        "recorded_at": iso_utc(e.occurred_at)}
        elif e.kind == "backup.key_deletion_scheduled":  # scheduled again after a release: no longer held
            key_held = None
        elif e.kind == "backup.copies_expired":
            found[("copies", e.payload["source"])] = {
                "resolution": "snapshots expired", "recorded_at": iso_utc(e.occurred_at),
                "evidence": f"none of the {e.payload['snapshots']} recorded snapshots exists any more"}
    return found, key_held
