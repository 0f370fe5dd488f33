"""A data subject request's steps as Airflow (``dags/subject_request.py``) and the CLI run them: plain arguments
in, JSON-able values out (ids and counts only, never an identifier). Helper B1 implements these; the signatures
are the contract the DAG (helper B2) and the customer API (helper C) build on."""

from __future__ import annotations

from typing import Any


def open_request(params: dict[str, Any], *, filed_by: str, actor: str) -> dict[str, Any]:
    """File the request the params describe (``filing.file_request``), or, with ``params["request_id"]``, take the
    request already filed (by the customer API or the CLI; it must still be ``filed``). Returns {"request_id",
    "account_id", "request_type", "deadline_at"}."""
    raise NotImplementedError


def expand(request_id: str, *, actor: str) -> dict[str, Any]:
    """Identity expansion through the inventory's linked identifiers (``SubjectFinding.linked``), bounded by
    ``MAX_EXPANDED`` and a few rounds; records ``subject.expanded``. Returns {"given", "expanded", "bounded"}."""
    raise NotImplementedError


def preview(request_id: str, *, actor: str, dag_id: str | None = None,
            airflow_run_id: str | None = None) -> dict[str, Any]:
    """Start the ledger run (kind ``subject_request``), check every lookup goes through an index, count per location
    and subprocessor, plan one task per location with matches (delete / anonymize / kept under law, holds in force
    listed), record ``subject.previewed``. Returns {"run_id", "request_id", "request_type", "total",
    "needs_approval", "nothing_found", "all": [locations with tasks to run], <kind>: [its locations] for every
    store kind, "subprocessors": [names with an API subject scope and matches], "manual": [names]}."""
    raise NotImplementedError


def approval_body(previewed: dict[str, Any]) -> str:
    """The Required Actions form's text: counts per location and subprocessor, what is kept and why, the deadline;
    no identifier."""
    raise NotImplementedError


def approve_if_small(request_id: str, *, actor: str) -> bool:
    """Record ``subject.approved`` (required False) when the preview found at most RETENTION_SUBJECT_APPROVAL_RECORDS
    and the expansion was not bounded; returns True when a second person must approve instead."""
    raise NotImplementedError


def record_decision(request_id: str, event: dict[str, Any], *, actor: str) -> None:
    """A Required Actions answer: refused (and ledgered) from the person who filed it, from nobody identified, or
    from a user without the approval permission; else ``subject.approved`` / ``subject.rejected`` (which closes the
    request and its run as rejected)."""
    raise NotImplementedError


def at_subprocessor(request_id: str, subprocessor: str, *, actor: str) -> dict[str, Any]:
    """Erase (or, for an access request, export) the person's records at one subprocessor, holds checked right
    before; records ``subject.subprocessor``."""
    raise NotImplementedError


def close(request_id: str, *, actor: str) -> dict[str, Any]:
    """Finish the run and the request: ``completed``, ``held`` (a hold stopped a task), ``nothing_found`` or
    ``failed`` (residue or an unfinished task). Returns {"request_id", "status", "run_id"}."""
    raise NotImplementedError
