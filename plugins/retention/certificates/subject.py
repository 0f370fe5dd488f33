"""The certificate of a data subject erasure, built from the ledger alone: the request's events and its run's.

It says, for one erasure request of one account: the request (its type, regime, legal deadline, the digest of the
customer's reference, the identifiers as keyed hashes, never a value), the expansion (counts per kind, and whether
it was bounded), per location what matched, what was deleted or anonymized and how that was verified, what was
kept and under which legal basis, the NIST SP 800-88 statement of each location's store kind (as the account
certificate states it), and what each subprocessor did for this request (the ``subject.subprocessor`` events of
its run, never the account-wide ones). It never overclaims: a held or unverified task, a subprocessor a person
must still handle (``manual``), one held, incomplete or not run, is an exception, and any exception makes it
``partial``. Records kept under law are listed with their basis and do not: the law excludes them from erasure
(GDPR Art. 17(3)). Neither do the places the request could not search for one person (an inventory location that
declares none of the request's identifier kinds, a provider that cannot be searched by them): they are listed
as such, never as erased.

A request that matched nothing anywhere gets a certificate too: every location and subprocessor checked, each
with 0, and status ``complete`` (unless a manual subprocessor could not be searched).

Supplements: a subprocessor pending at issue whose ``subject.subprocessor`` event for the request later says it
is done (a held request run again once its hold ended, say, erased there) is resolved by
``build_subject_supplement``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retention.certificates.content import nist_statement, note_task_time, note_vacuum, product_version, registry_state
from retention.certificates.signed import JsonObject, sign, verify
from retention.certificates.supplement import NothingToSupplement, Supplement
from retention.ledger import Event, Ledger
from retention.ledger.chain import iso_utc
from retention.ledger.models import PlannedTask, SubjectRequestRow
from retention.rules.inventory import LocationSpec, load_inventory
from retention.rules.loader import load_ruleset
from retention.signing_keys import KeySet, SigningKey
from retention.stores.kinds import VacuumNote

SCHEMA = "https://retention.example/schemas/subject-erasure-certificate/v1"
KIND = "subject_erasure"  # the certificate kind ``certificate.issued`` and ``archive.issued`` name
LEGAL_BASES = {
    "gdpr": ("DPA 5(a)", "GDPR Art. 17 (right to erasure), Art. 28(3)(e)"),
    "ccpa": ("DPA 5(a)", "CCPA, Cal. Civ. Code § 1798.105 (right to delete)"),
    "fadp": ("DPA 5(a)", "Swiss FADP (revised, 2023): erasure of personal data"),
}
# The request's own events, read by request id: ``subject.filed`` comes before any run, and ``subject.expanded`` of a
# request run again names the run before. What its subprocessors did is read from the run (SUBPROCESSOR_EVENT).
SUBJECT_EVENTS = ("subject.filed", "subject.expanded", "subject.previewed", "subject.approved", "subject.nothing_found")
SUBPROCESSOR_EVENT = "subject.subprocessor"
# Steps not reached yet: nothing has been searched, or a person has still to decide; a rejected one erased nothing.
NOT_CERTIFIABLE = ("filed", "expanded", "awaiting_approval", "rejected")
HOLD_SKIP = "legal hold"  # how the request's plan words a task skipped because a hold is in force (requests.plan)
SUBPROCESSOR_DONE = ("erased", "nothing_found")  # outcomes a certificate may state as done
# Stated as they are, never as erased, and not pending: nothing can be done there for one person. not_applicable:
# the spec holds no personal data of people; unsupported: the provider cannot be searched by the request's kinds.
SUBPROCESSOR_NOT_SEARCHABLE = ("not_applicable", "unsupported")
TASK_EVENTS = ("batch.intent", "batch.outcome", "batch.recovered", "task.done", "task.held",
               "storage.vacuumed", "storage.vacuum_failed")


def issue_subject_certificate(ledger: Ledger, request_id: str, key: SigningKey, *, exporter: str, importer: str,
                              rules_dir: Path, actor: str) -> bytes:
    """Build, sign and record the certificate of erasure request ``request_id``; returns the signed JSON.

    Recorded as ``certificate.issued`` (kind ``subject_erasure``, so ``archive.issued`` lists it with the account's
    other certificates) and ``subject.certified``, in one transaction."""
    inventory = load_inventory(rules_dir / "systems.yaml", load_ruleset(rules_dir)).locations
    content = build_subject(ledger, request_id, exporter=exporter, importer=importer, locations=inventory)
    document = sign(content, key)
    run_id = content["run"]["run_id"]
    with ledger.session() as s:
        ledger.append("certificate.issued", {
            "certificate_id": content["certificate_id"], "account_id": content["account_id"], "run_id": run_id,
            "status": content["status"], "kid": key.kid, "sha256": hashlib.sha256(document).hexdigest(),
            "kind": KIND, "request_id": request_id}, actor=actor, run_id=run_id, session=s)
        ledger.append("subject.certified", {"request_id": request_id, "certificate_id": content["certificate_id"],
                                            "status": content["status"]}, actor=actor, run_id=run_id, session=s)
    # Pin the chain, these events included, outside the ledger database; a failure is logged, never raised.
    from retention.ledger.checkpoints import publish_after_certificate  # here: it imports the certificates package

    publish_after_certificate(ledger, content["certificate_id"])
    return document


def build_subject(ledger: Ledger, request_id: str, *, exporter: str, importer: str,
                  locations: Mapping[str, LocationSpec], issued_at: datetime | None = None) -> JsonObject:
    """The certificate's content (unsigned) for erasure request ``request_id``.

    ``locations``: the inventory's locations by id (a line names its store kind and that kind's NIST statement).
    """
    request = ledger.subject_request(request_id)
    if request.request_type != "erasure":
        raise ValueError(f"subject request {request_id} is an {request.request_type} request: an erasure "
                         "certificate is only issued for an erasure")
    if request.status in NOT_CERTIFIABLE or request.run_id is None:
        raise ValueError(f"subject request {request_id} is {request.status}: a certificate is only issued once it "
                         "was searched and, if it needed one, approved")
    run = ledger.get_run(request.run_id)
    if run is None or run.dry_run:
        raise ValueError(f"subject request {request_id}: its run {request.run_id} is not a run that acted")
    events = _of_request(ledger.events_of_kind(*SUBJECT_EVENTS), request_id)
    if "subject.previewed" not in events:
        raise ValueError(f"subject request {request_id} was never previewed: nothing was searched")
    tasks = [t for t in ledger.tasks(run.id) if t.subject_request_id == request_id]
    times, held, vacuumed = _run_notes(ledger.run_events(run.id, *TASK_EVENTS), run.id)
    previewed = events["subject.previewed"][-1].payload
    lines, kept, exceptions = _locations(previewed.get("locations", []), tasks, locations, times, held, vacuumed)
    subprocessors = _subprocessors(previewed.get("subprocessors", []), ledger.run_answers(request_id, run.id))
    exceptions += [_subprocessor_exception(s) for s in subprocessors
                   if s["outcome"] not in SUBPROCESSOR_DONE + SUBPROCESSOR_NOT_SEARCHABLE]
    seq, head = ledger.head()
    return {
        "schema": SCHEMA,
        "kind": KIND,
        "certificate_id": f"cert-{uuid.uuid4().hex}",
        "issued_at": iso_utc(issued_at or datetime.now(UTC)),
        "legal_basis": list(LEGAL_BASES[request.regime]),
        "data_exporter": exporter,
        "data_importer": importer,
        "account_id": request.account_id,
        "status": "complete" if not exceptions else "partial",
        "request": _request(request, events),
        "expansion": _expansion(events.get("subject.expanded")),
        "scope": {"locations_checked": len(lines), "data_classes": sorted({line["data_class"] for line in lines}),
                  "subprocessors_checked": [s["subprocessor"] for s in subprocessors],
                  "records_found": sum(line["found"] or 0 for line in lines),
                  "nothing_found": "subject.nothing_found" in events or _nothing_found(lines, subprocessors)},
        "run": {"run_id": run.id, "kind": run.kind, "as_of": iso_utc(run.as_of), "started_at": iso_utc(run.started_at),
                "finished_at": iso_utc(run.finished_at) if run.finished_at else None, "status": run.status,
                "rules_digest": run.rules_digest,
                "tool": {"product": "retention-orchestrator", "version": product_version(),
                         "dag_id": run.dag_id, "airflow_run_id": run.airflow_run_id}},
        "registry": registry_state(ledger, run.id, request.account_id),
        "locations": lines,
        "not_searchable": _not_searchable(locations, {line["location"] for line in lines}),
        "kept_under_law": kept,
        "subprocessors": subprocessors,
        "exceptions": exceptions,
        "ledger": {"chain_head_seq": seq, "chain_head_hash": head, "hash": "sha256"},
    }


def _nothing_found(lines: Iterable[JsonObject], subprocessors: Iterable[JsonObject]) -> bool:
    return not any(line["found"] for line in lines) and not any(s["matched"] for s in subprocessors)


def _of_request(events: Iterable[Event], request_id: str) -> dict[str, list[Event]]:
    """The request's own events by kind, in ledger order."""
    found: dict[str, list[Event]] = {}
    for event in events:
        if event.payload.get("request_id") == request_id:
            found.setdefault(event.kind, []).append(event)
    return found


