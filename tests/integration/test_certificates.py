"""Deletion certificates from a real sweep's ledger: content backed by the ledger, canonical JSON signed
with Ed25519, offline verification that refuses any changed byte, key rotation, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import rfc8785
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention.certificates import (
    CertificateInvalid,
    KeySet,
    SigningKey,
    as_pdf,
    check_chain_head,
    issue,
    rotate,
    sign,
    verify,
    verify_file,
    verify_pdf,
)
from retention.cli import main
from retention.engine import SweepContext, sweep
from retention.ledger import Ledger
from retention.settings import Settings

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "acct_1001"
OUTPUT = REPO / "var" / "test-output"  # what a person looks at after the run: the sample certificate


@pytest.fixture
def swept(stack):
    """The stack after a real sweep: the run id."""
    with Ledger.open(stack.ledger_url) as ledger:
        report = sweep(SweepContext.load(Settings.from_env(), ledger), stack.now, dry_run=False, actor="test")
    return report.run_id


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


def issued(stack, run_id: str, key: SigningKey) -> bytes:
    with Ledger.open(stack.ledger_url) as ledger:
        return issue(ledger, run_id, ACCOUNT, key, exporter="Acme Ltd", importer="Service Inc.",
                     rules_dir=REPO / "retention_rules", actor="test")


def test_a_certificate_states_what_the_ledger_says_and_nothing_personal(stack, swept, key) -> None:
    document = issued(stack, swept, key)
    certificate = verify(document, KeySet((key.jwk,))).certificate

    with Ledger.open(stack.ledger_url) as ledger:
        tasks = [t for t in ledger.tasks(swept) if t.account_id == ACCOUNT]
        issued_event = [e for e in ledger.events() if e.kind == "certificate.issued"][-1]
        assert ledger.verify().ok
    lines = {(line["location"], line["data_class"]): line for line in certificate["locations"]}
    assert set(lines) == {(t.location, t.data_class) for t in tasks}
    for task in tasks:
        line = lines[(task.location, task.data_class)]
        assert line["records_affected"] == task.affected_count
        assert line["verification"]["remaining"] == task.residue
    assert sum(line["records_affected"] for line in certificate["locations"]) > 0
    categories = {line["store"]: line["nist_800_88"]["category"] for line in certificate["locations"]
                  if line["action"] == "delete"}
    assert categories["sql"] == "clear"
    # Held or skipped lines are exceptions, and an exception makes the certificate partial, never complete.
    assert (certificate["status"] == "complete") == (certificate["exceptions"] == [])
    assert certificate["run"]["run_id"] == swept and certificate["account_id"] == ACCOUNT
    assert certificate["ledger"]["chain_head_seq"] == issued_event.seq - 1
    assert issued_event.payload["certificate_id"] == certificate["certificate_id"]
    assert "@" not in document.decode()  # ids and counts only: no e-mail address, no record content


def test_the_chain_head_ties_the_certificate_to_the_ledger(stack, swept, key) -> None:
    verified = verify(issued(stack, swept, key), KeySet((key.jwk,)))
    with Ledger.open(stack.ledger_url) as ledger:
        check_chain_head(verified, ledger)
    other = f"sqlite:///{Path(stack.ledger_url.removeprefix('sqlite:///')).with_name('other.db')}"
    with Ledger.open(other) as unrelated:
        unrelated.append("test.event", {"n": 1}, actor="test")
        with pytest.raises(CertificateInvalid, match="ledger"):
            check_chain_head(verified, unrelated)


def test_a_dry_run_gets_no_certificate(stack, key) -> None:
    with Ledger.open(stack.ledger_url) as ledger:
        report = sweep(SweepContext.load(Settings.from_env(), ledger), stack.now, dry_run=True, actor="test")
    with pytest.raises(ValueError, match="dry run"):
        issued(stack, report.run_id, key)


# -- NIST 800-88 in the standard's own terms, VACUUM ----------------------------------------------------

def test_a_logical_deletion_is_at_most_clear_and_the_line_says_what_happens_physically(stack, swept, key) -> None:
    certificate = verify(issued(stack, swept, key), KeySet((key.jwk,))).certificate
    deleted = [line for line in certificate["locations"] if line["action"] == "delete"]
    assert {line["store"] for line in deleted} == {"sql", "s3"}
    for line in deleted:  # S3 DeleteObjects of every version is a logical deletion too: clear, never purge
        assert line["nist_800_88"]["category"] == "clear", line
    s3 = next(line for line in deleted if line["store"] == "s3")
    assert "provider" in s3["nist_800_88"]["physical"] and "not this product's" in s3["nist_800_88"]["physical"]
    sql = next(line for line in deleted if line["store"] == "sql")
    assert "until VACUUM" in sql["nist_800_88"]["physical"]
    assert "VACUUM (ANALYZE) ran on" in sql["nist_800_88"]["vacuum"]  # the sweep ran it after verification
    assert "purge" not in json.dumps(certificate)  # no crypto-erase happened in a sweep


@pytest.mark.postgres
def test_vacuum_runs_on_the_tables_a_verified_deletion_touched_and_is_recorded(stack, swept, key) -> None:
    from tests.integration.test_sweep_vacuum import vacuumed_by_postgres

    with Ledger.open(stack.ledger_url) as ledger:  # the sweep ran it once, after verification
        [event] = ledger.run_events(swept, "storage.vacuumed")
    assert event.payload["tables"] and event.payload["locations"]
    assert set(event.payload) == {"conn_id", "locations", "tables", "by_location", "command"}  # ids and names only
    tables = {t.split(".")[-1] for t in event.payload["tables"]}
    assert tables <= vacuumed_by_postgres(stack.app_url, tables)
    certificate = verify(issued(stack, swept, key), KeySet((key.jwk,))).certificate
    for line in certificate["locations"]:
        if line["location"] in event.payload["locations"]:
            own = ", ".join(event.payload["by_location"][line["location"]])
            assert f"VACUUM (ANALYZE) ran on {own} after verification" in line["nist_800_88"]["vacuum"]
            assert line["nist_800_88"]["category"] == "clear"  # VACUUM marks space reusable; it overwrites nothing


# -- the subprocessor section and the exceptions agree --------------------------------------------------

def test_a_pending_manual_request_and_a_held_erasure_are_stated_in_the_subprocessor_section(stack, swept, key) -> None:
    from retention.certificates.pdf import exception_text, render

    with Ledger.open(stack.ledger_url) as ledger:
        ledger.append("subprocessor.manual_requested", {
            "subprocessor": "sixsense", "account_id": ACCOUNT, "data_class": "visitor_profiles",
            "requested_by": "staff-1", "deadline": "2026-12-30T00:00:00+00:00"}, actor="test")
        ledger.append("subprocessor.held", {"subprocessor": "sentry", "resource": "events", "account_id": ACCOUNT,
                                            "data_class": "logs", "holds": ["hold-1"]}, actor="test")
        ledger.append("subprocessor.result", {  # the executor's summary of the stopped erasure follows it
            "subprocessor": "sentry", "resource": "events", "account_id": ACCOUNT, "data_class": "logs",
            "found": 4, "deleted": 0, "already_gone": 0, "not_deleted": 4, "jobs": 0, "status": "held",
            "holds": ["hold-1"]}, actor="test")
        ledger.append("subprocessor.held", {"subprocessor": "salesforce", "resource": "manual_request",
                                            "account_id": ACCOUNT, "data_class": "contact_data",
                                            "holds": ["hold-1"]}, actor="test")  # a manual request not opened
        ledger.append("subprocessor.result", {  # accepted by an erase job nobody can poll: its completion assumed
            "subprocessor": "sendgrid", "resource": "contacts", "account_id": ACCOUNT, "data_class": "email_delivery",
            "found": 3, "deleted": 3, "already_gone": 0, "not_deleted": 0, "jobs": 1, "status": "assumed",
            "assumed": True, "assumptions": ["erase_job_completes_in_30_days"],
            "complete_by": "2026-12-30T00:00:00+00:00"}, actor="test")
    document = issued(stack, swept, key)
    certificate = verify(document, KeySet((key.jwk,))).certificate
    lines = {(s["subprocessor"], s["resource"]): s for s in certificate["subprocessors"]}
    assert lines[("sixsense", "manual request")]["status"] == "requested"
    assert lines[("sentry", "events")]["status"] == "held" and lines[("sentry", "events")]["deleted"] == 0
    sub_exceptions = {(e["subprocessor"], e["resource"]): e for e in certificate["exceptions"]
                      if e["kind"].startswith("subprocessor_")}
    assert set(sub_exceptions) == {key for key, line in lines.items() if line["status"] not in ("verified", "attested")}
    assert sub_exceptions[("sentry", "events")]["kind"] == "subprocessor_held"
    assert lines[("salesforce", "manual request")]["status"] == "held"
    assert "kept under legal hold(s) hold-1" in exception_text(sub_exceptions[("sentry", "events")])
    assumed = sub_exceptions[("sendgrid", "contacts")]
    assert assumed["kind"] == "subprocessor_assumed" and assumed["assumptions"] == ["erase_job_completes_in_30_days"]
    assert "rests on our assumption(s) erase_job_completes_in_30_days" in exception_text(assumed)
    assert certificate["scope"]["subprocessors"] == ["salesforce", "sendgrid", "sentry", "sixsense"]

    import pypdfium2

    pdf = pypdfium2.PdfDocument(render(document, KeySet((key.jwk,))))
    text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    assert "No subprocessor erasure" not in text and "sixsense" in text and "sentry" in text


# -- supplements ------------------------------------------------------------------------------------

def _subprocessor_result(ledger: Ledger, status: str, **extra) -> None:
    ledger.append("subprocessor.result", {
        "subprocessor": "sendgrid", "resource": "recipient_erasure", "data_class": "email_delivery",
        "account_id": ACCOUNT, "found": 12, "deleted": 12, "already_gone": 0, "not_deleted": 0, "jobs": 1,
        "status": status, "verification": "after_completion", **extra}, actor="test")


def test_a_supplement_certifies_what_completed_later_and_names_the_original(stack, swept, key) -> None:
    import hashlib

    from retention.certificates import issue_supplement

    with Ledger.open(stack.ledger_url) as ledger:
        _subprocessor_result(ledger, "awaiting_provider", complete_by="2026-12-23T00:00:00+00:00")
    original = issued(stack, swept, key)
    certificate = verify(original, KeySet((key.jwk,))).certificate
    assert certificate["status"] == "partial"  # the erase job is accepted, not done: not certified
    assert [e["kind"] for e in certificate["exceptions"]] == ["subprocessor_awaiting_provider"]

    with Ledger.open(stack.ledger_url) as ledger:
        with pytest.raises(ValueError, match="nothing has completed"):
            issue_supplement(ledger, original, key, KeySet((key.jwk,)), actor="test")
        _subprocessor_result(ledger, "verified", verification="find_empty: 0 left")
        document = issue_supplement(ledger, original, key, KeySet((key.jwk,)), actor="test")
        recorded = [e for e in ledger.events() if e.kind == "certificate.supplemented"][-1].payload

    supplement = verify(document, KeySet((key.jwk,))).certificate
    assert supplement["supplements"] == {"certificate_id": certificate["certificate_id"],
                                         "sha256": hashlib.sha256(original).hexdigest()}
    assert supplement["status"] == "complete" and supplement["still_open"] == []
    assert [(r["subprocessor"], r["resolution"], r["evidence"]) for r in supplement["resolved"]] == \
        [("sendgrid", "verified", "find_empty: 0 left")]
    assert recorded["supplement_id"] == supplement["supplement_id"] and recorded["resolved"] == 1
    with pytest.raises(CertificateInvalid):  # a tampered original is not supplemented
        with Ledger.open(stack.ledger_url) as ledger:
            issue_supplement(ledger, original.replace(b"acct_1001", b"acct_2002", 1), key, KeySet((key.jwk,)),
                             actor="test")


# -- the PDF -----------------------------------------------------------------------------------------

def test_the_pdf_is_signed_carries_the_signed_json_and_reads_as_the_certificate(stack, swept, key) -> None:
    import pypdfium2

    document = issued(stack, swept, key)
    pdf = as_pdf(document, key)
    verified = verify_pdf(pdf, KeySet((key.jwk,)))
    assert verified.certificate == json.loads(document)["certificate"] and verified.kid == key.kid
    assert verify_file(pdf, KeySet((key.jwk,))).certificate == verified.certificate

    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "sample-certificate.pdf").write_bytes(pdf)
    (OUTPUT / "sample-certificate.json").write_bytes(document)
    KeySet((key.jwk,)).write(OUTPUT / "sample-jwks.json")
    page = pypdfium2.PdfDocument(pdf)[0]
    text = page.get_textpage().get_text_range()
    assert "Certificate of deletion" in text and verified.certificate["certificate_id"] in text
    for line in verified.certificate["locations"]:
        assert line["location"] in text
    registry = verified.certificate["registry"]  # which account registry the run acted on
    assert "Account registry" in text and f"{registry['source']}, {registry['accounts']:,} accounts" in text
    image = page.render(scale=1.5).to_pil()
    image.save(OUTPUT / "sample-certificate.png")
    assert image.convert("L").getextrema()[0] < 64  # something was drawn


def _signature_hex(pdf: bytes) -> tuple[int, int]:
    start = pdf.index(b"/Contents <") + len(b"/Contents <")
    return start, pdf.index(b">", start)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_byte_of_the_pdf_fails_verification(key, data) -> None:
    pdf = _sample_pdf(key)
    start, end = _signature_hex(pdf)
    position = data.draw(st.integers(0, len(pdf) - 1))
    if start <= position < end:  # inside the signature itself: change one hex digit to another
        replacement = b"0" if pdf[position:position + 1] != b"0" else b"1"
    else:
        replacement = bytes([data.draw(st.integers(0, 255).filter(lambda b: b != pdf[position]))])
    with pytest.raises(CertificateInvalid):
        verify_pdf(pdf[:position] + replacement + pdf[position + 1:], KeySet((key.jwk,)))


def test_a_changed_signature_or_padding_byte_fails_verification(key) -> None:
    # The signature field lies outside the signed byte range: its DER and its zero padding are
    # checked on their own. Positions spread over the whole field, then its end (padding).
    pdf = _sample_pdf(key)
    start, end = _signature_hex(pdf)
    positions = sorted(set(range(start, end, max(1, (end - start) // 60))) | set(range(end - 40, end)))
    for position in positions:
        replacement = b"0" if pdf[position:position + 1] != b"0" else b"1"
        with pytest.raises(CertificateInvalid):
            verify_pdf(pdf[:position] + replacement + pdf[position + 1:], KeySet((key.jwk,)))


def test_content_appended_after_signing_or_a_foreign_key_is_refused(key) -> None:
    pdf = _sample_pdf(key)
    with pytest.raises(CertificateInvalid, match="not the entire file|changed"):
        verify_pdf(pdf + b"\n% appended after signing\n", KeySet((key.jwk,)))
    with pytest.raises(CertificateInvalid, match="not in the public key set"):
        verify_pdf(pdf, KeySet((SigningKey.generate().jwk,)))


_PDFS: dict[str, bytes] = {}


def _sample_pdf(key: SigningKey) -> bytes:
    if key.kid not in _PDFS:
        _PDFS[key.kid] = as_pdf(sign(SAMPLE, key), key)
    return _PDFS[key.kid]


# -- integrity, without a database -----------------------------------------------------------------

SAMPLE = {  # the shape build() makes, for the PDF tests that need no database
    "schema": "v1", "certificate_id": "cert-sample", "issued_at": "2026-11-23T12:00:00+00:00",
    "legal_basis": ["DPA 7(b)"], "data_exporter": "Acme Ltd", "data_importer": "Service Inc.",
    "account_id": "acct_1001", "status": "complete",
    "scope": {"data_classes": ["chat_transcripts"], "locations": 1, "subprocessors": []},
    "run": {"run_id": "r1", "kind": "sweep", "as_of": "2026-11-23T12:00:00+00:00",
            "started_at": "2026-11-23T12:00:00+00:00", "finished_at": "2026-11-23T12:00:02+00:00",
            "status": "succeeded", "rules_digest": "ab" * 32,
            "tool": {"product": "retention-orchestrator", "version": "0.1.0", "dag_id": None, "airflow_run_id": None}},
    "locations": [{"location": "chat_conversations", "store": "sql", "data_class": "chat_transcripts",
                   "rule_id": "r", "action": "delete", "cutoff": None,
                   "nist_800_88": {"category": "clear", "method": "logical delete"}, "records_affected": 12,
                   "started_at": "2026-11-23T12:00:00+00:00", "finished_at": "2026-11-23T12:00:01+00:00",
                   "verification": {"method": "re-query", "remaining": 0, "result": "verified"}}],
    "subprocessors": [], "exceptions": [],
    "ledger": {"chain_head_seq": 5, "chain_head_hash": "cd" * 32, "hash": "sha256"},
}
CONTENT = {"certificate_id": "cert-1", "account_id": "acct_1", "status": "complete",
           "locations": [{"location": "app.chat", "records_affected": 1200, "remaining": 0}], "note": "ümlaut"}


def test_a_signed_document_verifies_and_is_canonical(key) -> None:
    document = sign(CONTENT, key)
    assert document == rfc8785.dumps(json.loads(document))
    assert verify(document, KeySet((key.jwk,))).certificate == CONTENT


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_byte_fails_verification_with_a_reason(key, data) -> None:
    document = sign(CONTENT, key)
    position = data.draw(st.integers(0, len(document) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != document[position]))
    tampered = document[:position] + bytes([replacement]) + document[position + 1:]
    with pytest.raises(CertificateInvalid) as refused:
        verify(tampered, KeySet((key.jwk,)))
    assert str(refused.value)  # a reason, whatever the byte


@pytest.mark.parametrize("change, reason", [
    (lambda d: d.replace(b'"records_affected":1200', b'"records_affected":1300'), "signature does not match"),
    (lambda d: d.replace(b'{"certificate":', b'{ "certificate":'), "canonical"),
    (lambda d: d[:-1], "not a JSON document"),
    (lambda d: d.replace(b'"alg":"EdDSA"', b'"alg":"ES256"'), "algorithm"),
])
def test_each_kind_of_tampering_is_named(key, change, reason) -> None:
    with pytest.raises(CertificateInvalid, match=reason):
        verify(change(sign(CONTENT, key)), KeySet((key.jwk,)))


def test_an_unknown_key_or_a_kid_that_is_not_the_keys_thumbprint_is_refused(key) -> None:
    other = SigningKey.generate()
    with pytest.raises(CertificateInvalid, match="not in the public key set"):
        verify(sign(CONTENT, other), KeySet((key.jwk,)))
    impostor = {**other.jwk, "kid": key.kid}  # someone else's key published under our kid
    with pytest.raises(CertificateInvalid, match="not in the public key set"):
        verify(sign(CONTENT, key), KeySet((impostor,)))


def test_after_rotation_old_certificates_still_verify(tmp_path) -> None:
    key_file, jwks_file = tmp_path / "signing.pem", tmp_path / "jwks.json"
    first = rotate(key_file, jwks_file)
    old_document = sign({**CONTENT, "issued_at": datetime.now(UTC).isoformat()}, first)  # issued before rotation
    second = rotate(key_file, jwks_file)

    keys = KeySet.read(jwks_file)
    assert first.kid != second.kid and {k["kid"] for k in keys.keys} == {first.kid, second.kid}
    assert [k for k in keys.keys if k["kid"] == first.kid][0]["retired"]
    assert verify(old_document, keys).kid == first.kid
    assert verify(sign(CONTENT, second), keys).kid == second.kid
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert "PRIVATE" not in jwks_file.read_text() and '"d"' not in jwks_file.read_text()


# -- the CLI ----------------------------------------------------------------------------------------

def test_the_cli_issues_and_verifies_and_names_what_is_wrong(stack, swept, tmp_path) -> None:
    runner = CliRunner()
    key_file, jwks_file, out = tmp_path / "signing.pem", tmp_path / "jwks.json", tmp_path / "cert.json"
    assert runner.invoke(main, ["certificate", "rotate-key", "--key-file", str(key_file),
                                "--jwks", str(jwks_file)]).exit_code == 0
    made = runner.invoke(main, ["certificate", "issue", swept, ACCOUNT, "--exporter", "Acme Ltd",
                                "--importer", "Service Inc.", "--out", str(out),
                                "--key-file", str(key_file)])
    assert made.exit_code == 0, made.output

    ok = runner.invoke(main, ["certificate", "verify", str(out), "--jwks", str(jwks_file), "--ledger"])
    assert ok.exit_code == 0 and "valid" in ok.output and "chain head matches" in ok.output

    out.write_bytes(out.read_bytes().replace(b'"account_id":"acct_1001"', b'"account_id":"acct_2002"', 1))
    bad = runner.invoke(main, ["certificate", "verify", str(out), "--jwks", str(jwks_file), "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.output) == {"ok": False, "file": str(out),
                                      "reason": json.loads(bad.output)["reason"]}
    assert "signature does not match" in json.loads(bad.output)["reason"]


def test_the_sample_in_docs_verifies() -> None:
    keys = KeySet.read(REPO / "docs" / "sample-jwks.json")
    pdf = verify_file((REPO / "docs" / "sample-certificate.pdf").read_bytes(), keys)
    original = verify_file((REPO / "docs" / "sample-certificate.json").read_bytes(), keys)
    assert pdf.certificate == original.certificate
