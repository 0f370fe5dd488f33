"""What a deletion certificate says, built from the ledger alone: nothing typed by hand.

A certificate covers one account in one finished run (a sweep now; the termination offboarding run
when that exists) and the subprocessor results recorded for the account. It never overclaims
(DESIGN invariant 4): a location counts as erased only if the verifier re-queried it and found nothing
left; anything else (a legal hold, residue, an Object Lock, a subprocessor that completes later) is
listed under ``exceptions`` and makes the certificate ``partial``.

Per location it names the NIST SP 800-88 Rev. 1 sanitization category in the standard's own terms, for
what was done there: a logical deletion through a database's or an object store's interface (SQL DELETE,
S3 DeleteObjects of every version and delete marker) is at most *clear*, never *purge*, and the line says
what happens physically: deleted row versions stay in the table's files until VACUUM (run after
verification, recorded as ``storage.vacuumed``) marks their space reusable; object storage is reclaimed by
the provider under its own media-sanitization commitment, which is the provider's statement, not ours.
*Purge* is named only for cryptographic erase, and only for the backup copies encrypted under a destroyed
key (the termination section's backups).

Only ids, names of data classes and locations, counts, times and hashes: no personal data.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from retention.certificates.termination import termination_section
from retention.ledger import Event, Ledger
from retention.ledger.chain import iso_utc
from retention.rules.inventory import LocationSpec
from retention.stores.kinds import UNKNOWN, NistStatement, VacuumNote, kind_of

SCHEMA = "https://retention.example/schemas/deletion-certificate/v1"
DONE = ("verified", "attested")  # subprocessor statuses a certificate may state as done
DEFAULT_LEGAL_BASIS = ("dpa7b", "scc2010", "scc2021")
LEGAL_BASES = {
    "scc2010": "SCC 2010/87/EU Clause 12",
    "scc2021": "SCC 2021/914 Clause 8.5 and Clause 16(d)",
    "dpa7b": "DPA 7(b)",
}


def product_version() -> str:
    try:
        return version("retention-orchestrator")
    except PackageNotFoundError:
        return "unknown"


def build(ledger: Ledger, run_id: str, account_id: str, *, exporter: str, importer: str,
          locations: Mapping[str, LocationSpec], legal_basis: tuple[str, ...] = DEFAULT_LEGAL_BASIS,
          issued_at: datetime | None = None) -> dict[str, Any]:
    """The certificate's content (unsigned) for ``account_id`` in run ``run_id``.

    ``locations``: the inventory's locations by id (a line names its store kind and that kind's NIST statement).
    """
    run = ledger.get_run(run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r} in the ledger")
    if run.dry_run or run.finished_at is None:
        raise ValueError(f"run {run_id} is {'a dry run' if run.dry_run else 'not finished'}: "
                         "a certificate is only issued for a finished run that deleted")
    unknown = sorted(set(legal_basis) - set(LEGAL_BASES))
    if unknown:
        raise ValueError(f"unknown legal basis {', '.join(unknown)} (known: {', '.join(LEGAL_BASES)})")
    tasks = [t for t in ledger.tasks(run_id) if t.account_id == account_id]
    if not tasks:
        raise LookupError(f"run {run_id} planned nothing for account {account_id!r}")
    times: dict[str, dict[str, Any]] = {}
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    vacuumed: dict[str, VacuumNote] = {}
    for event in ledger.events():  # one pass over the ledger for all three
        note_task_time(times, event, run_id)
        _note_subprocessor(latest, event, account_id, ledger.text_or)
        note_vacuum(vacuumed, event, run_id)
    lines, exceptions = [], []
    for task in tasks:
        line, found = _location(task, locations.get(task.location), times.get(task.id), vacuumed.get(task.location))
        lines.append(line)
        exceptions += found
    subprocessors = _in_order(latest)
    exceptions += [subprocessor_exception(s) for s in subprocessors if s["status"] not in DONE]
    exceptions += [{"kind": "legal_hold", "hold_id": h.id, "data_class": h.data_class or "all",
                    "reference": h.reference, "placed_at": iso_utc(h.placed_at)}
                   for h in ledger.list_holds() if h.account_id in (None, account_id)]  # in force now
    termination = None
    if run.kind == "offboarding":
        termination, found = termination_section(ledger, run_id, account_id)
        exceptions += found
    seq, head = ledger.head()
    return {
        "schema": SCHEMA,
        "certificate_id": f"cert-{uuid.uuid4().hex}",
        "issued_at": iso_utc(issued_at or datetime.now(UTC)),
        "legal_basis": [LEGAL_BASES[b] for b in legal_basis],
        "data_exporter": exporter,
        "data_importer": importer,
        "account_id": account_id,
        "status": "complete" if not exceptions else "partial",
        "scope": {"data_classes": sorted({t.data_class for t in tasks}),
                  "locations": len(lines), "subprocessors": sorted({s["subprocessor"] for s in subprocessors})},
        "run": {"run_id": run.id, "kind": run.kind, "as_of": iso_utc(run.as_of), "started_at": iso_utc(run.started_at),
                "finished_at": iso_utc(run.finished_at), "status": run.status, "rules_digest": run.rules_digest,
                "tool": {"product": "retention-orchestrator", "version": product_version(),
                         "dag_id": run.dag_id, "airflow_run_id": run.airflow_run_id}},
        "registry": registry_state(ledger, run_id, account_id),
        "termination": termination,
        "locations": lines,
        "subprocessors": subprocessors,
        "exceptions": exceptions,
        "ledger": {"chain_head_seq": seq, "chain_head_hash": head, "hash": "sha256"},
    }


def registry_state(ledger: Ledger, run_id: str, account_id: str) -> dict[str, Any] | None:
    """Which account registry the run acted on, from its ``registry.snapshot``: source, accounts, digest; for an
    offboarding, the digest of this account's own entry. A data subject request's run read its account's entry
    alone (the snapshot's ``scope``): then the source and that entry's digest, and ``"scope": "account entry"``
    instead of a count and digest that would read as the whole registry's. None for a run recorded before
    registries were snapshot."""
    snapshots = ledger.run_events(run_id, "registry.snapshot")
    if not snapshots:
        return None
    p = snapshots[-1].payload
    state = ({"source": p["source"], "scope": "account entry"} if p.get("scope") is not None
             else {"source": p["source"], "accounts": p["accounts"], "sha256": p["sha256"]})
    entry = p.get("account")
    if entry is not None and entry["account_id"] == account_id:
        state["account_entry_sha256"] = entry["sha256"]
    return state


def _location(task: Any, spec: LocationSpec | None, times: dict[str, Any] | None,
              vacuum: VacuumNote | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A location's line, and its exceptions (not verified, or records retained)."""
    kind = spec.kind if spec is not None else "unknown"  # a location no longer in the inventory
    verified = task.status == "verified"
    line = {
        "location": task.location, "store": kind, "data_class": task.data_class, "rule_id": task.rule_id,
        "action": task.action, "cutoff": iso_utc(task.cutoff) if task.cutoff else None,
        "nist_800_88": nist_statement(task.action, spec, vacuum),
        "records_affected": task.affected_count,
        "started_at": (times or {}).get("first"), "finished_at": (times or {}).get("last"),
        "verification": {"method": "re-query of the location after deletion",
                         "remaining": task.residue, "result": "verified" if verified else task.status},
    }
    exceptions = []
    if task.status == "skipped":
        kept = "none: kept, not deleted" if task.action == "keep" else "none: nothing was due"
        line["verification"] = {"method": kept, "remaining": None, "result": "skipped"}
        line["skip_reason"] = task.skip_reason
    elif not verified:
        exceptions.append({"kind": task.status, "location": task.location, "data_class": task.data_class,
                           "remaining": task.residue})
    for retained in task.retained or []:
        exceptions.append({"kind": "retained", "location": task.location, "data_class": task.data_class, **retained})
    return line, exceptions


def nist_statement(action: str, spec: LocationSpec | None, vacuum: VacuumNote | None = None) -> NistStatement:
    """A certificate line's NIST SP 800-88 Rev. 1 statement for what ``action`` did at location ``spec``.

    In the standard's own terms: a deletion through the product's interface is at most *clear*, and what it was at
    a location is its store kind's statement (``retention.stores.kinds``), told about the run's VACUUM there
    (``vacuum``, from ``note_vacuum``). Kept and isolated records are stated as not sanitized; a location no longer
    in the inventory (``spec`` None) gets the unknown statement."""
    if action == "keep":
        return {"category": "none (kept)", "method": "not deleted; skip_reason says why"}
    if action == "isolate":
        return {"category": "none (kept under law)",
                "method": "moved to an isolated table; deleted when the law allows"}
    if spec is None:
        return UNKNOWN
    return kind_of(spec).sanitization(action, spec, vacuum)


def note_vacuum(vacuumed: dict[str, VacuumNote], event: Event, run_id: str) -> None:
    """Fold one ledger event into ``vacuumed`` (location id -> VacuumNote): a ``storage.vacuumed`` or
    ``storage.vacuum_failed`` event of run ``run_id`` notes, for each location it names, whether VACUUM ran, its
    command, tables and time; a later event for a location replaces an earlier one. Other events are ignored,
    so a caller may feed it every event it reads."""
    if event.run_id != run_id or event.kind not in ("storage.vacuumed", "storage.vacuum_failed"):
        return
    p = event.payload
    for location in p["locations"]:
        vacuumed[location] = {"status": "vacuumed" if event.kind == "storage.vacuumed" else "failed",
                              "command": p.get("command", "VACUUM"),
                              "tables": p.get("by_location", {}).get(location, p["tables"]),
                              "at": iso_utc(event.occurred_at)}


def note_task_time(times: dict[str, dict[str, Any]], event: Event, run_id: str) -> None:
    """Fold one ledger event into ``times`` (task id -> {"first", "last"}, ISO UTC): a batch intent, outcome or
    recovery, or a ``task.done``, of run ``run_id`` sets its task's ``first`` time when none is noted yet and its
    ``last`` time always, so events fed in ledger order give each task's first and last step. Other events are
    ignored."""
    if event.run_id != run_id or event.task_id is None:
        return
    if event.kind in ("batch.intent", "batch.outcome", "batch.recovered", "task.done"):
        at = iso_utc(event.occurred_at)
        times.setdefault(event.task_id, {"first": at, "last": at})["last"] = at


def subprocessor_results(ledger: Ledger, account_id: str) -> list[dict[str, Any]]:
    """The latest recorded result per subprocessor resource, and attestations of manual ones."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for event in ledger.events():
        _note_subprocessor(latest, event, account_id, ledger.text_or)
    return _in_order(latest)


def _note_subprocessor(latest: dict[tuple[str, str], dict[str, Any]], event: Any, account_id: str,
                       kept_text: Callable[[str | None], str | None]) -> None:
    p = event.payload
    if p.get("account_id") != account_id:
        return
    if event.kind == "subprocessor.result":
        latest[(p["subprocessor"], p["resource"])] = {
            "subprocessor": p["subprocessor"], "resource": p["resource"], "data_class": p.get("data_class"),
            "recorded_at": iso_utc(event.occurred_at), "deleted": p.get("deleted", 0),
            "already_gone": p.get("already_gone", 0), "status": p.get("status"),
            "verification": p.get("verification"), "complete_by": p.get("complete_by"),
            "residual_copies_until": p.get("residual_copies_until"),
            # Resting on a provider fact its docs do not state: "assumed", never stated as done.
            **({"assumptions": list(p.get("assumptions") or [])} if p.get("assumed") else {}),
            **({"holds": list(p["holds"])} if p.get("holds") else {})}  # stopped by a hold: which ones
    elif event.kind == "subprocessor.manual_requested":  # a person must file it: stated as requested, not done
        latest[(p["subprocessor"], "manual")] = {
            "subprocessor": p["subprocessor"], "resource": "manual request", "data_class": p.get("data_class"),
            "recorded_at": iso_utc(event.occurred_at), "deleted": None, "status": "requested",
            "verification": "none yet: waiting for the provider's confirmation", "complete_by": p.get("deadline")}
    elif event.kind == "subprocessor.attested":
        # The ticket is kept outside the chain (its digest in the event); events before issue 15 carried it.
        ticket = (kept_text(p["ticket_reference_sha256"]) if "ticket_reference_sha256" in p
                  else p.get("ticket_reference"))
        latest[(p["subprocessor"], "manual")] = {
            "subprocessor": p["subprocessor"], "resource": "manual request", "recorded_at": iso_utc(event.occurred_at),
            "status": "attested", "verification": f"provider confirmation dated {p.get('confirmed_on')}, "
                                                  f"ticket {ticket}",
            "evidence_sha256": p.get("evidence_sha256") or None}
    elif event.kind == "subprocessor.held":  # the engine did not erase it: a legal hold is in force
        manual = p["resource"] in ("manual_request", "manual")  # a held manual request: the same line as a filed one
        latest[(p["subprocessor"], "manual" if manual else p["resource"])] = {
            "subprocessor": p["subprocessor"], "resource": "manual request" if manual else p["resource"],
            "data_class": p.get("data_class"),
            "recorded_at": iso_utc(event.occurred_at), "deleted": 0, "status": "held", "holds": list(p["holds"]),
            "verification": "not erased: kept under legal hold " + ", ".join(p["holds"])}


def subprocessor_exception(line: dict[str, Any]) -> dict[str, Any]:
    """The exception a subprocessor line that is not done makes: the same list states both, so they agree."""
    exception = {"kind": f"subprocessor_{line['status']}", "subprocessor": line["subprocessor"],
                 "resource": line["resource"], "complete_by": line.get("complete_by")}
    if line.get("holds"):
        exception["holds"] = line["holds"]
    if line.get("assumptions"):
        exception["assumptions"] = line["assumptions"]
    return exception


def _in_order(latest: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(latest.values(), key=lambda line: (line["subprocessor"], line["resource"]))