def _request(row: SubjectRequestRow, events: Mapping[str, list[Event]]) -> JsonObject:
    """The request as filed (from ``subject.filed``: hashes and digests only) and who approved it."""
    filed = events["subject.filed"][0]
    p = filed.payload
    approved = events.get("subject.approved", [])
    approval = approved[-1] if approved else None
    return {"request_id": row.id, "type": p["request_type"], "regime": p["regime"],
            "received_at": p["received_at"], "deadline_at": p["deadline_at"],
            "filed_at": iso_utc(filed.occurred_at), "filed_by": filed.actor,
            "reference_sha256": p["reference_sha256"], "identifier_hashes": list(p["identifier_hashes"]),
            "approval": None if approval is None else {
                "required": bool(approval.payload.get("required")), "threshold": approval.payload.get("threshold"),
                "total": approval.payload.get("total"), "by": approval.actor, "at": iso_utc(approval.occurred_at)}}


def _expansion(expanded: list[Event] | None) -> JsonObject | None:
    """The identity expansion's counts and the keyed hashes of what it added; None when none was recorded."""
    if not expanded:
        return None
    p = expanded[-1].payload
    return {"given": p.get("given"), "expanded": p.get("expanded"), "by_kind": dict(p.get("by_kind") or {}),
            "added_hashes": list(p.get("added_hashes") or []), "rounds": p.get("rounds"),
            "bounded": bool(p.get("bounded"))}


