"""The ledger's personal-data guard and its field shapes: each leak of issue 15 is refused, the product's own
values (ids, timestamps, digests, durations, S3 keys, tickets) still pass."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retention.failfast import input_refusals_fail_the_task
from retention.ids import ACCOUNT_ID
from retention.ledger.chain import iso_utc
from retention.ledger.fields import (
    TICKET_REFERENCE,
    TICKET_REFERENCE_RULE,
    FieldError,
    check_iso_date,
    check_sha256,
    check_staff_id,
    check_ticket_reference,
)
from retention.ledger.guard import PersonalDataError, looks_personal, refuse_personal_data

LEAKS = {
    "alice＠example.com": "an email address",  # fullwidth at sign: NFKC makes it '@'
    "ａｌｉｃｅ@ｅｘａｍｐｌｅ.ｃｏｍ": "an email address",
    "DE89370400440532013000": "a bank account number (IBAN)",
    "refund to DE89 3704 0044 0532 0130 00": "a bank account number (IBAN)",
    "GB82WEST12345698765432": "a bank account number (IBAN)",
    "4111 1111 1111 1111": "a payment card number",
    "4111-1111-1111-1111": "a payment card number",
    "card 4111111111111111": "a payment card number",
    "378282246310005": "a payment card number",  # 15-digit Amex
    "203.0.113.7": "an IP address",
    "seen from 203.0.113.7 yesterday": "an IP address",
    "2001:db8::1": "an IP address",
    "fe80::1ff:fe23:4567:890a": "an IP address",
    "030 1234567": "a phone number",
    "030/1234567": "a phone number",
    "0612345678": "a phone number",
    "call 06 12 34 56 78": "a phone number",
    "０６１２３４５６７８": "a phone number",  # fullwidth digits
    "born 1985-03-14": "a date a person wrote (a date of birth?)",
    "DOB: 14.03.1985": "a date a person wrote (a date of birth?)",
    "geboren am 14.03.1985": "a date a person wrote (a date of birth?)",
    "14/03/1985": "a date a person wrote (a date of birth?)",
    "March 14, 1985": "a date a person wrote (a date of birth?)",
    "14 March 1985": "a date a person wrote (a date of birth?)",
    "Musterstraße 12": "a postal address",
    "221B Baker Street": "a postal address",
    "10 Downing St": "a postal address",
}


@pytest.mark.parametrize("text", LEAKS)
def test_each_leak_of_issue_15_is_recognised(text: str) -> None:
    assert looks_personal(text) == LEAKS[text]


@pytest.mark.parametrize("text", LEAKS)
def test_a_leak_in_an_event_payload_is_refused_naming_the_field_never_the_value(text: str) -> None:
    with pytest.raises(PersonalDataError) as refused:
        refuse_personal_data({"note": {"lines": [text]}}, "payload")
    message = str(refused.value)
    assert message.startswith("payload['note']['lines'][0] looks like")
    plain = unicodedata.normalize("NFKC", text)
    for fragment in re.findall(r"\d{2,}", plain) + ["alice", "example", "Muster", "Baker", "Downing", "March"]:
        assert fragment not in message


def test_checksums_keep_look_alikes_out() -> None:
    """The IBAN's mod-97 and the card's Luhn digit decide: one digit off is not a bank account or a card."""
    assert looks_personal("DE89370400440532013001") is None
    assert looks_personal("4111 1111 1111 1112") is None
    assert looks_personal("999.0.113.7") is None  # not an address: 999 is no octet


# -- the product's own values pass ------------------------------------------------------------------

PRODUCT_VALUES = [
    "2025-03-01T12:00:00.000000+00:00", "2025-03-01", "manual__2025-03-01T12:00:00+00:00", "12:00:00",
    "0f8fad5b-d9cb-469f-a165-70867728950e", "12345678-1234-1234-1234-123456789012", "P30D", "PT0.5S",
    "acct_1001", "chat_transcripts", "api:42", "airflow:termination_offboarding", "hold-0a1b2c3d4e5f",
    "s3://chat-attachments/acct_1001/2024/03/14/a.bin", "sql://app_db/public.chat_messages", "v1.2.3",
    "6S-PRIV-4411", "INC0012345", "00012345", "LEG-2025-0042", "1700000000", "1732912345678", "4155550100",
    "arn:aws:kms:eu-west-1:012345678901:key/0f8fad5b-d9cb-469f-a165-70867728950e", "Spring 2024",
    # Random ids that pass mod-97 as IBANs would (1 in 97 does): not one country's IBAN length, not upper case.
    "ce3330662095485ab158e6d0211a7f83", "dc34bfe98520432ba41ca75ab88fa416", "Df829Fc994JW8mDhGdUm4Q",
]


@pytest.mark.parametrize("text", PRODUCT_VALUES)
def test_the_products_own_values_pass(text: str) -> None:
    assert looks_personal(text) is None


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_timestamps_in_every_form_the_product_writes_pass(at: datetime) -> None:
    for text in (iso_utc(at), at.isoformat(), at.date().isoformat(), f"scheduled__{at.isoformat()}",
                 at.strftime("%Y/%m/%d/%H%M%S")):
        assert looks_personal(text) is None, text


@settings(max_examples=300, deadline=None)
@given(st.uuids(), st.binary(min_size=1, max_size=64), st.from_regex(ACCOUNT_ID, fullmatch=True),
       st.integers(min_value=0, max_value=10**18))
def test_ids_digests_and_counts_pass(an_uuid: uuid.UUID, data: bytes, account_id: str, count: int) -> None:
    # Airflow user ids are small numbers or user names: api:<id> up to 10^9 (a 13-digit run would be a card number)
    values = [str(an_uuid), an_uuid.hex, hashlib.sha256(data).hexdigest(), account_id, f"api:{count % 10**9}",
              f"acct_{count}", f"P{count % 10000}D", f"hold-{an_uuid.hex[:12]}"]
    refuse_personal_data({"values": values, "count": count, "text_sha256": hashlib.sha256(data).hexdigest()},
                         "payload")


def _luhn_complete(body: str) -> str:
    for check in "0123456789":
        digits = body + check
        total = sum(int(d) * (2 if i % 2 else 1) - (9 if int(d) * (2 if i % 2 else 1) > 9 else 0)
                    for i, d in enumerate(reversed(digits)))
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=12, max_value=18).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)), st.sampled_from(["", " ", "-"]))
def test_any_card_number_with_a_valid_luhn_digit_is_refused(body: str, separator: str) -> None:
    number = _luhn_complete(body)
    grouped = separator.join(number[i:i + 4] for i in range(0, len(number), 4))
    assert looks_personal(grouped) is not None, grouped


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses())
def test_any_ip_address_is_refused(address) -> None:
    if str(address) == "::":
        return  # IPv6's "unspecified" address names no host (and has no digit to anchor a match on)
    assert looks_personal(str(address)) == "an IP address"


# -- field shapes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("ticket", ["PRIV-4411", "6S-PRIV-4411", "ENG-123", "INC0012345", "00012345", "#123",
                                    "LEGAL-0042", "T-1", "CASE_2024_77"])
def test_tracker_tickets_are_ticket_references(ticket: str) -> None:
    assert check_ticket_reference(ticket) == ticket
    assert re.fullmatch(TICKET_REFERENCE, ticket)


@pytest.mark.parametrize("typed", ["Alice Smith", "alice", "ALICE", "alice@example.com", "030 1234567",
                                   "PRIV-4411\n", "priv-4411", "PRIV--4411", "#", "", "A" * 39 + "-1"])
def test_anything_else_is_not_a_ticket_reference(typed: str) -> None:
    with pytest.raises(FieldError, match="^ticket_reference: is not a ticket reference") as refused:
        check_ticket_reference(typed)
    assert str(refused.value) == f"ticket_reference: is not {TICKET_REFERENCE_RULE}"  # the rule, never the value


def test_dates_digests_and_staff_ids_have_their_shapes() -> None:
    today = datetime.now(UTC).date()
    assert check_iso_date("2026-11-20", "confirmed_on") == "2026-11-20"
    for bad, why in (("14.03.1985", "is not an ISO date"), ("2026-02-30", "is not a calendar date"),
                     ((today + timedelta(days=1)).isoformat(), "is later than")):
        with pytest.raises(FieldError, match=f"^confirmed_on: {why}"):
            check_iso_date(bad, "confirmed_on", not_after=today)
    assert check_sha256("ab" * 32, "evidence_sha256")
    with pytest.raises(FieldError, match="^evidence_sha256: is not a sha256"):
        check_sha256("AB" * 32, "evidence_sha256")
    for staff in ("api:42", "airflow:termination_offboarding", "counsel.1", "dpo-7"):
        assert check_staff_id(staff, "requested_by") == staff
    for bad in ("Alice Smith", "api:alice@example.com", "api:", ":x", "alice\n"):
        with pytest.raises(FieldError, match="^requested_by: is not a staff id"):
            check_staff_id(bad, "requested_by")
    assert isinstance(date.fromisoformat(check_iso_date("2024-02-29", "d")), date)


def test_a_known_field_of_the_wrong_shape_is_refused_whatever_it_contains() -> None:
    for payload, field in (({"requested_by": "Alice Smith"}, "requested_by"),
                           ({"confirmed_on": "the 14th"}, "confirmed_on"),
                           ({"reason_sha256": "not a digest"}, "reason_sha256"),
                           ({"approver_id": "Dr Alice"}, "approver_id"),
                           ({"reference": "Smith v. Acme"}, "reference")):
        with pytest.raises(PersonalDataError, match=re.escape(f"payload['{field}']")):
            refuse_personal_data(payload, "payload")
    refuse_personal_data({"requested_by": "api:7", "confirmed_on": "2026-11-20", "approver_id": "",
                          "reference": "OFF-1", "reason_sha256": "0" * 64}, "payload")


def test_a_refusal_fails_an_airflow_task_without_its_retries() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=r"^ticket_reference: is not a ticket reference"):
        with input_refusals_fail_the_task():
            check_ticket_reference("Alice Smith")
    with pytest.raises(AirflowFailException, match="looks like an IP address"):
        with input_refusals_fail_the_task():
            refuse_personal_data("203.0.113.7", "payload['x']")
    with pytest.raises(RuntimeError):  # not input: a passing fault stays retryable
        with input_refusals_fail_the_task():
            raise RuntimeError("the provider did not answer")


def test_an_offboarding_reference_is_a_ticket_at_the_edge() -> None:
    """The offboarding request's reference enters the chain (offboarding.requested): a typed sentence is refused
    when the conf is read, naming the field, before anything is planned."""
    from retention.offboarding.request import RequestError, parse_request

    request = {"account_id": "acct_1001", "choice": "delete"}
    assert parse_request({**request, "reference": "OFF-1001"}).reference == "OFF-1001"
    for typed in ("Alice Smith asked", "alice＠example.com", "OFF-1 030 1234567", "X1" * 21):
        with pytest.raises(RequestError, match=r"conf\.reference: ") as refused:
            parse_request({**request, "reference": typed})
        assert typed not in str(refused.value)
