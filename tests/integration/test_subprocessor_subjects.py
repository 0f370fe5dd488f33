"""One person's records at the subprocessors: preview, erase, export (subject scope), and an account's export,
through the shipped specs against the emulators over loopback HTTP, with a real ledger."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pendulum
import pytest

from retention.ledger import Ledger
from retention.rules.errors import RulesError
from retention.rules.subjects import Subject
from retention.subprocessors import load_spec
from retention.subprocessors.subjects import erase, export, export_account, preview
from tests.emulators.openai import TOKEN as OPENAI_TOKEN
from tests.emulators.openai import OpenAIEmulator
from tests.emulators.salesforce import CLIENT_ID, CLIENT_SECRET, SalesforceEmulator
from tests.emulators.sendgrid import KEY, PARENT, SendGridEmulator
from tests.emulators.twilio import PARENT as TWILIO_PARENT
from tests.emulators.twilio import TOKEN as TWILIO_TOKEN
from tests.emulators.twilio import TwilioEmulator
from tests.fixtures.subprocessors import RULES, demo_people, seed_people

TENANT, OTHER = "acct-subject-a", "acct-subject-b"
PEOPLE = demo_people([TENANT, OTHER], TENANT, 3)  # as the demo seed would write them for these accounts
PERSON = PEOPLE[0]
SUBJECT = Subject.of({"email": [PERSON.email], "phone": [PERSON.phone]})


def _connection(monkeypatch, conn_id: str, emulator, **secrets: str) -> None:
    host, port = emulator.url.removeprefix("http://").split(":")
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "http", "host": host, "port": int(port), "schema": "http", **secrets}))


@pytest.fixture
def providers(monkeypatch):
    """SendGrid, Twilio and Salesforce emulators; the account's people and the same first person at another
    account (and, at SendGrid and Salesforce, in the processor's own data), the Connections pointed at them."""
    with SendGridEmulator(pending_polls=1) as sendgrid, TwilioEmulator() as twilio, \
            SalesforceEmulator() as salesforce:
        sendgrid.add_tenant(TENANT, contacts=4)
        sendgrid.add_tenant(OTHER, contacts=2)
        twilio.add_tenant(TENANT, recordings=2, messages=3)
        twilio.add_tenant(OTHER, recordings=1, messages=1)
        salesforce.add_tenant(TENANT, leads=2, contacts=2)
        seed_people(TENANT, PEOPLE, sendgrid=sendgrid, twilio=twilio, salesforce=salesforce)
        seed_people(OTHER, [PERSON], sendgrid=sendgrid, twilio=twilio, salesforce=salesforce)
        sendgrid.add_person(PARENT, PERSON.email)
        salesforce.add_person(None, PERSON.email)
        _connection(monkeypatch, "sendgrid", sendgrid, password=KEY)
        _connection(monkeypatch, "twilio", twilio, login=TWILIO_PARENT, password=TWILIO_TOKEN)
        _connection(monkeypatch, "salesforce", salesforce, login=CLIENT_ID, password=CLIENT_SECRET)
        monkeypatch.setenv("RETENTION_RULES_DIR", str(RULES))
        yield {"sendgrid": sendgrid, "twilio": twilio, "salesforce": salesforce}


@pytest.fixture
def ledger(tmp_path):
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()


def _request_run(ledger: Ledger) -> str:
    """A subject request's ledger run, as its preview starts one: where the closing events are recorded."""
    return ledger.start_run("subject_request", dry_run=False, as_of=pendulum.now("UTC"), rules_digest="0" * 64,
                            actor="test")


def _identifiers_in_ledger(ledger: Ledger) -> list[str]:
    text = json.dumps([e.payload for e in ledger.events()])
    return [value for value in (PERSON.email, PERSON.phone, PERSON.phone.lstrip("+")) if value in text]


def test_preview_counts_only_the_persons_records_within_the_account(providers):
    # A contact, a bounce and the address in the activity feed: not OTHER's, not the parent account's own.
    assert preview("sendgrid", TENANT, SUBJECT).matched == 3
    assert preview("twilio", TENANT, SUBJECT).matched == 2  # one message to them, one from them
    assert preview("salesforce", TENANT, SUBJECT).matched == 2  # a lead and a contact of this account
    assert preview("salesforce", OTHER, SUBJECT).matched == 2
    nobody = Subject.of({"email": ["nobody@example.invalid"], "phone": ["+15550000001"]})
    assert preview("sendgrid", TENANT, nobody).matched == 0
    assert preview("sendgrid", TENANT, nobody).scope == "api"


def test_erase_leaves_none_of_the_persons_records_and_touches_nobody_else(providers, ledger):
    sendgrid, twilio, salesforce = providers["sendgrid"], providers["twilio"], providers["salesforce"]
    before = {name: emulator.remaining(TENANT) for name, emulator in providers.items()}
    other_before = {name: emulator.remaining(OTHER) for name, emulator in providers.items()}
    parent_contacts, own_records = len(sendgrid.contacts[PARENT]), salesforce.own_remaining()

    run_id = _request_run(ledger)
    results = {name: erase(ledger, "req-1", name, TENANT, SUBJECT, run_id=run_id, actor="test")
               for name in ("sendgrid", "twilio", "salesforce")}

    assert results["sendgrid"]["outcome"] == "erased" and results["sendgrid"]["count"] == 3
    assert results["sendgrid"]["resources"] == {"bounces": "verified", "contacts": "verified",
                                                "recipient_erasure": "assumed"}
    assert results["twilio"]["outcome"] == "erased" and results["twilio"]["count"] == 2
    assert results["twilio"]["unsupported"] == ["conversations", "recordings"]
    assert results["salesforce"]["outcome"] == "erased" and results["salesforce"]["count"] == 2
    assert sendgrid.person_remaining(TENANT, PERSON.email) == {"contacts": 0, "bounces": 0, "activity": 1}
    assert sendgrid.complete_erase_jobs() == 1  # SendGrid gets round to the erase job it accepted
    assert sendgrid.person_remaining(TENANT, PERSON.email) == {"contacts": 0, "bounces": 0, "activity": 0}
    assert twilio.person_remaining(TENANT, PERSON.phone) == {"messages": 0}
    assert salesforce.person_remaining(TENANT, PERSON.email) == {"leads": 0, "contacts": 0}
    # Everyone else stays: the account's other people and records, the other account's copy of the same
    # person, the parent account's and the processor's own records.
    assert sendgrid.remaining(TENANT)["contacts"] == before["sendgrid"]["contacts"] - 1
    assert twilio.remaining(TENANT)["messages"] == before["twilio"]["messages"] - 2
    assert twilio.remaining(TENANT)["recordings"] == before["twilio"]["recordings"]
    assert salesforce.remaining(TENANT)["leads"] == before["salesforce"]["leads"] - 1
    for other in PEOPLE[1:]:
        assert sendgrid.person_remaining(TENANT, other.email) == {"contacts": 1, "bounces": 1, "activity": 1}
        assert twilio.person_remaining(TENANT, other.phone) == {"messages": 2}
    assert {name: emulator.remaining(OTHER) for name, emulator in providers.items()} == other_before
    assert sendgrid.person_remaining(OTHER, PERSON.email) == {"contacts": 1, "bounces": 1, "activity": 1}
    assert len(sendgrid.contacts[PARENT]) == parent_contacts and salesforce.own_remaining() == own_records

    closing = ledger.events_of_kind("subject.subprocessor")
    assert [(e.payload["subprocessor"], e.payload["outcome"], e.payload["count"]) for e in closing] == [
        ("sendgrid", "erased", 3), ("twilio", "erased", 2), ("salesforce", "erased", 2)]
    assert {e.run_id for e in closing} == {run_id}  # in the request's run, where closing and the certificate read
    kinds = {e.kind for e in ledger.events()}
    assert {"subprocessor.intent", "subprocessor.outcome", "subprocessor.verified"} <= kinds
    assert _identifiers_in_ledger(ledger) == []

    again = erase(ledger, "req-1", "sendgrid", TENANT, SUBJECT, run_id=run_id, actor="test")
    assert (again["outcome"], again["count"]) == ("nothing_found", 0)


def test_a_search_that_lost_its_filter_still_erases_only_the_person(providers, ledger):
    """Salesforce answers as if the WHERE clause were lost (every lead and contact of the org): the account's
    stamp and the person's address on each record keep the deletes to the person's two records."""
    salesforce = providers["salesforce"]
    salesforce.ignore_where = True
    before = salesforce.remaining(TENANT)
    result = erase(ledger, "req-4", "salesforce", TENANT, SUBJECT, run_id=_request_run(ledger), actor="test")
    assert (result["outcome"], result["count"]) == ("erased", 2)
    assert salesforce.person_remaining(TENANT, PERSON.email) == {"leads": 0, "contacts": 0}
    assert salesforce.remaining(TENANT)["leads"] == before["leads"] - 1
    assert salesforce.person_remaining(OTHER, PERSON.email) == {"leads": 1, "contacts": 1}
    for other in PEOPLE[1:]:
        assert salesforce.person_remaining(TENANT, other.email) == {"leads": 1, "contacts": 1}


def test_a_hold_on_the_account_deletes_nothing(providers, ledger):
    ledger.place_hold(account_id=TENANT, data_class=None, reason="litigation", reference="LH-7", placed_by="legal")
    before = {name: emulator.remaining(TENANT) for name, emulator in providers.items()}
    run_id = _request_run(ledger)
    for name in ("sendgrid", "twilio", "salesforce"):
        result = erase(ledger, "req-2", name, TENANT, SUBJECT, run_id=run_id, actor="test")
        assert (result["outcome"], result["count"]) == ("held", 0)
    assert {name: emulator.remaining(TENANT) for name, emulator in providers.items()} == before
    assert not ledger.events_of_kind("subprocessor.intent")


def test_a_provider_without_a_subject_api_is_manual_and_nothing_is_called(providers, ledger):
    calls = {name: len(emulator.calls) for name, emulator in providers.items()}
    match = preview("clearbit", TENANT, SUBJECT)
    assert (match.scope, match.matched) == ("manual", None)
    run_id = _request_run(ledger)
    result = erase(ledger, "req-3", "clearbit", TENANT, SUBJECT, run_id=run_id, actor="test")
    assert (result["outcome"], result["count"]) == ("manual", 0)
    assert preview("heroku", TENANT, SUBJECT).scope == "none"  # its rows are the inventory's locations
    # Twilio finds people by phone only: someone known by e-mail alone is for a person to look up there.
    by_email = Subject.of({"email": [PERSON.email]})
    assert (preview("twilio", TENANT, by_email).scope, preview("twilio", TENANT, by_email).matched) == ("manual", None)
    assert erase(ledger, "req-3", "twilio", TENANT, by_email, run_id=run_id, actor="test")["outcome"] == "manual"
    assert not ledger.events_of_kind("subprocessor.call")
    assert {name: len(emulator.calls) for name, emulator in providers.items()} == calls


def test_export_returns_the_persons_records(providers, tmp_path):
    sendgrid = export("sendgrid", TENANT, SUBJECT, tmp_path)
    assert sendgrid.records == 3
    by_name = {p.name: json.loads(p.read_text()) for p in sendgrid.files}
    assert [c["email"] for c in by_name["contacts.json"]] == [PERSON.email]
    assert [b["email"] for b in by_name["bounces.json"]] == [PERSON.email]
    assert [m["to_email"] for m in by_name["recipient_erasure.json"]] == [PERSON.email]

    twilio = export("twilio", TENANT, SUBJECT, tmp_path)
    [messages] = twilio.files
    rows = json.loads(messages.read_text())
    assert twilio.records == 2 and all(PERSON.phone in (m["to"], m["from"]) for m in rows)

    salesforce = export("salesforce", TENANT, SUBJECT, tmp_path)
    assert salesforce.records == 2
    for path in salesforce.files:
        assert {r["Email"] for r in json.loads(path.read_text())} == {PERSON.email}
    assert providers["sendgrid"].person_remaining(TENANT, PERSON.email) == {  # export only reads
        "contacts": 1, "bounces": 1, "activity": 1}


def test_export_account_returns_the_accounts_records_and_media(providers, tmp_path):
    twilio = providers["twilio"]
    exported = export_account("twilio", TENANT, tmp_path)
    by_name = {p.relative_to(tmp_path / "twilio").as_posix(): p for p in exported.files}
    recordings = json.loads(by_name["recordings.json"].read_text())
    account = twilio.subaccount(TENANT)
    assert {r["sid"] for r in recordings} == set(twilio.recordings[account])
    for sid in twilio.recordings[account]:
        assert by_name[f"recordings/{sid}.mp3"].read_bytes() == twilio.media(sid)
    messages = json.loads(by_name["messages.json"].read_text())
    assert {m["sid"] for m in messages} == set(twilio.messages[account])
    assert exported.records == len(recordings) + len(messages)

    sendgrid = export_account("sendgrid", TENANT, tmp_path / "account")
    contacts = tmp_path / "account" / "sendgrid" / "contacts.json"
    assert contacts in sendgrid.files
    rows = json.loads(contacts.read_text())
    assert {r["custom_fields"]["account_id"] for r in rows} == {TENANT}
    assert len(rows) == len(providers["sendgrid"].contacts[TENANT])
    assert sendgrid.truncated == ()  # fewer contacts than the search's cap: all of them were listed


def test_an_account_export_past_a_search_cap_says_it_may_be_incomplete(providers, tmp_path):
    """SendGrid's contact search answers at most 50 and has no paging: an export that meets the cap cannot claim to
    hold every contact, so it names the resource (the return package's manifest then lists it as incomplete)."""
    providers["sendgrid"].add_tenant("acct-many", contacts=60)
    exported = export_account("sendgrid", "acct-many", tmp_path)
    rows = json.loads((tmp_path / "sendgrid" / "contacts.json").read_text())
    assert len(rows) == 50 and "contacts" in exported.truncated


def test_export_account_downloads_openai_files_and_stored_responses(monkeypatch, tmp_path):
    with OpenAIEmulator() as openai:
        openai.add_tenant(TENANT, responses=2, conversations=1, items=3, files=2)
        openai.add_tenant(OTHER, responses=1, files=1)
        _connection(monkeypatch, "openai", openai, password=OPENAI_TOKEN)
        monkeypatch.setenv("RETENTION_RULES_DIR", str(RULES))
        exported = export_account("openai", TENANT, tmp_path,
                                  recorded_ids=lambda recorded, account: openai.recorded(recorded.kind, account))
        files = {p.relative_to(tmp_path / "openai").as_posix(): p for p in exported.files}
        responses = json.loads(files["responses.json"].read_text())
        assert sorted(r["id"] for r in responses) == sorted(openai.recorded("openai_response", TENANT))
        assert len(json.loads(files["conversation_items.json"].read_text())) == 3
        for fid in openai.recorded("openai_file", TENANT):
            assert files[f"files/{fid}"].read_bytes() == openai.file_content(fid)
        assert len(json.loads(files["files.json"].read_text())) == 2
        assert exported.records == 2 + 1 + 3 + 2  # responses, conversations, items, file objects
        assert preview("openai", TENANT, SUBJECT).scope == "manual"  # no search by person at OpenAI


def test_a_subject_find_without_the_tenant_guard_is_refused_with_file_line_field(tmp_path):
    source = (RULES / "subprocessors" / "salesforce.yaml").read_text()
    guarded = "WHERE Email = '{email}' AND Qualified_Account__c = '{account_id}'\"}"
    assert guarded in source
    unguarded = source.replace(guarded, "WHERE Email = '{email}'\"}", 1)
    unguarded = unguarded.replace("          match: {Qualified_Account__c: \"{account_id}\"}\n          identifier:",
                                  "          identifier:", 1)
    path = tmp_path / "salesforce.yaml"
    path.write_text(unguarded)
    with pytest.raises(RulesError) as refused:
        load_spec(path)
    [issue] = refused.value.issues
    assert issue.field == "resources.leads.subject.find.0.request"
    assert "not aimed at the account's tenant" in issue.message
    assert issue.file == str(path)
    lines = unguarded.splitlines()
    subject_at = lines.index("    subject:")  # the leads' subject section comes first
    assert lines[issue.line - 2].strip() == "request:" and issue.line > subject_at  # the find's request


def test_a_subject_find_must_name_its_identifier_and_take_ids(tmp_path):
    source = (RULES / "subprocessors" / "salesforce.yaml").read_text()
    path = tmp_path / "salesforce.yaml"
    path.write_text(source.replace("WHERE Email = '{email}' AND ", "WHERE ", 1))
    with pytest.raises(RulesError) as refused:
        load_spec(path)
    assert [i.field for i in refused.value.issues] == ["resources.leads.subject.find.0.request"]
    assert "must name {email}" in refused.value.issues[0].message
    no_export = source.replace("""    export:
      - kind: items
""", "", 1)
    assert [i.field for i in _refused(tmp_path, "salesforce", no_export)] == ["resources.leads.export"]
    shutil.copy(RULES / "subprocessors" / "salesforce.yaml", path)
    assert load_spec(path).resources["leads"].subject is not None


def test_an_identifier_that_could_read_as_query_syntax_is_refused_before_sending(providers):
    from retention.subprocessors.errors import SubprocessorError

    sendgrid = providers["sendgrid"]
    calls = len(sendgrid.calls)
    sly = Subject.of({"email": ["x'or'1'='1@example.invalid"]})
    with pytest.raises(SubprocessorError, match="quote or backslash") as refused:
        preview("sendgrid", TENANT, sly)
    assert "x'or" not in str(refused.value)
    assert len(sendgrid.calls) == calls


def _refused(tmp_path: Path, name: str, text: str) -> list:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    with pytest.raises(RulesError) as refused:
        load_spec(path)
    return refused.value.issues


def test_a_subject_find_over_a_query_delete_is_refused(tmp_path):
    """A query-scope delete takes the whole tenant; a person's search may not lead to it."""
    source = (RULES / "subprocessors" / "datadog.yaml").read_text()
    subject = """    subject:
      find:
        - by: email
          request: {method: POST, path: /api/v2/logs/events/search,
                    body: {filter: {query: "@tenant:{account_id} @usr.email:{email}"}}}
          pagination: {style: none}
          items: data
          identifier: attributes.attributes.usr.email
    export: [{kind: items}]
    delete:
      scope: query
"""
    issues = _refused(tmp_path, "datadog", source.replace("    delete:\n      scope: query\n", subject, 1))
    assert [i.field for i in issues] == ["resources.logs.subject"]
    assert "would erase the whole tenant" in issues[0].message


def test_exports_only_read_and_name_the_record(tmp_path):
    source = (RULES / "subprocessors" / "openai.yaml").read_text()
    get_files = 'request: {method: GET, path: "/v1/files/{id}/content"}'
    assert get_files in source
    issues = _refused(tmp_path, "openai", source.replace(get_files, 'request: {method: DELETE, path: "/v1/files"}'))
    assert sorted(i.field for i in issues) == ["resources.files.export.1.request",
                                               "resources.files.export.1.request.method"]
    items = source.replace("""      - kind: get  # the stored response (input, output, metadata)
        request: {method: GET, path: "/v1/responses/{id}"}""", "      - kind: items")
    issues = _refused(tmp_path, "openai", items)
    assert [(i.field, "needs a find that lists items" in i.message) for i in issues] == [
        ("resources.responses.export.0.kind", True)]
