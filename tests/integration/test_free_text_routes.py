"""Every route by which a person's free text reached the hash chain (issue 15) now keeps it in the erasable side
table: a certificate's revocation reason (the real api-server app), a manual subprocessor's attestation and
its request. Fields with a shape are checked at the step, and a refusal fails the Airflow task at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from retention.certificates.archive import issued
from retention.certificates.content import subprocessor_results
from retention.ledger import Ledger, canonical_json
from retention.subprocessors import tasks as subprocessor_steps
from tests.integration.test_certificates_api import issue, link

ACCOUNT = "acct_1001"
REASON = "Alice Smith (alice＠example.com, 030 1234567) asked for a corrected copy"


def chain_text(ledger: Ledger) -> str:
    return "\n".join(canonical_json([e.kind, e.actor, e.payload]) for e in ledger.events())


# -- a certificate's revocation, through Airflow's api-server app -----------------------------------------

def test_a_revocation_reason_is_kept_erasable_and_the_certificate_stays_revoked(api, stack) -> None:
    certificate_id = issue(api, ACCOUNT)
    path, _ = link(api, certificate_id)

    answer = api.post(f"/retention/certificates/{certificate_id}/revoke", headers=api.staff, json={"reason": REASON})

    assert answer.status_code == 200, answer.text
    with Ledger.open(stack.ledger_url) as ledger:
        revoked = ledger.events_of_kind("certificate.revoked")
        assert [set(e.payload) for e in revoked] == [{"certificate_id", "account_id", "reason_sha256"}]
        digest = revoked[0].payload["reason_sha256"]
        assert ledger.text(digest) == REASON
        for word in ("Alice", "alice", "1234567"):
            assert word not in chain_text(ledger)
        assert issued(ledger, ACCOUNT)[certificate_id].revoked == REASON

        ledger.erase_text(digest, erased_by="api:dpo-7")

        assert ledger.verify().ok
        assert REASON not in chain_text(ledger)
        assert issued(ledger, ACCOUNT)[certificate_id].revoked == "(erased)"  # still revoked, words gone
    assert api.get(path).status_code == 410


# -- a manual subprocessor: the request and the attestation ------------------------------------------------

@pytest.fixture
def steps_ledger(tmp_path, monkeypatch) -> str:
    """The ledger the subprocessor steps open (``RETENTION_DATABASE_URL``): a SQLite file of this test."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("RETENTION_DATABASE_URL", url)
    return url


def answer(ticket: str = "6S-PRIV-4411", confirmed_on: str | None = None, evidence: str = "ab" * 32,
           user_id: str = "dpo-7") -> dict:
    confirmed_on = confirmed_on or (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    return {"chosen_options": [subprocessor_steps.ATTEST], "responded_by_user": {"id": user_id, "name": user_id},
            "params_input": {"ticket_reference": ticket, "confirmed_on": confirmed_on, "evidence_sha256": evidence}}


def test_an_attestations_ticket_is_kept_erasable_and_the_certificate_still_names_it(steps_ledger) -> None:
    response = answer()
    recorded = subprocessor_steps.record_attestation("sixsense", ACCOUNT, response, actor="test")

    with Ledger.open(steps_ledger) as ledger:
        event = ledger.events_of_kind("subprocessor.attested")[0]
        assert event.payload == recorded
        assert "ticket_reference" not in event.payload and "6S-PRIV-4411" not in chain_text(ledger)
        assert event.payload["confirmed_on"] == response["params_input"]["confirmed_on"]
        assert event.payload["attested_by_user_id"] == "dpo-7"
        assert ledger.text(event.payload["ticket_reference_sha256"]) == "6S-PRIV-4411"
        [line] = subprocessor_results(ledger, ACCOUNT)
        assert line["verification"].endswith("ticket 6S-PRIV-4411")

        ledger.erase_text(event.payload["ticket_reference_sha256"], erased_by="api:dpo-7")
        assert ledger.verify().ok
        [line] = subprocessor_results(ledger, ACCOUNT)
        assert line["verification"].endswith("ticket (erased)") and line["status"] == "attested"


@pytest.mark.parametrize(("response", "field"), [
    (answer(ticket="Alice Smith"), "ticket_reference"),
    (answer(ticket="alice＠example.com"), "ticket_reference"),
    (answer(ticket="0612345678 call back"), "ticket_reference"),
    (answer(confirmed_on="14.03.1985"), "confirmed_on"),
    (answer(confirmed_on=(datetime.now(UTC) + timedelta(days=2)).date().isoformat()), "confirmed_on"),
    (answer(evidence="see the mail from Alice"), "evidence_sha256"),
    (answer(user_id="Alice Smith"), "attested_by_user_id"),
], ids=["name-as-ticket", "fullwidth-email-as-ticket", "phone-as-ticket", "written-date", "future-date",
        "evidence-not-a-digest", "user-id-with-a-space"])
def test_a_typed_attestation_field_of_the_wrong_shape_fails_the_task_at_once_and_records_nothing(
        steps_ledger, response: dict, field: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=f"^{field}: ") as refused:
        subprocessor_steps.record_attestation("sixsense", ACCOUNT, response, actor="test")
    typed = str(response["params_input"].get(field) or response["responded_by_user"]["id"])
    assert typed not in str(refused.value)  # the message names the field, never the value
    with Ledger.open(steps_ledger) as ledger:
        assert list(ledger.events()) == []


def test_a_manual_request_by_a_typed_name_fails_the_task_at_once_and_records_nothing(steps_ledger) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="^requested_by: is not a staff id"):
        subprocessor_steps.open_manual_request("sixsense", ACCOUNT, requested_by="Alice Smith", actor="test")
    opened = subprocessor_steps.open_manual_request("sixsense", ACCOUNT, requested_by="api:alice", actor="test")
    with Ledger.open(steps_ledger) as ledger:
        assert [e.payload["requested_by"] for e in ledger.events()] == ["api:alice"]
    assert opened["deadline"]
