"""A legal hold ends only when the chain proves its release (issue 15, section 3).

The runtime role may UPDATE ``legal_holds`` (a release is written on the row). A database writer holding it
could set ``released_at`` with no ``hold.released`` event, and every deleting path would resume on held data.
So a release counts only if ``released_seq`` names this hold's ``hold.released`` event: each attack below
writes the row around the chain and the hold must stay in force, for the guard, the listing, the resolver
and a real sweep.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pendulum
import pytest
from alembic import command
from sqlalchemy import create_engine, insert, text
from sqlalchemy.orm import Session

from retention.ledger import Ledger, migrate
from retention.ledger.database import _alembic_config, create_ledger_engine
from retention.ledger.events import append_event
from retention.ledger.holds import _hold_payload
from retention.ledger.models import LegalHoldRow
from tests.integration.test_ledger_roles import Roles, _grant, roles  # noqa: F401  (the roles fixture)
from tests.integration.test_sweep import ALL, run_sweep

HELD, OTHER = "acct_3003", "acct_1001"
UNPROVEN = "ledger.hold_release_unproven"


def place(ledger: Ledger, account_id: str = HELD, data_class: str | None = None):
    return ledger.place_hold(account_id=account_id, data_class=data_class, reason="litigation",
                             reference="LEGAL-15", placed_by="counsel")


def write_around_the_chain(url: str, hold_id: str, released_seq: int | None = None) -> None:
    """What a database writer does: release the hold's row with plain SQL, no event appended."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            updated = conn.execute(
                text("UPDATE legal_holds SET released_at = :at, released_by = 'staff:9', "
                     "release_reason = 'done', released_seq = :seq WHERE id = :id"),
                {"at": _stored_now(url), "seq": released_seq, "id": hold_id}).rowcount
    finally:
        engine.dispose()
    assert updated == 1  # the writer's UPDATE went through: only the read side can refuse it


