"""Free text stays out of the hash chain (issue 15): reasons, references and tickets are kept in the erasable
side table, events carry their digest only, and after an erasure the chain still verifies and the words are
gone, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text as sql

from retention.ledger import Ledger, PersonalDataError, TextErased, canonical_json

NAME = "Alice Smith (born 14.03.1985, Musterstraße 12) asked on the phone"


def chain_text(ledger: Ledger) -> str:
    """Everything the hash chain holds, as one string."""
    return "\n".join(canonical_json([e.kind, e.actor, e.run_id, e.task_id, e.payload]) for e in ledger.events())


def stored_row(ledger: Ledger, digest: str):
    with ledger.engine.connect() as conn:
        return conn.execute(sql("SELECT text, salt, purpose, erased_at FROM erasable_texts WHERE sha256 = :d"),
                            {"d": digest}).one()


def test_a_free_text_goes_to_the_side_table_and_the_event_carries_its_digest_only(ledger: Ledger) -> None:
    event = ledger.append("certificate.revoked", {"certificate_id": "cert-" + "0" * 32, "account_id": "acct_1001"},
                          actor="api:7", texts={"reason": NAME})

    digest = event.payload["reason_sha256"]
    assert set(event.payload) == {"certificate_id", "account_id", "reason_sha256"}
    for word in ("Alice", "Smith", "1985", "Muster", "phone"):
        assert word not in chain_text(ledger)
    assert ledger.text(digest) == NAME
    row = stored_row(ledger, digest)
    assert (row.text, row.purpose, row.erased_at) == (NAME, "certificate.revoked.reason", None)
    # Salted: the digest is not the text's plain sha256, so it cannot be found again by guessing the text.
    assert digest == hashlib.sha256((row.salt + NAME).encode()).hexdigest() != hashlib.sha256(NAME.encode()).hexdigest()


def test_the_same_text_directly_in_a_payload_is_refused(ledger: Ledger) -> None:
    """Without the side table the guard is the last line: the leak is refused, nothing is appended."""
    with pytest.raises(PersonalDataError, match=r"payload\['reason'\] looks like a date a person wrote"):
        ledger.append("certificate.revoked", {"account_id": "acct_1001", "reason": NAME}, actor="api:7")
    assert ledger.head()[0] == 0


def test_an_erased_text_is_gone_and_the_chain_still_verifies(ledger: Ledger) -> None:
    event = ledger.append("offboarding.rejected", {"approver_id": "api:7"}, actor="airflow:termination_offboarding",
                          texts={"reason": NAME})
    digest = event.payload["reason_sha256"]

    ledger.erase_text(digest, erased_by="api:8")

    result = ledger.verify()
    assert result.ok and result.events_checked == 2, result.reason
    with pytest.raises(TextErased):
        ledger.text(digest)
    assert ledger.text_or(digest) == "(erased)"
    row = stored_row(ledger, digest)
    assert row.text is None and row.salt is None and row.erased_at is not None  # the words and the salt are gone
    erased = ledger.events_of_kind("text.erased")
    assert [(e.actor, e.payload) for e in erased] == [("api:8", {"text_sha256": digest,
                                                                  "purpose": "offboarding.rejected.reason"})]
    with pytest.raises(ValueError, match="already erased"):
        ledger.erase_text(digest, erased_by="api:8")
    with pytest.raises(LookupError, match="no kept text"):
        ledger.erase_text("f" * 64, erased_by="api:8")
    assert NAME not in chain_text(ledger)


def test_a_holds_reference_is_kept_apart_and_erasable(ledger: Ledger) -> None:
    hold = ledger.place_hold(account_id="acct_1001", data_class=None, reason="litigation", reference="LEGAL-0042",
                             placed_by="api:7")
    placed = ledger.events_of_kind("hold.placed")[0].payload
    assert "reference" not in placed and ledger.text(placed["reference_sha256"]) == "LEGAL-0042"
    assert "LEGAL-0042" not in chain_text(ledger)

    ledger.erase_text(placed["reference_sha256"], erased_by="api:8")
    assert [h.reference for h in ledger.list_holds()] == ["(erased)"]
    assert ledger.holds_in_force("acct_1001") == [hold.id]  # erasing words never lifts a hold
    ledger.release_hold(hold.id, released_by="api:9", reason="matter closed")
    released = ledger.events_of_kind("hold.released")[0].payload
    assert released["reference_sha256"] == placed["reference_sha256"]
    assert ledger.verify().ok


def test_texts_are_checked_before_anything_is_written(ledger: Ledger) -> None:
    payload = {"account_id": "acct_1001"}
    for texts, message in (({"reason": ""}, "reason must be a non-empty string"),
                           ({"reason": "x" * 2001}, "reason is 2001 characters long"),
                           ({"Reason": "x"}, "is not a field name"),
                           ({"account_id": "x"}, "account_id is also in the payload")):
        with pytest.raises(ValueError, match=message):
            ledger.append("test.event", payload, actor="api:7", texts=texts)
    with pytest.raises(PersonalDataError):  # a refused payload leaves no kept text behind either
        ledger.append("test.event", {"ip": "203.0.113.7"}, actor="api:7", texts={"reason": "fine"})
    with ledger.engine.connect() as conn:
        assert conn.execute(sql("SELECT count(*) FROM erasable_texts")).scalar_one() == 0
    assert ledger.head()[0] == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               min_size=1, max_size=300))
def test_no_text_routed_through_the_side_table_ever_appears_in_an_event(ledger: Ledger, typed: str) -> None:
    kept = f"«{typed}»"  # the guillemets appear in no event the product writes: the whole text is searched for
    event = ledger.append("offboarding.approved", {"approver_id": "api:7"}, actor="airflow:termination_offboarding",
                          texts={"reason": kept})
    digest = ledger.keep_text(kept, "test.direct")
    assert kept not in chain_text(ledger) and "«" not in chain_text(ledger)
    assert ledger.text(event.payload["reason_sha256"]) == ledger.text(digest) == kept


def test_a_hold_placed_before_migration_0004_gets_its_digest_when_released(ledger: Ledger) -> None:
    """Holds from before the side table have no reference digest; their release event still carries no text."""
    hold = ledger.place_hold(account_id="acct_1001", data_class=None, reason="r", reference="LEG-1", placed_by="api:1")
    with ledger.engine.begin() as conn:
        conn.execute(sql("UPDATE legal_holds SET reference_sha256 = NULL WHERE id = :id"), {"id": hold.id})
    ledger.release_hold(hold.id, released_by="api:2", reason="done",
                        at=datetime.now(UTC) + timedelta(seconds=1))
    released = ledger.events_of_kind("hold.released")[0].payload
    assert ledger.text(released["reference_sha256"]) == "LEG-1" and "reference" not in released


@pytest.mark.parametrize("who", ["actor", "placed_by"])
def test_who_acted_is_a_staff_id_never_a_typed_name(ledger: Ledger, who: str) -> None:
    with pytest.raises(ValueError, match=f"^{who}: is not a staff id"):
        if who == "actor":
            ledger.append("test.event", {}, actor="Alice Smith")
        else:
            ledger.place_hold(account_id="acct_1001", data_class=None, reason="r", reference="LEG-1",
                              placed_by="Alice Smith")
    assert ledger.head()[0] == 0 and ledger.list_holds() == []


def test_the_cli_erases_a_text_and_the_ledger_still_verifies(tmp_path) -> None:
    from click.testing import CliRunner

    from retention.cli import main

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        digest = ledger.append("certificate.revoked", {"account_id": "acct_1001"}, actor="api:7",
                               texts={"reason": NAME}).payload["reason_sha256"]
    result = CliRunner().invoke(main, ["ledger", "erase-text", digest, "--database-url", url, "--json"])
    assert result.exit_code == 0, result.output
    again = CliRunner().invoke(main, ["ledger", "erase-text", digest, "--database-url", url])
    assert again.exit_code != 0 and "already erased" in again.output
    with Ledger.open(url) as ledger:
        assert ledger.text_or(digest) == "(erased)" and ledger.verify().ok
        [erased] = ledger.events_of_kind("text.erased")
        assert erased.actor.startswith("cli:") and erased.payload == {
            "text_sha256": digest, "purpose": "certificate.revoked.reason"}
