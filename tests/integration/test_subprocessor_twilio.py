"""Twilio spec against the Twilio emulator: subaccount fan-out, 20009 retry-later, recorded conversation sids."""

from __future__ import annotations

import json

import pytest

from tests.emulators.twilio import PARENT, TOKEN, TwilioEmulator
from tests.fixtures.subprocessors import events_of, shipped_spec

TENANT, OTHER = "acct_1001", "acct_2002"


@pytest.fixture
def twilio():
    emulator = TwilioEmulator(settle_after=2, page_cap=50)
    emulator.add_tenant(TENANT, recordings=123, messages=40, sending=3, conversations=4)
    emulator.add_tenant(OTHER, recordings=7, messages=5, conversations=2)
    with emulator:
        yield emulator


def run(run_spec, twilio, resource, tenant=TENANT, **kwargs):
    return run_spec(shipped_spec("twilio"), resource, tenant, twilio, login=PARENT, password=TOKEN,
                    recorded_ids=lambda recorded, account: twilio.conversation_sids(account),
                    sleep=lambda seconds: None, **kwargs)


def test_recordings_of_the_tenant_go_across_pages_and_others_stay(run_spec, twilio, subprocessor_ledger) -> None:
    result = run(run_spec, twilio, "recordings")

    assert (result.found, result.deleted, result.status) == (123, 123, "verified")
    assert twilio.remaining(TENANT)["recordings"] == 0
    assert twilio.remaining(OTHER) == {"recordings": 7, "messages": 5, "conversations": 2}
    assert result.verification == "get_absent: 0 left"
    assert result.residual_copies_until is not None  # Twilio keeps soft-deleted metadata 40 days
    kinds = [e.kind for e in events_of(subprocessor_ledger)]
    assert kinds.count("subprocessor.intent") == kinds.count("subprocessor.outcome") == 123
    assert subprocessor_ledger.verify().ok


def test_messages_still_sending_are_retried_until_twilio_lets_them_go(run_spec, twilio) -> None:
    result = run(run_spec, twilio, "messages")

    assert (result.found, result.deleted, result.not_deleted, result.status) == (43, 43, 0, "verified")
    assert twilio.remaining(TENANT)["messages"] == 0 and twilio.remaining(OTHER)["messages"] == 5


def test_messages_that_never_complete_leave_the_resource_incomplete(run_spec, twilio) -> None:
    twilio.settle_after = 10_000
    result = run(run_spec, twilio, "messages")

    assert (result.deleted, result.not_deleted, result.status) == (40, 3, "incomplete")
    assert result.verification == "get_absent: 3 left"


def test_conversations_recorded_at_creation_are_deleted_on_their_own_host(run_spec, twilio) -> None:
    result = run(run_spec, twilio, "conversations")

    assert (result.found, result.deleted, result.status) == (4, 4, "verified")
    assert twilio.remaining(TENANT)["conversations"] == 0 and twilio.remaining(OTHER)["conversations"] == 2


def test_a_rerun_finds_nothing_and_deletes_nothing(run_spec, twilio) -> None:
    run(run_spec, twilio, "recordings")
    again = run(run_spec, twilio, "recordings")
    assert (again.found, again.deleted, again.status) == (0, 0, "verified")


def test_ledger_events_hold_no_ids_only_digests_and_counts(run_spec, twilio, subprocessor_ledger) -> None:
    run(run_spec, twilio, "messages")
    text = json.dumps([e.payload for e in events_of(subprocessor_ledger)])
    assert "SM" not in text.replace("SMS", "")  # no message sid
    calls = [e.payload for e in events_of(subprocessor_ledger, "subprocessor.call")]
    # templates, not URLs
    assert calls and all("{" in c["path"] for c in calls if c["operation"] not in ("fan_out", "preflight"))


@pytest.mark.parametrize(("resource", "data_class"), [("recordings", "call_recordings"),
                                                      ("messages", "text_messages"),
                                                      ("conversations", "text_messages")])
def test_each_resource_is_filed_under_the_data_class_it_holds(run_spec, twilio, subprocessor_ledger,
                                                             resource, data_class) -> None:
    """SMS and Conversations are text, not call recordings: the ledger and the certificate say which class went."""
    result = run(run_spec, twilio, resource)
    assert result.data_class == data_class
    final = events_of(subprocessor_ledger, "subprocessor.result")[0].payload
    assert final["data_class"] == data_class


def test_an_undocumented_retry_after_is_an_operational_assumption_not_a_claim(run_spec, twilio,
                                                                             subprocessor_ledger) -> None:
    spec = shipped_spec("twilio")
    assert [(a.key, a.bears_on) for a in spec.assumptions] == [("twilio_retry_after", "operation")]
    result = run(run_spec, twilio, "recordings")  # verified by a GET per recording: not "assumed"
    assert (result.status, result.assumed, result.assumptions) == ("verified", False, [])
