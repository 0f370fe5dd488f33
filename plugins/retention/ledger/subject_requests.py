"""Data subject requests in the ledger: filing one, its status, the identifiers it acts on, and their erasure.

The identifiers are personal data. They live in ``subject_requests.identifiers`` (outside the chain) only
while the request needs them; every event carries their keyed hashes (computed by ``retention.requests``),
never a value. ``erase_request_identifiers`` blanks them; the row, its hashes and the chain stay.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from retention.ids import check_account_id
from retention.ledger.chain import iso_utc
from retention.ledger.checks import SHA256, check_kind, check_staff
from retention.ledger.clock import db_now
from retention.ledger.events import EventLog, append_event, keep
from retention.ledger.models import Event, PlannedTask, SubjectRequestRow, utc
from retention.rules.subjects import REGIMES, REQUEST_TYPES, Subject

# "held": a legal hold kept some of the person's data; the erasure is still owed once the hold ends, so the request
# stays open (its deadline alerts go on, its identifiers are kept) and is run again (retention.requests.expand).
OPEN = ("filed", "expanded", "previewed", "awaiting_approval", "running", "held")
CLOSED = ("completed", "nothing_found", "rejected", "failed")


class IdentifiersErased(LookupError):
    """The request's identifiers were erased: nothing can be looked up or acted on by them any more."""