def _run_notes(events: Iterable[Event], run_id: str) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]],
                                                             dict[str, VacuumNote]]:
    """From the run's own events: each task's first and last batch time, the holds that stopped a task, and
    the run's VACUUM per location."""
    times: dict[str, dict[str, Any]] = {}
    held: dict[str, list[str]] = {}
    vacuumed: dict[str, VacuumNote] = {}
    for event in events:
        note_task_time(times, event, run_id)
        note_vacuum(vacuumed, event, run_id)
        if event.kind == "task.held" and event.task_id is not None:
            held[event.task_id] = list(event.payload.get("holds", []))
    return times, held, vacuumed


def _locations(previewed: Iterable[Mapping[str, Any]], tasks: Iterable[PlannedTask],
               specs: Mapping[str, LocationSpec], times: Mapping[str, dict[str, Any]],
               held: Mapping[str, list[str]], vacuumed: Mapping[str, VacuumNote]
               ) -> tuple[list[JsonObject], list[JsonObject], list[JsonObject]]:
    """(a line per location checked, the records kept under law, the exceptions) from the preview and the tasks."""
    matched = {(p["location"], p["data_class"]): p for p in previewed}
    by_line = {(t.location, t.data_class): t for t in tasks}
    lines, kept, exceptions = [], [], []
    for key in sorted(set(matched) | set(by_line)):
        preview, task = matched.get(key), by_line.get(key)
        spec = specs.get(key[0])
        found = preview.get("matched") if preview is not None else task.total_count if task is not None else None
        line: JsonObject = {"location": key[0], "store": spec.kind if spec is not None else "unknown",
                            "data_class": key[1], "found": found}
        if task is None:
            line.update(_untouched(preview or {}, found))
            if found:  # matched, yet nothing was planned: nothing can be stated as erased there
                exceptions.append({"kind": "not_planned", "location": key[0], "data_class": key[1], "found": found})
        else:
            line.update(_acted(task, preview or {}, spec, times.get(task.id), vacuumed.get(task.location)))
            if line["action"] == "keep" and not _hold_skip(task):
                kept.append({"location": key[0], "data_class": key[1], "rule_id": task.rule_id, "records": found,
                             "basis": line["basis"]})
            exceptions += _task_exceptions(task, held.get(task.id, []))
        lines.append(line)
    return lines, kept, exceptions


