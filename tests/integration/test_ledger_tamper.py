"""Tampering with the events table behind the ledger's back is found by verify(), on both databases.

Each test edits rows with plain SQL through SQLAlchemy Core, as someone with database access could;
no ledger code is involved.
"""

from __future__ import annotations

from sqlalchemy import delete, select, text, update

from retention.ledger import ChainHead, Event, Ledger, compute_hash
from tests.fixtures.ledger_writer import as_database_writer

EVENTS = Event.__table__


def _fill(ledger: Ledger, n: int = 6) -> list[Event]:
    return [ledger.append("test.event", {"i": i, "account_id": f"acct_{i}"}, actor="staff:1")
            for i in range(n)]


def _tamper(ledger: Ledger, *statements) -> None:
    """Edit events as an attacker who got past migration 0003's triggers, so verify() is what must catch it."""
    with as_database_writer(ledger) as conn:
        for statement in statements:
            conn.execute(statement)


def _assert_broken_at(ledger: Ledger, seq: int, *words: str) -> str:
    result = ledger.verify()
    assert not result.ok
    assert result.first_bad_seq == seq, result.reason
    assert f"event {seq}" in result.reason or f"ends at {seq - 1}" in result.reason, result.reason
    for word in words:
        assert word in result.reason, result.reason
    return result.reason


def test_editing_an_events_payload_is_named_as_an_edit(ledger: Ledger) -> None:
    events = _fill(ledger)
    # Core, not text(): the JSON column type does the quoting on both databases.
    _tamper(ledger, update(EVENTS).where(EVENTS.c.seq == 3)
            .values(payload={"i": 2, "account_id": "acct_9"}))
    result = ledger.verify()
    _assert_broken_at(ledger, 3, "stored hash does not match its contents")
    assert result.first_bad_event_id == events[2].event_id and events[2].event_id in result.reason
    assert result.events_checked == 2


def test_deleting_a_middle_event_names_the_gap(ledger: Ledger) -> None:
    _fill(ledger)
    _tamper(ledger, text("DELETE FROM events WHERE seq = 4"))
    reason = _assert_broken_at(ledger, 4, "event 4 is missing", "jumps from 3 to 5")
    assert ledger.verify().first_bad_event_id is None, reason


def test_deleting_the_first_event_names_the_gap(ledger: Ledger) -> None:
    _fill(ledger)
    _tamper(ledger, delete(EVENTS).where(EVENTS.c.seq == 1))
    _assert_broken_at(ledger, 1, "event 1 is missing", "starts at seq 2")


def test_swapping_two_events_is_named_as_a_reorder(ledger: Ledger) -> None:
    events = _fill(ledger)
    _tamper(ledger, text("UPDATE events SET seq = -3 WHERE seq = 3"),
            text("UPDATE events SET seq = 3 WHERE seq = 4"),
            text("UPDATE events SET seq = 4 WHERE seq = -3"))
    _assert_broken_at(ledger, 3, "prev_hash does not match event 2's hash", "reordered")
    assert ledger.verify().first_bad_event_id == events[3].event_id


def test_deleting_the_last_event_is_caught_by_the_chain_head(ledger: Ledger) -> None:
    _fill(ledger)
    _tamper(ledger, text("DELETE FROM events WHERE seq = 6"))
    _assert_broken_at(ledger, 6, "chain head says 6 events", "the table ends at 5", "tail deleted")


def test_deleting_every_event_is_caught_by_the_chain_head(ledger: Ledger) -> None:
    _fill(ledger, 3)
    _tamper(ledger, delete(EVENTS))
    _assert_broken_at(ledger, 1, "chain head says 3 events", "the table ends at 0")


def test_editing_a_prev_hash_is_named_as_a_broken_link(ledger: Ledger) -> None:
    events = _fill(ledger)
    _tamper(ledger, text("UPDATE events SET prev_hash = :h WHERE seq = 5").bindparams(h="f" * 64))
    _assert_broken_at(ledger, 5, "prev_hash does not match event 4's hash")
    assert ledger.verify().first_bad_event_id == events[4].event_id


def test_rehashing_an_edited_middle_event_breaks_the_next_link(ledger: Ledger) -> None:
    events = _fill(ledger)
    forged = _forged(events[2], {"i": 2, "account_id": "acct_other"})
    _tamper(ledger, update(EVENTS).where(EVENTS.c.seq == 3)
            .values(payload=forged[0], hash=forged[1]))
    _assert_broken_at(ledger, 4, "prev_hash does not match event 3's hash")


def test_rehashing_the_last_event_is_caught_by_the_chain_head(ledger: Ledger) -> None:
    events = _fill(ledger)
    forged = _forged(events[-1], {"i": 99})
    _tamper(ledger, update(EVENTS).where(EVENTS.c.seq == 6)
            .values(payload=forged[0], hash=forged[1]))
    _assert_broken_at(ledger, 6, "chain head says event 6 has hash", "head or last event edited")


def test_an_event_written_around_the_ledger_is_caught(ledger: Ledger) -> None:
    events = _fill(ledger, 3)
    extra = dict(seq=4, event_id="f" * 32, kind="test.event", occurred_at=events[-1].occurred_at,
                 actor="staff:1", run_id=None, task_id=None, payload={}, prev_hash=events[-1].hash)
    extra["hash"] = compute_hash(**extra)
    _tamper(ledger, EVENTS.insert().values(**extra))
    _assert_broken_at(ledger, 4, "lies past the chain head at 3")


def test_a_chain_head_moved_back_is_caught(ledger: Ledger) -> None:
    events = _fill(ledger, 3)
    _tamper(ledger, update(ChainHead).where(ChainHead.id == 1)
            .values(seq=2, hash=events[1].hash))
    _assert_broken_at(ledger, 3, "lies past the chain head at 2")


def test_a_chain_head_with_a_foreign_hash_is_caught(ledger: Ledger) -> None:
    _fill(ledger, 3)
    _tamper(ledger, update(ChainHead).where(ChainHead.id == 1).values(hash="e" * 64))
    _assert_broken_at(ledger, 3, "chain head says event 3 has hash eeee")


def _forged(event: Event, payload: dict) -> tuple[dict, str]:
    """What a forger who knows the hash recipe would write for ``event`` with a new payload."""
    fields = {c: getattr(event, c) for c in ("seq", "event_id", "kind", "occurred_at", "actor",
                                             "run_id", "task_id", "prev_hash")}
    return payload, compute_hash(payload=payload, **fields)


def test_verify_reads_only_what_it_needs_and_leaves_the_session_usable(ledger: Ledger) -> None:
    _fill(ledger, 3)
    with ledger._reader() as s:
        from retention.ledger import verify

        assert verify(s).ok
        assert s.scalar(select(ChainHead.seq)) == 3
