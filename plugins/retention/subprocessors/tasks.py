"""The subprocessor_erasure DAG's steps: plain arguments in, JSON-able values out, ledger events recorded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pendulum

from retention.failfast import input_refusals_fail_the_task
from retention.ledger import Ledger
from retention.ledger.fields import check_iso_date, check_sha256, check_staff_id, check_ticket_reference
from retention.rules.loader import load_ruleset
from retention.settings import Settings
from retention.subprocessors import Progress, SubprocessorError, call_recorder, eraser, load_specs
from retention.subprocessors.spec import ConnectorSpec

ATTEST = "Attest: the provider confirmed deletion"
NOT_CONFIRMED = "Not confirmed yet"


def specs(settings: Settings | None = None) -> dict[str, ConnectorSpec]:
    """Every spec under ``<rules>/subprocessors``, checked against the data classes, the subprocessor list
    and systems.yaml (a hosted spec's tenancy must be the one the inventory models)."""
    from retention.rules.inventory import load_inventory

    settings = settings or Settings.from_env()
    ruleset = load_ruleset(settings.rules_dir)
    classes = ruleset.data_classes
    return load_specs(settings.rules_dir / "subprocessors", subprocessors=set(classes.subprocessors),
                      data_classes=set(classes.data_classes),
                      inventory=load_inventory(settings.rules_dir / "systems.yaml", ruleset))


@contextmanager
def ledger() -> Iterator[Ledger]:
    with Ledger.open(Settings.from_env().database_url) as opened:
        yield opened


def begin_erasure(subprocessor: str, resource: str, account_id: str, *, actor: str) -> dict[str, Any]:
    """Find, preview and delete; the ``Progress`` as JSON (``jobs`` non-empty: async jobs to wait for)."""
    spec = specs()[subprocessor]
    with ledger() as opened, eraser(spec, resource, account_id, ledger=opened, actor=actor) as running:
        return running.begin(resource, account_id).to_json()


def resume_erasure(subprocessor: str, event: dict[str, Any], *, actor: str) -> dict[str, Any]:
    """Record the trigger's job polls, then go on from the jobs' final states (``JobTrigger``'s event)."""
    spec = specs()[subprocessor]
    state = Progress.from_json(event["progress"])
    resource, account_id = state.result.resource, state.result.account_id
    with ledger() as opened:
        record = call_recorder(spec, resource, account_id,
                               lambda kind, payload: opened.append(kind, payload, actor=actor))
        for call in event.get("calls", []):
            record(call)
        if "error" in event:
            raise SubprocessorError(event["error"])
        with eraser(spec, resource, account_id, ledger=opened, actor=actor) as running:
            return running.resume(state, event["states"]).to_json()


def open_manual_request(subprocessor: str, account_id: str, *, requested_by: str, actor: str) -> dict[str, Any]:
    """Record that a person must file the request; returns what the attestation form shows, or ``{"held":
    [hold ids]}`` when a legal hold covers the data class: then no request is opened (a person filing it
    would delete what the hold keeps), and ``subprocessor.held`` says why. ``requested_by`` is a staff id
    (``retention.ledger.fields``): it goes into the chain, so a name or an address is refused."""
    manual = specs()[subprocessor].manual_spec()
    now = datetime.now(UTC)
    deadline = manual.deadline.after(pendulum.instance(now))
    with input_refusals_fail_the_task():
        check_staff_id(requested_by, "requested_by")
    with ledger() as opened, input_refusals_fail_the_task():
        holds = opened.holds_in_force(account_id, manual.data_class)
        if holds:
            opened.append("subprocessor.held", {"subprocessor": subprocessor, "resource": "manual_request",
                                                "account_id": account_id, "data_class": manual.data_class,
                                                "holds": holds}, actor=actor)
            return {"held": holds}
        opened.append("subprocessor.manual_requested", {
            "subprocessor": subprocessor, "account_id": account_id, "data_class": manual.data_class,
            "requested_by": requested_by, "deadline": deadline.isoformat()}, actor=actor)
    return {"channel": manual.request_channel, "evidence": list(manual.evidence), "deadline": deadline.isoformat(),
            "attested_by": manual.attested_by}


def record_attestation(subprocessor: str, account_id: str, response: dict[str, Any], *,
                       actor: str) -> dict[str, Any]:
    """The human's answer, into the ledger. An attestation needs a ticket reference and the confirmation's date
    (not in the future); every field must have its shape (``retention.ledger.fields``), or the task fails at
    once, without retries, and nothing is recorded. The ticket reference is kept erasable outside the chain:
    the event carries ``ticket_reference_sha256``."""
    chosen = response.get("chosen_options") or []
    attested = chosen == [ATTEST]
    with input_refusals_fail_the_task():
        payload, ticket = _attestation(subprocessor, account_id, response, attested)
        with ledger() as opened:
            event = opened.append("subprocessor.attested" if attested else "subprocessor.attestation_declined",
                                  payload, actor=actor, texts={"ticket_reference": ticket} if ticket else None)
    if not attested:
        raise RuntimeError(f"{subprocessor}: deletion not confirmed by the provider yet; run again once it is")
    return event.payload


def _attestation(subprocessor: str, account_id: str, response: dict[str, Any],
                 attested: bool) -> tuple[dict[str, Any], str | None]:
    """The attestation event's payload and its ticket reference, each field checked; ValueError naming the
    field otherwise. A person typed these, so nothing passes on trust."""
    params = response.get("params_input") or {}
    user_id = str((response.get("responded_by_user") or {}).get("id") or "")
    ticket, confirmed_on, evidence = (str(params.get(name) or "").strip()
                                      for name in ("ticket_reference", "confirmed_on", "evidence_sha256"))
    if attested and not (ticket and confirmed_on):
        raise ValueError(f"{subprocessor}: an attestation needs ticket_reference and confirmed_on")
    if ticket:
        check_ticket_reference(ticket, "ticket_reference")
    if confirmed_on:
        check_iso_date(confirmed_on, "confirmed_on", not_after=datetime.now(UTC).date())
    if evidence:
        check_sha256(evidence.lower(), "evidence_sha256")
    if user_id:
        check_staff_id(user_id, "attested_by_user_id")
    payload = {"subprocessor": subprocessor, "account_id": account_id, "attested": attested,
               "confirmed_on": confirmed_on, "evidence_sha256": evidence.lower(), "attested_by_user_id": user_id}
    return payload, ticket or None