class SubjectRequests(EventLog):
    """Filing, reading and closing data subject requests."""

    def file_subject_request(self, *, account_id: str, request_type: str, regime: str, received_at: datetime,
                             deadline_at: datetime, reference: str, subject: Subject,
                             identifier_hashes: Sequence[str], filed_by: str, recipient: str | None = None) -> str:
        """Record a new request (status ``filed``) and its ``subject.filed`` event; returns its id. ``recipient``:
        the customer's age public key an access request's package is encrypted to."""
        account_id, filed_by = check_account_id(account_id), check_staff(filed_by, "filed_by")
        if request_type not in REQUEST_TYPES:
            raise ValueError(f"request_type must be one of {', '.join(REQUEST_TYPES)}")
        if regime not in REGIMES:
            raise ValueError(f"regime must be one of {', '.join(REGIMES)}")
        hashes = _hashes(identifier_hashes)
        request_id = uuid.uuid4().hex

        def write() -> str:
            with self.session() as s:
                reference_sha256 = keep(s, reference, "subject.reference")
                row = SubjectRequestRow(
                    id=request_id, account_id=account_id, request_type=request_type, regime=regime,
                    received_at=utc(received_at), deadline_at=utc(deadline_at), reference_sha256=reference_sha256,
                    identifiers={"given": subject.as_dict()}, identifier_hashes=hashes, filed_by=filed_by,
                    filed_at=db_now(s), status="filed", recipient=recipient)
                s.add(row)
                s.flush()
                append_event(s, kind="subject.filed", actor=filed_by, payload={
                    "request_id": request_id, "account_id": account_id, "request_type": request_type,
                    "regime": regime, "received_at": iso_utc(row.received_at), "deadline_at": iso_utc(row.deadline_at),
                    "reference_sha256": reference_sha256, "identifier_hashes": hashes})
                return request_id
        return self._retrying(write, "file a subject request")

    def subject_request(self, request_id: str) -> SubjectRequestRow:
        with self._reader() as s:
            row = s.get(SubjectRequestRow, request_id)
        if row is None:
            raise LookupError(f"no subject request {request_id!r}")
        return row

    def subject_requests(self, *, account_id: str | None = None, open_only: bool = False) -> list[SubjectRequestRow]:
        """Requests, newest first (of one account, or only the open ones, if asked)."""
        query = select(SubjectRequestRow)
        if account_id is not None:
            query = query.where(SubjectRequestRow.account_id == check_account_id(account_id))
        if open_only:
            query = query.where(SubjectRequestRow.status.in_(OPEN))
        with self._reader() as s:
            return list(s.scalars(query.order_by(SubjectRequestRow.filed_at.desc())))

    def request_events(self, request_id: str, *kinds: str, after_seq: int = 0) -> list[Event]:
        """The request's events of the given kinds (their payload's ``request_id``) with seq > ``after_seq``, in
        order, whichever run each belongs to."""
        query = (select(Event).where(Event.kind.in_(kinds), Event.seq > after_seq,
                                     Event.payload["request_id"].as_string() == request_id).order_by(Event.seq))
        with self._reader() as s:
            return list(s.scalars(query))

    def run_answers(self, request_id: str, run_id: str) -> list[Event]:
        """The request's ``subject.subprocessor`` events in run ``run_id``, in order; with them, those recorded without
        a run after that run's ``subject.previewed``. Answers were recorded without their run before they carried
        one: a request under way across that upgrade has its earlier answers read where they were read then."""
        own = [e for e in self.run_events(run_id, "subject.subprocessor") if e.payload.get("request_id") == request_id]
        previews = self.run_events(run_id, "subject.previewed")
        if not previews:
            return own
        unassigned = [e for e in self.request_events(request_id, "subject.subprocessor", after_seq=previews[0].seq)
                      if e.run_id is None]
        return sorted(own + unassigned, key=lambda e: e.seq)

    def closed_with_identifiers(self, *, closed_before: datetime) -> list[str]:
        """The ids of the closed requests whose identifiers are still kept and that closed before
        ``closed_before``, oldest first: those whose appeal window has passed, for the caller's window. Kept means
        not erased yet: ``erase_request_identifiers`` sets ``identifiers_erased_at`` in the write that blanks them."""
        query = (select(SubjectRequestRow.id)
                 .where(SubjectRequestRow.status.in_(CLOSED), SubjectRequestRow.identifiers_erased_at.is_(None),
                        SubjectRequestRow.closed_at < utc(closed_before))
                 .order_by(SubjectRequestRow.closed_at, SubjectRequestRow.id))
        with self._reader() as s:
            return list(s.scalars(query))

    def request_subject(self, request_id: str, *, given_only: bool = False) -> Subject:
        """The identifiers the request acts on: as expanded once expanded (unless ``given_only``), else as given."""
        row = self.subject_request(request_id)
        if row.identifiers is None:
            raise IdentifiersErased(f"subject request {request_id}: its identifiers were erased at "
                                    f"{iso_utc(row.identifiers_erased_at) if row.identifiers_erased_at else '?'}")
        given = row.identifiers["given"]
        return Subject.of(given if given_only else row.identifiers.get("expanded", given))

    def record_expansion(self, request_id: str, expanded: Subject, payload: Mapping[str, object], *,
                         actor: str) -> None:
        """Keep the expanded identifiers beside the given ones (status ``expanded``); ``payload``: what the
        ``subject.expanded`` event says (keyed hashes and counts only)."""
        def write() -> None:
            with self.session() as s:
                row = _locked(s, request_id)
                if row.identifiers is None:
                    raise IdentifiersErased(f"subject request {request_id}: its identifiers were erased")
                # "ambiguous": the expansion met another value of a kind the customer gave (retention.requests.expand)
                row.identifiers = {**row.identifiers, "expanded": expanded.as_dict(),
                                   "ambiguous": bool(payload.get("ambiguous"))}
                row.status = "expanded"
                s.flush()
                append_event(s, kind="subject.expanded", actor=check_staff(actor, "actor"), run_id=row.run_id,
                             payload={"request_id": request_id, **payload})
        self._retrying(write, "record a subject request's expansion")

    def set_request_status(self, request_id: str, status: str, *, actor: str, run_id: str | None = None,
                           event: tuple[str, Mapping[str, object]] | None = None,
                           session: Session | None = None) -> None:
        """Move the request to ``status`` (a closed status also sets ``closed_at``), link its ledger run, and
        append ``event`` (its payload gets the request id) in the same transaction."""
        if status not in OPEN + CLOSED:
            raise ValueError(f"unknown subject request status {status!r}")
        actor = check_staff(actor, "actor")

        def write(s: Session) -> None:
            row = _locked(s, request_id)
            if row.status in CLOSED:
                raise ValueError(f"subject request {request_id} is closed ({row.status})")
            row.status = status
            if run_id is not None:
                row.run_id = run_id
            if status in CLOSED:
                row.closed_at = db_now(s)
            s.flush()
            if event is not None:
                kind, payload = event
                append_event(s, kind=check_kind(kind), actor=actor, run_id=row.run_id,
                             payload={"request_id": request_id, **payload})
        if session is not None:
            write(session)
            return

        def own() -> None:
            with self.session() as s:
                write(s)
        self._retrying(own, "update a subject request")

    def erase_request_identifiers(self, request_id: str, *, actor: str) -> None:
        """Blank a closed request's identifiers (``subject.identifiers_erased``); its hashes and the chain stay."""
        actor = check_staff(actor, "actor")

        def write() -> None:
            with self.session() as s:
                row = _locked(s, request_id)
                if row.status not in CLOSED:
                    raise ValueError(f"subject request {request_id} is still open ({row.status}): its identifiers "
                                     "are needed")
                if row.identifiers is None:
                    return
                row.identifiers, row.identifiers_erased_at = None, db_now(s)
                # A held or interrupted task keeps its cursor, and an S3 cursor is a key, which can name a visitor id.
                s.execute(update(PlannedTask).where(PlannedTask.subject_request_id == request_id)
                          .values(checkpoint=None))
                s.flush()
                append_event(s, kind="subject.identifiers_erased", actor=actor, run_id=row.run_id,
                             payload={"request_id": request_id, "account_id": row.account_id})
        self._retrying(write, "erase a subject request's identifiers")


def _locked(s: Session, request_id: str) -> SubjectRequestRow:
    row = s.scalars(select(SubjectRequestRow).where(SubjectRequestRow.id == request_id).with_for_update()).one_or_none()
    if row is None:
        raise LookupError(f"no subject request {request_id!r}")
    return row


def _hashes(values: Sequence[str]) -> list[Any]:
    hashes = list(values)
    if not hashes or not all(isinstance(h, str) and SHA256.fullmatch(h) for h in hashes):
        raise ValueError("identifier_hashes must be keyed sha256 hex digests, at least one")
    return hashes