def _not_searchable(specs: Mapping[str, LocationSpec], searched: set[str]) -> list[JsonObject]:
    """The inventory's locations the request could not search: none of their declared identifier kinds (often
    none at all) is one of the request's. Their data follows the account's rules; nothing is stated about it."""
    return [{"location": location, "store": spec.kind, "data_class": spec.data_class,
             "identifier_kinds": sorted(spec.subject_kinds())}
            for location, spec in sorted(specs.items()) if location not in searched]


def _untouched(preview: Mapping[str, Any], found: int | None) -> JsonObject:
    """A location searched where nothing of the person was planned (nothing matched)."""
    return {"rule_id": preview.get("rule_id"), "action": "none", "records_affected": 0,
            "nist_800_88": {"category": "none (nothing found)", "method": "searched by the request's identifiers"},
            "started_at": None, "finished_at": None,
            "verification": {"method": "search by the request's identifiers", "remaining": found or 0,
                             "result": "nothing_found" if not found else "not_planned"}}


def _acted(task: PlannedTask, preview: Mapping[str, Any], spec: LocationSpec | None, times: dict[str, Any] | None,
           vacuum: VacuumNote | None) -> JsonObject:
    """A location with a task: what was done there, and how it was verified."""
    skipped = task.status == "skipped"
    action = "keep" if skipped else task.action
    line: JsonObject = {
        "rule_id": task.rule_id, "action": action, "records_affected": task.affected_count,
        "nist_800_88": nist_statement("keep" if skipped else task.action, spec, vacuum),
        "started_at": (times or {}).get("first"), "finished_at": (times or {}).get("last"),
        "verification": {"method": "re-query of the location by the request's identifiers after erasure",
                         "remaining": task.residue, "result": task.status}}
    if skipped:
        line["verification"] = {"method": "none: kept, not erased", "remaining": None, "result": "skipped"}
        line["basis"] = preview.get("basis") or task.skip_reason
        line["skip_reason"] = task.skip_reason
    return line


def _hold_skip(task: PlannedTask) -> bool:
    return task.status == "skipped" and (task.skip_reason or "").startswith(HOLD_SKIP)


def _task_exceptions(task: PlannedTask, holds: list[str]) -> list[JsonObject]:
    """A task not verified clean (held, residue, unfinished) or skipped for a hold; and records its verification
    found kept (Object Lock, a newer record)."""
    where = {"location": task.location, "data_class": task.data_class}
    exceptions: list[JsonObject] = []
    if _hold_skip(task):
        exceptions.append({"kind": "legal_hold", **where, "reason": task.skip_reason})
    elif task.status == "held":
        exceptions.append({"kind": "held", **where, "holds": holds, "erased_before_hold": task.affected_count})
    elif task.status not in ("verified", "skipped"):
        exceptions.append({"kind": task.status, **where, "remaining": task.residue})
    exceptions += [{"kind": "retained", **where, **retained} for retained in task.retained or []]
    return exceptions