def _stored_now(url: str) -> datetime | str:
    """Now, as each database stores a timestamp (SQLite: naive UTC text)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%d %H:%M:%S.%f") if url.startswith("sqlite") else now


def assert_in_force(ledger: Ledger, hold_id: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="retention.ledger.holds"):
        assert hold_id in ledger.holds_in_force(HELD, "chat_transcripts")
        assert hold_id in ledger.holds_in_force(HELD)
        assert [h.id for h in ledger.list_holds()] == [hold_id]
        [resolved] = [h for h in ledger.resolver_holds() if h.id == hold_id]
        assert resolved.released_at is None
        [shown] = [h for h in ledger.list_holds(include_released=True) if h.id == hold_id]
        assert (shown.released_at, shown.released_by, shown.release_reason) == (None, None, None)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and UNPROVEN in r.getMessage()]
    assert len(errors) == 5 and all(f"hold_id={hold_id} " in m for m in errors), errors


# -- the attack ---------------------------------------------------------------------------------

def test_a_release_written_around_the_chain_leaves_the_hold_in_force(ledger: Ledger, ledger_url: str,
                                                                     caplog) -> None:
    hold = place(ledger)
    write_around_the_chain(ledger_url, hold.id)
    assert_in_force(ledger, hold.id, caplog)
    assert not ledger.events_of_kind("hold.released")


def test_released_seq_pointing_at_another_event_is_no_proof(ledger: Ledger, ledger_url: str, caplog) -> None:
    hold, other = place(ledger), place(ledger, account_id=OTHER)
    ledger.release_hold(other.id, released_by="counsel-2", reason="matter closed")
    [others_release] = ledger.events_of_kind("hold.released")
    [own_placement] = [e for e in ledger.events_of_kind("hold.placed") if e.payload["hold_id"] == hold.id]
    unrelated = ledger.append("test.event", {"hold_id": hold.id}, actor="staff:1")  # names it, wrong kind

    for seq in (others_release.seq, own_placement.seq, unrelated.seq, 10_000):
        write_around_the_chain(ledger_url, hold.id, released_seq=seq)
        assert_in_force(ledger, hold.id, caplog)
    assert ledger.holds_in_force(OTHER) == []  # the honest release still ends its own hold


def test_a_release_event_that_disagrees_with_the_row_is_no_proof(ledger: Ledger, ledger_url: str, caplog) -> None:
    """The writer widens a released hold's row onto other data: the release event recorded another scope."""
    released = place(ledger, account_id=OTHER)
    ledger.release_hold(released.id, released_by="counsel-2", reason="matter closed")
    engine = create_engine(ledger_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE legal_holds SET account_id = :a WHERE id = :id"), {"a": HELD, "id": released.id})
    finally:
        engine.dispose()
    assert_in_force(ledger, released.id, caplog)


def test_an_honest_release_is_proven_and_ends_the_hold(ledger: Ledger, caplog) -> None:
    hold = place(ledger)
    with caplog.at_level(logging.ERROR, logger="retention.ledger.holds"):
        released = ledger.release_hold(hold.id, released_by="counsel-2", reason="matter closed")
        [event] = ledger.events_of_kind("hold.released")
        assert event.payload["hold_id"] == hold.id
        assert ledger.holds_in_force(HELD) == [] and ledger.list_holds() == []
        [resolved] = ledger.resolver_holds()
        assert resolved.released_at == released.released_at is not None
        [shown] = ledger.list_holds(include_released=True)
        assert shown.released_by == "counsel-2"
    assert not [r for r in caplog.records if UNPROVEN in r.getMessage()]
    with pytest.raises(ValueError, match="already released"):
        ledger.release_hold(hold.id, released_by="counsel-2", reason="again")


def test_a_hold_whose_release_was_written_around_the_chain_can_still_be_released(ledger: Ledger,
                                                                                 ledger_url: str) -> None:
    hold = place(ledger)
    write_around_the_chain(ledger_url, hold.id)
    ledger.release_hold(hold.id, released_by="counsel-2", reason="matter closed")
    assert ledger.holds_in_force(HELD) == []
    assert [e.payload["hold_id"] for e in ledger.events_of_kind("hold.released")] == [hold.id]


@pytest.mark.postgres
def test_the_runtime_role_can_write_the_row_but_not_end_the_hold(roles: Roles, caplog) -> None:  # noqa: F811
    migrate(roles.owner_url)
    _grant(roles)
    with Ledger.open(roles.runtime_url) as ledger:
        hold = place(ledger)
        write_around_the_chain(roles.runtime_url, hold.id)  # the role's UPDATE on legal_holds is granted
        assert_in_force(ledger, hold.id, caplog)


# -- a real deleting path ---------------------------------------------------------------------

def test_a_sweep_keeps_held_records_whose_release_was_written_around_the_chain(stack, caplog) -> None:
    with Ledger.open(stack.ledger_url) as ledger:
        hold = place(ledger)
    write_around_the_chain(stack.ledger_url, hold.id)
    before = stack.rows()
    assert before[("chat_conversations", HELD)] == ALL

    report = run_sweep(stack)

    assert report.status == "succeeded"
    after = stack.rows()
    assert {key: n for key, n in after.items() if key[1] == HELD} == \
        {key: n for key, n in before.items() if key[1] == HELD}
    assert after[("chat_conversations", OTHER)] < before[("chat_conversations", OTHER)]  # the sweep did delete
    assert any(f"hold_id={hold.id} " in r.getMessage() for r in caplog.records if UNPROVEN in r.getMessage())


# -- migration 0005 ---------------------------------------------------------------------------

def test_migration_0005_proves_releases_made_before_it(ledger_url: str, caplog) -> None:
    """Holds written by the 0004 code: one released with its event (proven after the upgrade), one whose row a
    writer released with no event (stays in force), one never released."""
    engine = create_ledger_engine(ledger_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "0004")
        with Session(engine) as s, s.begin():
            now = pendulum.now("UTC")
            rows = {name: LegalHoldRow(id=f"hold-{name}", account_id=HELD, data_class=None, reason="litigation",
                                       reference="LEGAL-15", placed_by="counsel", placed_at=now)
                    for name in ("honest", "forged", "open")}
            for row in rows.values():
                append_event(s, kind="hold.placed", actor="counsel", payload=_hold_payload(row))
            for name in ("honest", "forged"):
                rows[name].released_at, rows[name].released_by = now.add(seconds=1), "counsel-2"
            append_event(s, kind="hold.released", actor="counsel-2", payload=_hold_payload(rows["honest"]))
            columns = ("id", "account_id", "data_class", "reason", "reference", "placed_by", "placed_at",
                       "released_at", "released_by")
            s.execute(insert(LegalHoldRow.__table__),  # the 0004 table: no released_seq column yet
                      [{c: getattr(row, c) for c in columns} for row in rows.values()])
    finally:
        engine.dispose()

    migrate(ledger_url)
    with Ledger.open(ledger_url) as ledger, caplog.at_level(logging.ERROR, logger="retention.ledger.holds"):
        assert ledger.holds_in_force(HELD) == ["hold-forged", "hold-open"]
        assert {h.id: h.released_at is not None for h in ledger.resolver_holds()} == {
            "hold-honest": True, "hold-forged": False, "hold-open": False}
        assert ledger.verify().ok
    assert any("hold_id=hold-forged " in r.getMessage() for r in caplog.records if UNPROVEN in r.getMessage())
