"""The signed certificate of one data subject's erasure, built from the request's and its run's ledger events
(written through the ledger API as the request's steps write them): what was found, erased, anonymized or kept
where and why, the subprocessors' results for this request, pending items as exceptions, offline verification of
the JSON and the PDF, and never an identifier in clear."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pypdfium2
import pytest
import rfc8785

from retention.certificates import (
    CertificateInvalid,
    KeySet,
    SigningKey,
    as_pdf,
    check_chain_head,
    issue_supplement,
    verify,
    verify_file,
)
from retention.certificates.archive import Archive, issued
from retention.certificates.subject import issue_subject_certificate
from retention.certificates.supplement import NothingToSupplement
from retention.identifier_hashes import subject_hashes
from retention.ledger import Ledger
from retention.rules.subjects import Subject
from tests.fixtures.ledger_writer import SubjectRunWriter

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "acct_1001"
OUTPUT = REPO / "var" / "test-output"
EMAIL = "visitor-00000042@example.invalid"
VISITOR = "v-5f2c9a11e0"
INVOICE_BASIS = "DE §147 AO, §257 HGB; CH OR art. 958f"

FOUND = [  # (location, data class, matched, action, rule)
    ("app_users", "user_accounts", 1, "anonymize", "user-accounts-in-service"),
    ("chat_attachments", "chat_transcripts", 2, "delete", "chat-transcripts-in-service"),
    ("chat_conversations", "chat_transcripts", 3, "delete", "chat-transcripts-in-service"),
    ("contacts", "contact_records", 1, "delete", "contact-records-in-service"),
    ("email_events", "email_delivery", 5, "delete", "email-delivery-all-states"),
    ("meetings", "meeting_bookings", 0, "delete", "meeting-bookings-in-service"),
    ("page_views", "visitor_activity", 14, "delete", "visitor-activity-in-service"),
    ("visitors", "visitor_profiles", 1, "delete", "visitor-profiles-european"),
    ("invoices_isolated", "billing_records", 0, "keep", "billing-records-terminated-eea-ch"),
]
NOT_SEARCHABLE = [  # the demo inventory's locations that declare no identifier to find one person by
    {"location": "call_recordings", "store": "s3", "data_class": "call_recordings", "identifier_kinds": []},
    {"location": "crm_sync_queue", "store": "sql", "data_class": "crm_sync_records", "identifier_kinds": []}]
KEPT = {"location": "invoices", "data_class": "billing_records", "matched": 2, "action": "keep",
        "rule_id": "billing-records-in-service-eea-ch", "basis": INVOICE_BASIS,
        "skip_reason": f"kept under law: {INVOICE_BASIS} (P10Y)"}
SUBPROCESSORS = [{"subprocessor": "sendgrid", "scope": "api", "matched": 2},
                 {"subprocessor": "sentry", "scope": "none", "matched": None},
                 {"subprocessor": "twilio", "scope": "api", "matched": 0}]


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def hash_key() -> bytes:
    return os.urandom(32)


def filed(ledger: Ledger, hash_key: bytes) -> SubjectRunWriter:
    writer = SubjectRunWriter.file(ledger, hash_key, ACCOUNT, Subject.of({"email": [EMAIL]}))
    writer.expand({"visitor_id": [VISITOR]})
    return writer


def previewed(writer: SubjectRunWriter, matched: list[tuple[str, str, int, str, str]], *, kept: bool = True,
              subprocessors: list[dict[str, object]] = SUBPROCESSORS) -> dict[str, str]:
    lines = [{"location": loc, "data_class": dc, "matched": n, "action": action, "rule_id": rule, "basis": None}
             for loc, dc, n, action, rule in matched]
    return writer.preview(lines + ([KEPT] if kept else []), subprocessors)


def certificate_of(ledger: Ledger, writer: SubjectRunWriter, key: SigningKey) -> bytes:
    return issue_subject_certificate(ledger, writer.request_id, key, exporter="Acme Ltd", importer="Service Inc.",
                                     rules_dir=REPO / "retention_rules", actor="dag-subject_request")


def pdf_text(pdf: bytes) -> str:
    document = pypdfium2.PdfDocument(pdf)
    text = "".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
    return " ".join(text.split())  # a table cell wraps its text: compare words


def test_a_full_erasure_is_certified_complete_per_location_with_the_kept_invoices_and_no_identifier(
        ledger: Ledger, hash_key: bytes, key: SigningKey, tmp_path: Path) -> None:
    writer = filed(ledger, hash_key)
    tasks = previewed(writer, FOUND)
    writer.approve(total=29)
    for location, _, matched, _, _ in FOUND:
        if matched:
            writer.erase(tasks[location], matched)
    writer.at_subprocessor("sendgrid", "erased", 2)
    writer.at_subprocessor("twilio", "unsupported", 0)  # it finds people by phone only: stated, never as erased
    writer.close("completed")
    document = certificate_of(ledger, writer, key)

    keys = KeySet((key.jwk,))
    pdf = as_pdf(document, key)
    certificate = verify_file(document, keys).certificate
    assert verify_file(pdf, keys).certificate == certificate  # the PDF carries the same signed original
    assert certificate["status"] == "complete" and certificate["exceptions"] == []
    assert certificate["kind"] == "subject_erasure" and certificate["account_id"] == ACCOUNT
    lines = {line["location"]: line for line in certificate["locations"]}
    assert set(lines) == {loc for loc, *_ in FOUND} | {"invoices"}
    for location, _, matched, action, _ in FOUND:
        assert lines[location]["found"] == matched
        if matched:
            assert lines[location]["action"] == action and lines[location]["records_affected"] == matched
            assert lines[location]["verification"] == {
                "method": "re-query of the location by the request's identifiers after erasure", "remaining": 0,
                "result": "verified"}
            assert lines[location]["nist_800_88"]["category"] == "clear"  # SQL and S3 alike: a logical deletion
    assert lines["meetings"]["verification"]["result"] == "nothing_found" and lines["meetings"]["action"] == "none"
    assert lines["app_users"]["nist_800_88"]["method"].startswith("identifying columns nulled")
    assert lines["chat_attachments"]["store"] == "s3" and lines["chat_conversations"]["store"] == "sql"
    assert lines["invoices"]["action"] == "keep" and lines["invoices"]["records_affected"] == 0
    assert certificate["kept_under_law"] == [{"location": "invoices", "data_class": "billing_records",
                                              "rule_id": "billing-records-in-service-eea-ch", "records": 2,
                                              "basis": INVOICE_BASIS}]
    assert certificate["subprocessors"] == [
        {"subprocessor": "sendgrid", "scope": "api", "matched": 2, "outcome": "erased", "count": 2,
         "recorded_at": certificate["subprocessors"][0]["recorded_at"]},
        {"subprocessor": "sentry", "scope": "none", "matched": None, "outcome": "not_applicable", "count": None,
         "recorded_at": None},
        {"subprocessor": "twilio", "scope": "api", "matched": 0, "outcome": "unsupported", "count": 0,
         "recorded_at": certificate["subprocessors"][2]["recorded_at"]}]
    assert certificate["not_searchable"] == NOT_SEARCHABLE
    request = certificate["request"]
    assert request["identifier_hashes"] == subject_hashes(hash_key, ACCOUNT, Subject.of({"email": [EMAIL]}))
    assert request["type"] == "erasure" and request["regime"] == "gdpr"
    assert certificate["expansion"]["given"] == 1 and certificate["expansion"]["expanded"] == 2
    assert certificate["expansion"]["by_kind"] == {"email": 1, "visitor_id": 1}
    assert certificate["scope"]["records_found"] == 29 and not certificate["scope"]["nothing_found"]
    assert "GDPR Art. 17 (right to erasure), Art. 28(3)(e)" in certificate["legal_basis"]

    OUTPUT.mkdir(parents=True, exist_ok=True)  # what a person looks at after the run: the sample certificate
    (OUTPUT / "sample-subject-certificate.pdf").write_bytes(pdf)
    (OUTPUT / "sample-subject-certificate.json").write_bytes(document)
    for number, page in enumerate(pypdfium2.PdfDocument(pdf), start=1):
        page.render(scale=1.5).to_pil().save(OUTPUT / f"sample-subject-certificate-{number}.png")
    text = pdf_text(pdf)
    assert "Certificate of erasure" in text and "invoices" in text and "§147 AO" in text
    assert "call_recordings" in text and "cannot be searched by the request's identifiers" in text
    for identifier in (EMAIL, VISITOR, "example.invalid"):  # keyed hashes only, in the JSON and the PDF alike
        assert identifier not in document.decode() and identifier not in text
    assert request["identifier_hashes"][0] in text.replace(" ", "")  # a hash may wrap at a line's end

    check_chain_head(verify(document, keys), ledger)  # the chain head it names is the ledger's own
    certified = ledger.events_of_kind("subject.certified")
    assert [e.payload for e in certified] == [{"request_id": writer.request_id,
                                              "certificate_id": certificate["certificate_id"], "status": "complete"}]
    archive = Archive(tmp_path / "certificates")
    assert archive.save(document, pdf) == certificate["certificate_id"]
    listed = issued(ledger, ACCOUNT)[certificate["certificate_id"]]
    assert (listed.kind, listed.request_id, listed.status) == ("subject_erasure", writer.request_id, "complete")
    assert archive.load(listed.certificate_id, "pdf") == pdf


def test_a_held_task_and_a_manual_subprocessor_make_it_partial_until_a_supplement_resolves_the_manual_one(
        ledger: Ledger, hash_key: bytes, key: SigningKey) -> None:
    from retention.certificates.subject_pdf import subject_exception_text

    hold = ledger.place_hold(account_id=ACCOUNT, data_class="email_delivery", reason="litigation",
                             reference="LIT-7", placed_by="staff-2")
    writer = filed(ledger, hash_key)
    contacts_held = {"location": "contacts", "data_class": "contact_records", "matched": 1, "action": "keep",
                     "rule_id": "contact-records-in-service", "basis": "legal hold hold-contacts in force",
                     "skip_reason": "legal hold hold-contacts in force"}  # a hold in force when it was planned
    tasks = writer.preview([*({"location": loc, "data_class": dc, "matched": n, "action": action, "rule_id": rule,
                               "basis": None} for loc, dc, n, action, rule in FOUND if loc != "contacts"),
                            contacts_held, KEPT],
                           [*SUBPROCESSORS, {"subprocessor": "sixsense", "scope": "manual", "matched": None}])
    writer.approve(total=29)
    for location, _, matched, _, _ in FOUND:
        if location == "email_events":  # a hold placed after planning: the engine holds the task
            writer.hold(tasks[location], [hold.id])
        elif matched and location != "contacts":
            writer.erase(tasks[location], matched)
    writer.at_subprocessor("sendgrid", "erased", 2)
    writer.at_subprocessor("sixsense", "manual", 0)
    writer.close("held")
    original = certificate_of(ledger, writer, key)
    keys = KeySet((key.jwk,))

    certificate = verify_file(original, keys).certificate
    assert certificate["status"] == "partial"
    assert certificate["exceptions"] == [
        {"kind": "legal_hold", "location": "contacts", "data_class": "contact_records",
         "reason": "legal hold hold-contacts in force"},
        {"kind": "held", "location": "email_events", "data_class": "email_delivery", "holds": [hold.id],
         "erased_before_hold": 0},
        {"kind": "subprocessor_manual", "subprocessor": "sixsense", "scope": "manual", "matched": None}]
    lines = {line["location"]: line for line in certificate["locations"]}
    assert lines["email_events"]["verification"]["result"] == "held"
    assert lines["email_events"]["records_affected"] == 0
    text = pdf_text(as_pdf(original, key))
    assert "PARTIAL" in text and hold.id in text and "sixsense" in text
    assert "a supplement follows" in subject_exception_text(certificate["exceptions"][2])
    assert [k["location"] for k in certificate["kept_under_law"]] == ["invoices"]  # a hold is not the law's keeping

    # A person files the erasure with the provider and records its confirmation: the supplement resolves it.
    writer.at_subprocessor("sixsense", "erased", 1, actor="staff-2")
    supplement = verify(issue_supplement(ledger, original, key, keys, actor="staff-2"), keys).certificate
    assert supplement["supplements"]["certificate_id"] == certificate["certificate_id"]
    assert [(e["kind"], e["resolution"]) for e in supplement["resolved"]] == [("subprocessor_manual", "erased")]
    assert [e["kind"] for e in supplement["still_open"]] == ["legal_hold", "held"]
    assert supplement["status"] == "partial"


def test_a_subprocessor_answer_belongs_to_its_run_and_a_later_run_of_the_request_supplements_the_earlier(
        ledger: Ledger, hash_key: bytes, key: SigningKey) -> None:
    """A hold stops the erasure at SendGrid (Twilio erases): the request closes held and its certificate lists
    SendGrid held. Run again once the hold ended, the second run's certificate states only its own run's answers
    (neither provider answered yet in it), and the second run's erasure at SendGrid supplements both certificates;
    the first run's Twilio answer resolves nothing in the second's."""
    keys = KeySet((key.jwk,))
    asked: list[dict[str, object]] = [{"subprocessor": "sendgrid", "scope": "api", "matched": 2},
                                      {"subprocessor": "twilio", "scope": "api", "matched": 1}]
    writer = filed(ledger, hash_key)
    tasks = previewed(writer, FOUND, subprocessors=asked)
    writer.approve(total=30)
    for location, _, matched, _, _ in FOUND:
        if matched:
            writer.erase(tasks[location], matched)
    writer.at_subprocessor("sendgrid", "held", 0)
    writer.at_subprocessor("twilio", "erased", 1)
    writer.close("held")
    first = certificate_of(ledger, writer, key)
    assert [(e["kind"], e.get("subprocessor")) for e in verify_file(first, keys).certificate["exceptions"]] == [
        ("subprocessor_held", "sendgrid")]
    with pytest.raises(NothingToSupplement):  # its own run's answer does not resolve it
        issue_supplement(ledger, first, key, keys, actor="staff-2")

    writer.expand({"visitor_id": [VISITOR]})  # the hold ended: the request is run again, a new preview and run
    earlier_run = writer.run_id
    nothing_left = [(loc, dc, 0, action, rule) for loc, dc, _, action, rule in FOUND]
    assert previewed(writer, nothing_left, kept=False, subprocessors=asked) == {} and writer.run_id != earlier_run
    writer.approve(total=3)
    second = certificate_of(ledger, writer, key)
    lines = verify_file(second, keys).certificate["subprocessors"]
    assert [(s["subprocessor"], s["outcome"], s["recorded_at"]) for s in lines] == [
        ("sendgrid", "not_run", None), ("twilio", "not_run", None)]  # not the first run's "held" and "erased"

    writer.at_subprocessor("sendgrid", "erased", 2)  # recorded in the second run
    supplement = verify(issue_supplement(ledger, first, key, keys, actor="staff-2"), keys).certificate
    assert [(e["subprocessor"], e["resolution"]) for e in supplement["resolved"]] == [("sendgrid", "erased")]
    assert supplement["status"] == "complete" and supplement["still_open"] == []
    supplement = verify(issue_supplement(ledger, second, key, keys, actor="staff-2"), keys).certificate
    assert [(e["subprocessor"], e["resolution"]) for e in supplement["resolved"]] == [("sendgrid", "erased")]
    assert [(e["kind"], e["subprocessor"]) for e in supplement["still_open"]] == [("subprocessor_not_run", "twilio")]


def test_an_answer_recorded_without_its_run_before_the_upgrade_still_counts_for_the_request_under_way(
        ledger: Ledger, hash_key: bytes, key: SigningKey) -> None:
    """A request under way across the upgrade that gave subject.subprocessor events their run: its answers recorded
    without a run after its preview are still its run's (as they were read then); another request's are not."""
    asked: list[dict[str, object]] = [{"subprocessor": "sendgrid", "scope": "api", "matched": 2}]
    other = filed(ledger, hash_key)
    previewed(other, FOUND, subprocessors=asked)
    writer = filed(ledger, hash_key)
    tasks = previewed(writer, FOUND, subprocessors=asked)
    writer.approve(total=31)
    for location, _, matched, _, _ in FOUND:
        if matched:
            writer.erase(tasks[location], matched)
    other.at_subprocessor("sendgrid", "held", 0, in_run=False)  # another request's answer, after this preview
    writer.at_subprocessor("sendgrid", "erased", 2, in_run=False)
    assert [(e.payload["request_id"], e.payload["outcome"]) for e in ledger.run_answers(writer.request_id,
                                                                                        writer.run_id)] == [
        (writer.request_id, "erased")]
    writer.close("completed")
    certificate = verify_file(certificate_of(ledger, writer, key), KeySet((key.jwk,))).certificate
    assert [(s["subprocessor"], s["outcome"]) for s in certificate["subprocessors"]] == [("sendgrid", "erased")]
    assert certificate["status"] == "complete"


def test_a_request_that_found_nothing_is_certified_complete_with_every_place_checked_at_zero(
        ledger: Ledger, hash_key: bytes, key: SigningKey) -> None:
    writer = filed(ledger, hash_key)
    nothing = [(loc, dc, 0, action, rule) for loc, dc, _, action, rule in FOUND]
    subprocessors: list[dict[str, object]] = [{"subprocessor": "sendgrid", "scope": "api", "matched": 0},
                                              {"subprocessor": "sentry", "scope": "none", "matched": None}]
    assert previewed(writer, nothing, kept=False, subprocessors=subprocessors) == {}
    writer.close("nothing_found", ("subject.nothing_found", {"locations_checked": len(nothing),
                                                             "subprocessors_checked": 2}))
    document = certificate_of(ledger, writer, key)

    certificate = verify_file(document, KeySet((key.jwk,))).certificate
    assert certificate["status"] == "complete" and certificate["exceptions"] == []
    assert certificate["scope"]["nothing_found"] and certificate["scope"]["records_found"] == 0
    assert [(line["location"], line["found"], line["verification"]["result"]) for line in certificate["locations"]] \
        == [(loc, 0, "nothing_found") for loc in sorted(loc for loc, *_ in FOUND)]
    assert [(s["subprocessor"], s["matched"], s["outcome"]) for s in certificate["subprocessors"]] == [
        ("sendgrid", 0, "nothing_found"), ("sentry", None, "not_applicable")]
    assert certificate["scope"]["subprocessors_checked"] == ["sendgrid", "sentry"]
    text = pdf_text(as_pdf(document, key))
    assert "nothing of this person was found at any location or subprocessor checked" in text


def test_a_changed_byte_or_a_changed_count_breaks_verification(ledger: Ledger, hash_key: bytes,
                                                                key: SigningKey) -> None:
    writer = filed(ledger, hash_key)
    tasks = previewed(writer, FOUND)
    writer.approve(total=29)
    for location, _, matched, _, _ in FOUND:
        if matched:
            writer.erase(tasks[location], matched)
    writer.at_subprocessor("sendgrid", "erased", 2)
    document = certificate_of(ledger, writer, key)
    keys = KeySet((key.jwk,))
    verify_file(document, keys)

    signed = json.loads(document)
    signed["certificate"]["kept_under_law"] = []  # hide what was kept, re-serialized canonically
    with pytest.raises(CertificateInvalid, match="signature does not match"):
        verify_file(rfc8785.dumps(signed), keys)
    assert b'"found":14' in document
    with pytest.raises(CertificateInvalid):
        verify_file(document.replace(b'"found":14', b'"found":41'), keys)
    other = SigningKey.generate()
    with pytest.raises(CertificateInvalid, match="not in the public key set"):
        verify_file(as_pdf(document, key), KeySet((other.jwk,)))


def test_only_an_erasure_that_was_searched_gets_a_certificate(ledger: Ledger, hash_key: bytes,
                                                               key: SigningKey) -> None:
    writer = filed(ledger, hash_key)
    with pytest.raises(ValueError, match="is expanded"):
        certificate_of(ledger, writer, key)
    access = ledger.file_subject_request(
        account_id=ACCOUNT, request_type="access", regime="gdpr", received_at=writer.ledger.subject_request(
            writer.request_id).received_at, deadline_at=writer.ledger.subject_request(writer.request_id).deadline_at,
        reference="DSR-2026-0043", subject=Subject.of({"email": [EMAIL]}),
        identifier_hashes=subject_hashes(hash_key, ACCOUNT, Subject.of({"email": [EMAIL]})), filed_by="staff-1")
    with pytest.raises(ValueError, match="access request"):
        issue_subject_certificate(ledger, access, key, exporter="Acme Ltd", importer="Service Inc.",
                                  rules_dir=REPO / "retention_rules", actor="test")
    assert ledger.events_of_kind("certificate.issued", "subject.certified") == []
