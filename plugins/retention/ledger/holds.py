"""Legal holds: placing and releasing them, and the guard every deleting path calls right before it acts.

A hold counts as released only when the chain proves it: its row's ``released_seq`` names a ``hold.released``
event of this hold (``_release_proven``). A row a database writer marked released without that event stays
in force, and the unproven release is logged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import pendulum
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from retention.ids import check_account_id
from retention.ledger.chain import iso_utc
from retention.ledger.checks import check_optional_text, check_staff, check_text
from retention.ledger.clock import db_now
from retention.ledger.events import append_event, keep
from retention.ledger.models import Event, LegalHoldRow, utc
from retention.ledger.transactions import Transactions
from retention.rules import LegalHold

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HoldRecord:
    id: str
    account_id: str | None
    data_class: str | None
    reason: str
    reference: str
    placed_by: str
    placed_at: pendulum.DateTime
    released_at: pendulum.DateTime | None
    released_by: str | None
    release_reason: str | None

    @classmethod
    def of(cls, row: LegalHoldRow, released: bool) -> HoldRecord:
        """``released``: whether the chain proves the row's release (``_release_proven``); if not, the hold is
        in force and its row's release fields are not shown."""
        placed_at = utc(row.placed_at)  # the column hands out UTC pendulum times already; this says so
        if not released or row.released_at is None:
            return cls(row.id, row.account_id, row.data_class, row.reason, row.reference, row.placed_by,
                       placed_at, None, None, None)
        return cls(row.id, row.account_id, row.data_class, row.reason, row.reference, row.placed_by,
                   placed_at, utc(row.released_at), row.released_by, row.release_reason)

    def as_dict(self) -> dict[str, str | None]:
        """The hold as staff see it; the free-text reason stays in its row."""
        return {"id": self.id, "account_id": self.account_id, "data_class": self.data_class,
                "reference": self.reference, "placed_by": self.placed_by, "placed_at": self.placed_at.isoformat(),
                "released_at": self.released_at.isoformat() if self.released_at else None}

    def to_legal_hold(self) -> LegalHold:
        return LegalHold(id=self.id, account_id=self.account_id, data_class=self.data_class,
                         placed_at=self.placed_at, released_at=self.released_at)


class LegalHolds(Transactions):
    """Placing, releasing and listing legal holds."""

    def place_hold(self, *, account_id: str | None, data_class: str | None, reason: str,
                   reference: str, placed_by: str, at: datetime | None = None) -> HoldRecord:
        if account_id is None and data_class is None:
            raise ValueError("a legal hold needs an account_id, a data_class or both: "
                             "a hold on everything is not a hold")
        row = LegalHoldRow(
            id=f"hold-{uuid.uuid4().hex[:12]}",
            account_id=None if account_id is None else check_account_id(account_id),
            data_class=check_optional_text(data_class, "data_class"),
            # The reason is free text: it is kept in this row only, never in an event.
            reason=check_text(reason, "reason", 500), reference=check_text(reference, "reference"),
            placed_by=check_staff(placed_by, "placed_by"), placed_at=utc(at) if at else None,
        )
        with self.session() as s:
            row.placed_at = row.placed_at or db_now(s)
            row.reference_sha256 = keep(s, row.reference, "hold.reference")
            s.add(row)
            s.flush()
            append_event(s, kind="hold.placed", actor=row.placed_by, payload=_hold_payload(row))
        return HoldRecord.of(row, released=False)

    def release_hold(self, hold_id: str, *, released_by: str, reason: str,
                     at: datetime | None = None) -> HoldRecord:
        released_by, reason = check_staff(released_by, "released_by"), check_text(reason, "reason", 500)
        with self.session() as s:
            when = utc(at) if at else db_now(s)
            row = s.scalars(select(LegalHoldRow).where(LegalHoldRow.id == hold_id)
                            .with_for_update()).one_or_none()
            if row is None:
                raise LookupError(f"no legal hold with id {hold_id!r}")
            proof = s.get(Event, row.released_seq) if row.released_seq is not None else None
            # A release the chain does not prove (a writer set released_at) is no release: this one may end it.
            _check_releasable(row, when, released=_release_proven(row, proof))
            row.released_at, row.released_by, row.release_reason = when, released_by, reason
            if row.reference_sha256 is None:  # placed before its reference was kept apart (migration 0004)
                row.reference_sha256 = keep(s, row.reference, "hold.reference")
            s.flush()
            event = append_event(s, kind="hold.released", actor=released_by, payload=_hold_payload(row))
            row.released_seq = event.seq  # the proof, committed with the event
        return HoldRecord.of(row, released=True)

    def list_holds(self, include_released: bool = False) -> list[HoldRecord]:
        # In force means not released, as for the deleting paths' guard (holds_in_force): no clock compared.
        with self._reader() as s:
            return [HoldRecord.of(row, released) for row, released in _holds(s)
                    if include_released or not released]

    def holds_in_force(self, account_id: str, data_class: str | None = None) -> list[str]:
        """The guard every deleting path calls right before it acts: ids of the holds not released that
        cover ``data_class`` of the account (with ``None``, any of its data: backups and return packages
        hold every class). "Stop now": a hold is in force from the moment its row exists, whatever its
        ``placed_at`` and whatever this machine's clock says; only a release the chain proves ends it."""
        scope = [(LegalHoldRow.account_id.is_(None)) | (LegalHoldRow.account_id == account_id)]
        # With no data class every hold on the account counts, class-wide ones (no account) included:
        # they cover this account's copy of their class.
        if data_class is not None:
            scope.append((LegalHoldRow.data_class.is_(None)) | (LegalHoldRow.data_class == data_class))
        with self._reader() as s:
            return sorted(row.id for row, released in _holds(s, *scope) if not released)

    def holds_in_force_many(self, account_ids: Collection[str], data_class: str | None = None) -> dict[str, list[str]]:
        """``holds_in_force`` for many accounts in ONE query: per account with any hold in force, the ids of those
        holds (sorted); accounts without are left out. Same scope: holds naming the account or none (class-wide)
        and, with ``data_class``, naming that class or none."""
        wanted = set(account_ids)
        scope = []
        if data_class is not None:
            scope.append((LegalHoldRow.data_class.is_(None)) | (LegalHoldRow.data_class == data_class))
        with self._reader() as s:  # every hold of the class: far fewer rows than accounts, and one statement
            in_force = [row for row, released in _holds(s, *scope) if not released]
        found: dict[str, set[str]] = {}
        for row in in_force:
            for account in wanted if row.account_id is None else wanted & {row.account_id}:
                found.setdefault(account, set()).add(row.id)
        return {account: sorted(ids) for account, ids in found.items()}

    def resolver_holds(self) -> list[LegalHold]:
        """Every hold, released ones included: the resolver decides which were in force when."""
        return [r.to_legal_hold() for r in self.list_holds(include_released=True)]