def _subprocessors(previewed: Iterable[Mapping[str, Any]], results: Iterable[Event]) -> list[JsonObject]:
    """A line per subprocessor checked: what the preview found, and the request's latest result there."""
    latest = {e.payload["subprocessor"]: e for e in results}
    lines = {p["subprocessor"]: {"subprocessor": p["subprocessor"], "scope": p.get("scope"),
                                 "matched": p.get("matched")} for p in previewed}
    for name in sorted(set(lines) | set(latest)):
        line = lines.setdefault(name, {"subprocessor": name, "scope": None, "matched": None})
        event = latest.get(name)
        if event is not None:
            p = event.payload
            line.update({"outcome": p["outcome"], "count": p.get("count"), "recorded_at": iso_utc(event.occurred_at),
                         **{k: p[k] for k in ("job", "resources", "unsupported") if p.get(k)}})
        else:
            line.update({"outcome": _without_result(line), "count": 0 if line["matched"] == 0 else None,
                         "recorded_at": None})
    return [lines[name] for name in sorted(lines)]


def _without_result(line: Mapping[str, Any]) -> str:
    """A subprocessor the request recorded no result for: holds none of the person's data by its spec (scope
    none), or its search found nothing; else a person must still handle it (manual) or it was not run."""
    if line["scope"] == "none":
        return "not_applicable"
    if line["scope"] == "api" and line["matched"] == 0:
        return "nothing_found"
    return "manual" if line["scope"] == "manual" else "not_run"


def _subprocessor_exception(line: Mapping[str, Any]) -> JsonObject:
    return {"kind": f"subprocessor_{line['outcome']}", "subprocessor": line["subprocessor"], "scope": line["scope"],
            "matched": line["matched"]}


# -- supplements ------------------------------------------------------------------------------------------------

def build_subject_supplement(ledger: Ledger, original: bytes, keys: KeySet, *,
                             issued_at: datetime | None = None) -> Supplement:
    """The unsigned supplement to subject certificate ``original``: each pending subprocessor whose latest
    ``subject.subprocessor`` event for the request now says it is done is resolved; refuses when none is."""
    certificate = verify(original, keys).certificate  # never supplement a document that does not verify
    request_id = certificate["request"]["request_id"]
    latest = {e.payload["subprocessor"]: e for e in _answers_since(ledger, request_id, certificate["run"]["run_id"])}
    resolved: list[JsonObject] = []
    still_open: list[JsonObject] = []
    for exception in certificate["exceptions"]:
        event = latest.get(exception.get("subprocessor", "")) if exception["kind"].startswith("subprocessor_") \
            else None
        if event is not None and event.payload["outcome"] in SUBPROCESSOR_DONE:  # a later run answered done
            resolved.append({**exception, "resolution": event.payload["outcome"],
                             "evidence": f"subject.subprocessor event {event.seq}: {event.payload['outcome']}, "
                                         f"count {event.payload.get('count')}, recorded by {event.actor}",
                             "recorded_at": iso_utc(event.occurred_at)})
        else:
            still_open.append(exception)
    if not resolved:
        raise NothingToSupplement(f"nothing has completed since {certificate['certificate_id']}: "
                                  "no supplement to issue")
    seq, head = ledger.head()
    return {"schema": f"{SCHEMA}/supplement", "supplement_id": f"supp-{uuid.uuid4().hex}",
            "supplements": {"certificate_id": certificate["certificate_id"],
                            "sha256": hashlib.sha256(original).hexdigest()},
            "issued_at": iso_utc(issued_at or datetime.now(UTC)), "account_id": certificate["account_id"],
            "status": "complete" if not still_open else "partial", "resolved": resolved, "still_open": still_open,
            "ledger": {"chain_head_seq": seq, "chain_head_hash": head, "hash": "sha256"}}


def _answers_since(ledger: Ledger, request_id: str, run_id: str) -> list[Event]:
    """The request's ``subject.subprocessor`` events from the preview of run ``run_id`` (the certificate's) on, in
    ledger order, of that run and of any later one.

    Not the run's events alone: a pending provider may be resolved in a later run of the same request. A request a
    hold kept in part stays open and is run again once the hold ends, with a new preview and so a new run, and its
    providers answer in that run; the certificate issued for the earlier run is supplemented by those answers.
    Nothing from before the certificate's preview: an earlier run's answer is not one to this certificate."""
    previews = ledger.run_events(run_id, "subject.previewed")
    since = previews[0].seq if previews else 0
    return ledger.request_events(request_id, SUBPROCESSOR_EVENT, after_seq=since)


def is_subject_certificate(certificate: Mapping[str, Any]) -> bool:
    return certificate.get("schema") == SCHEMA
