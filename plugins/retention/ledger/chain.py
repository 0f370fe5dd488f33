"""Hashing and verification of the event chain.

An event's hash is the sha256 of the canonical JSON of its fields and its predecessor's hash, so
editing, deleting or reordering any event breaks the chain from that point on. The ``chain_head``
row records the last (seq, hash), which catches a deleted or rewritten tail.

Payloads are limited to JSON types that survive SQLite and PostgreSQL unchanged (str, int, bool,
None, lists, dicts with str keys): floats are refused because their text form is not stable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from retention.ledger.models import GENESIS_HASH, ChainHead, Event, utc


class PayloadError(ValueError):
    """A payload holds a value whose JSON form would not hash identically after a round trip."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def iso_utc(value: datetime) -> str:
    """ISO-8601 in UTC with microseconds, e.g. ``2024-05-01T12:00:00.000000+00:00``."""
    v = utc(value)
    plain = datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, UTC)
    return plain.isoformat(timespec="microseconds")


def check_payload(value: Any, path: str = "payload") -> Any:
    """Return ``value`` with tuples as lists, or raise PayloadError naming the offending path."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        _check_text(value, path)
        return value
    if isinstance(value, float):
        raise PayloadError(f"{path} is a float; the ledger accepts ints and strings only "
                           "(store a count as int, a ratio as a string)")
    if isinstance(value, (list, tuple)):
        return [check_payload(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise PayloadError(f"{path} has a non-string key of type {type(key).__name__}")
            _check_text(key, f"{path} key")
        return {k: check_payload(v, f"{path}[{k!r}]") for k, v in value.items()}
    raise PayloadError(f"{path} has type {type(value).__name__}; "
                       "allowed: str, int, bool, None, list, dict")


def _check_text(text: str, path: str) -> None:
    # NUL and lone surrogates cannot be stored in PostgreSQL JSON nor encoded as UTF-8 for hashing.
    if "\x00" in text:
        raise PayloadError(f"{path} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(f"{path} is not valid Unicode (lone surrogate)") from None


def compute_hash(*, seq: int, event_id: str, kind: str, occurred_at: datetime, actor: str,
                 run_id: str | None, task_id: str | None, payload: Any, prev_hash: str) -> str:
    doc = {
        "seq": seq, "event_id": event_id, "kind": kind, "occurred_at": iso_utc(occurred_at),
        "actor": actor, "run_id": run_id, "task_id": task_id, "payload": payload,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def event_hash(event: Any) -> str:
    """Recompute the hash of an ``Event`` (or a row with the same attributes)."""
    return compute_hash(
        seq=event.seq, event_id=event.event_id, kind=event.kind, occurred_at=event.occurred_at,
        actor=event.actor, run_id=event.run_id, task_id=event.task_id, payload=event.payload,
        prev_hash=event.prev_hash,
    )


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events_checked: int
    first_bad_seq: int | None
    first_bad_event_id: str | None
    reason: str

    def __bool__(self) -> bool:
        return self.ok


_COLUMNS = (Event.seq, Event.event_id, Event.kind, Event.occurred_at, Event.actor, Event.run_id,
            Event.task_id, Event.payload, Event.prev_hash, Event.hash)


def _stream(session: Session, upto: int, batch_size: int) -> Iterator[Any]:
    """Events with seq <= upto in seq order, fetched in keyset batches (never all at once)."""
    after = 0
    while True:
        rows = session.execute(
            select(*_COLUMNS).where(Event.seq > after, Event.seq <= upto)
            .order_by(Event.seq).limit(batch_size)
        ).all()
        yield from rows
        if len(rows) < batch_size:
            return
        after = rows[-1].seq


def read_head(session: Session) -> Any:
    return session.execute(select(ChainHead.seq, ChainHead.hash).where(ChainHead.id == 1)).one_or_none()


def _fail(checked: int, seq: int | None, event_id: str | None, reason: str) -> VerifyResult:
    return VerifyResult(False, checked, seq, event_id, reason)


def _check_link(ev: Any, expected_seq: int, prev_hash: str) -> str | None:
    """Why ``ev`` is not a valid next link after (expected_seq - 1, prev_hash), or None."""
    if ev.seq != expected_seq:
        if expected_seq == 1:
            return f"event 1 is missing: the table starts at seq {ev.seq} (deleted?)"
        return (f"event {expected_seq} is missing: seq jumps from {expected_seq - 1} "
                f"to {ev.seq} (deleted?)")
    if ev.prev_hash != prev_hash:
        if ev.seq == 1:
            return f"event 1 (id {ev.event_id}): prev_hash is not the genesis value (edited?)"
        return (f"event {ev.seq} (id {ev.event_id}): prev_hash does not match event "
                f"{ev.seq - 1}'s hash (reordered or edited?)")
    if event_hash(ev) != ev.hash:
        return f"event {ev.seq} (id {ev.event_id}): stored hash does not match its contents (edited?)"
    return None


def verify(session: Session, *, batch_size: int = 1000) -> VerifyResult:
    """Walk the chain from seq 1 to the chain head; report the first break, or ok.

    The head is read first and only events up to it are checked, so appends committed while this
    runs are neither verified nor mistaken for tampering.
    """
    head = read_head(session)
    if head is None:
        any_event = session.execute(select(Event.seq, Event.event_id).order_by(Event.seq).limit(1)).first()
        if any_event is None:
            return VerifyResult(True, 0, None, None, "the ledger is empty")
        return _fail(0, any_event.seq, any_event.event_id,
                     "the chain head row is missing while the events table is not empty (deleted?)")

    checked, prev_hash, last_id = 0, GENESIS_HASH, None
    for ev in _stream(session, head.seq, batch_size):
        problem = _check_link(ev, checked + 1, prev_hash)
        if problem:
            bad_id = ev.event_id if ev.seq == checked + 1 else None  # a gap has no event to name
            return _fail(checked, checked + 1, bad_id, problem)
        checked, prev_hash, last_id = checked + 1, ev.hash, ev.event_id
    return _check_head(session, head, checked, prev_hash, last_id)


def _check_head(session: Session, head: Any, checked: int, last_hash: str,
                last_id: str | None) -> VerifyResult:
    if checked < head.seq:
        return _fail(checked, checked + 1, None,
                     f"chain head says {head.seq} events ending in {head.hash[:16]}…, "
                     f"the table ends at {checked} (tail deleted?)")
    if head.hash != last_hash:
        return _fail(checked, head.seq or None, last_id,
                     f"chain head says event {head.seq} has hash {head.hash[:16]}…, the table's "
                     f"event {head.seq} has {last_hash[:16]}… (head or last event edited?)")
    beyond = session.execute(select(func.min(Event.seq)).where(Event.seq > head.seq)).scalar()
    # An event committed after we read the head moved the head with it; re-read before accusing.
    if beyond is not None and getattr(read_head(session), "seq", -1) < beyond:
        return _fail(checked, beyond, None,
                     f"event {beyond} lies past the chain head at {head.seq} "
                     "(written around the ledger?)")
    noun = "event" if checked == 1 else "events"
    return VerifyResult(True, checked, None, None, f"{checked} {noun} verified, chain intact")