def _hold_payload(row: LegalHoldRow) -> dict[str, object]:
    payload: dict[str, object] = {
        "hold_id": row.id, "account_id": row.account_id, "data_class": row.data_class,
        "reference_sha256": row.reference_sha256, "placed_at": iso_utc(row.placed_at)}
    if row.released_at is not None:
        payload["released_at"] = iso_utc(row.released_at)
    return payload


def _holds(s: Session, *where: ColumnElement[bool]) -> list[tuple[LegalHoldRow, bool]]:
    """The holds matching ``where``, each with whether its release is proven: the one definition of "released"
    that the guard, the listing and the resolver share. One query: each row joined to the event at its
    ``released_seq``. An unproven release is logged (ids only) so on-call sees the row was written around
    the chain; the hold stays in force."""
    query = (select(LegalHoldRow, Event).outerjoin(Event, Event.seq == LegalHoldRow.released_seq)
             .where(*where).order_by(LegalHoldRow.placed_at, LegalHoldRow.id))
    holds = []
    for row, proof in s.execute(query):
        released = _release_proven(row, proof)
        if row.released_at is not None and not released:
            _log.error("ledger.hold_release_unproven hold_id=%s released_seq=%s: no hold.released event at that "
                       "seq proves the release; the hold stays in force", row.id, row.released_seq)
        holds.append((row, released))
    return holds


def _release_proven(row: LegalHoldRow, proof: Event | None) -> bool:
    """Whether ``proof`` (the event at the row's ``released_seq``) is this hold's release: kind
    ``hold.released``, naming this hold, and agreeing with the row on what the payload records of it."""
    if row.released_at is None or proof is None or proof.kind != "hold.released":
        return False
    recorded = {"hold_id": row.id, "account_id": row.account_id, "data_class": row.data_class,
                "released_at": iso_utc(row.released_at)}
    payload = proof.payload if isinstance(proof.payload, dict) else {}
    return payload.get("hold_id") == row.id and all(
        payload[field] == value for field, value in recorded.items() if field in payload)


def _check_releasable(row: LegalHoldRow, at: pendulum.DateTime, *, released: bool) -> None:
    if released:
        raise ValueError(f"legal hold {row.id} was already released at {_iso(row.released_at)} "
                         f"by {row.released_by}")
    if at < row.placed_at:
        raise ValueError(f"legal hold {row.id} cannot be released at {iso_utc(at)}, "
                         f"before it was placed at {iso_utc(row.placed_at)}")


def _iso(value: datetime | None) -> str:
    return "an unrecorded time" if value is None else iso_utc(value)
