"""The chain of events: appending one (with the free texts it is about kept erasable beside it), reading
them back, and verifying the chain."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterator, Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from retention.ledger import chain
from retention.ledger.chain import VerifyResult, check_payload
from retention.ledger.checks import FIELD, check_free_text, check_kind, check_optional_text, check_staff
from retention.ledger.clock import db_now, now
from retention.ledger.guard import refuse_personal_data
from retention.ledger.models import ChainHead, ErasableText, Event
from retention.ledger.transactions import Transactions


class EventLog(Transactions):
    """Appending to the chain and reading it."""

    def append(self, kind: str, payload: Mapping[str, object], *, actor: str, run_id: str | None = None,
               task_id: str | None = None, session: Session | None = None,
               texts: Mapping[str, str] | None = None) -> Event:
        """Append one event; with ``session``, inside that transaction and without committing.

        ``texts``: free text the event is about (``{"reason": "..."}``). Each is kept in ``erasable_texts``
        in the same transaction, and the event carries only ``<field>_sha256``, never the text.

        Takes the chain-head lock, which is held until the transaction ends: in a shared
        transaction, append after locking your own rows, never before, to keep lock order.
        """
        if not isinstance(payload, dict):
            raise chain.PayloadError(f"payload must be a dict, not {type(payload).__name__}")
        kind, actor = check_kind(kind), check_staff(actor, "actor")
        run_id, task_id = check_optional_text(run_id, "run_id"), check_optional_text(task_id, "task_id")
        kept = _event_texts(texts or {}, payload, kind)
        refuse_personal_data(payload, "payload")
        checked: dict[str, object] = check_payload(payload)

        def write(s: Session) -> Event:
            digests = {f"{name}_sha256": keep(s, text, purpose) for name, (text, purpose) in kept.items()}
            return append_event(s, kind=kind, actor=actor, run_id=run_id, task_id=task_id,
                                payload={**checked, **digests})
        if session is not None:  # the caller's transaction: the caller retries it whole if it must
            return write(session)

        def own_transaction() -> Event:
            with self.session() as s:
                return write(s)
        return self._retrying(own_transaction, f"append {kind}")

    def head(self) -> tuple[int, str]:
        with self._reader() as s:
            row = chain.read_head(s)
        return (row.seq, row.hash)

    def events(self, after_seq: int = 0, limit: int | None = None) -> Iterator[Event]:
        """Events with seq > after_seq in order, fetched in batches; no session stays open between."""
        left = limit
        while left is None or left > 0:
            size = 500 if left is None else min(500, left)
            with self._reader() as s:
                batch = s.scalars(select(Event).where(Event.seq > after_seq)
                                  .order_by(Event.seq).limit(size)).all()
            yield from batch
            if len(batch) < size:
                return
            after_seq = batch[-1].seq
            left = None if left is None else left - len(batch)

    def events_of_kind(self, *kinds: str) -> list[Event]:
        """Every event of the given kinds, in order."""
        with self._reader() as s:
            return list(s.scalars(select(Event).where(Event.kind.in_(kinds)).order_by(Event.seq)))

    def run_events(self, run_id: str, *kinds: str) -> list[Event]:
        """One run's events (of the given kinds, if any) in order, through the run_id index."""
        query = select(Event).where(Event.run_id == run_id)
        if kinds:
            query = query.where(Event.kind.in_(kinds))
        with self._reader() as s:
            return list(s.scalars(query.order_by(Event.seq)))

    def verify(self) -> VerifyResult:
        with self._reader() as s:
            return chain.verify(s)


# ---------------------------------------------------------------------------------------------
# The writes every part of the ledger shares (callers validated everything already)


def append_event(s: Session, *, kind: str, actor: str, payload: dict[str, object], run_id: str | None = None,
                 task_id: str | None = None) -> Event:
    """Append one event in ``s`` after the chain head, which it locks and moves."""
    head = s.execute(select(ChainHead.seq, ChainHead.hash).where(ChainHead.id == 1)
                     .with_for_update()).one()
    ev = Event(seq=head.seq + 1, event_id=uuid.uuid4().hex, kind=kind, occurred_at=now(),
               actor=actor, run_id=run_id, task_id=task_id, payload=payload, prev_hash=head.hash)
    ev.hash = chain.event_hash(ev)
    s.add(ev)
    s.flush()
    s.execute(update(ChainHead).where(ChainHead.id == 1).values(seq=ev.seq, hash=ev.hash))
    return ev


def keep(s: Session, text: str, purpose: str) -> str:
    """Keep ``text`` in ``erasable_texts`` under a salted digest, which it returns."""
    salt = secrets.token_hex(32)
    digest = hashlib.sha256((salt + text).encode("utf-8")).hexdigest()
    s.add(ErasableText(sha256=digest, salt=salt, text=text, purpose=purpose, created_at=db_now(s)))
    s.flush()
    return digest


def _event_texts(texts: Mapping[str, str], payload: Mapping[str, object], kind: str) -> dict[str, tuple[str, str]]:
    """``{field: (text, purpose)}`` for ``append(texts=...)``: each field a plain name the payload does not
    already use, each text a storable free text; the purpose is ``<event kind>.<field>``."""
    checked = {}
    for name, value in texts.items():
        if not isinstance(name, str) or not FIELD.fullmatch(name):
            raise ValueError(f"texts: {name!r} is not a field name (lowercase letters, digits, '_')")
        if name in payload or f"{name}_sha256" in payload:
            raise ValueError(f"texts: {name} is also in the payload; a free text goes in texts only")
        checked[name] = (check_free_text(value, name), check_kind(f"{kind}.{name}", "purpose"))
    return checked
