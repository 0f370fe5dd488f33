"""Salesforce spec against the Salesforce emulator: the processor's own org, holding many accounts' records and
its own; SOQL pages, sObject Collections batches, the Recycle Bin."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from retention.subprocessors import SubprocessorError
from tests.emulators.salesforce import ACCOUNT_FIELD, API, CLIENT_ID, TOKEN, SalesforceEmulator
from tests.fixtures.subprocessors import RULES, events_of, shipped_spec

TENANT, OTHER = "acct_1001", "acct_2002"


def populate(emulator: SalesforceEmulator, *, leads: int = 205, contacts: int = 8) -> SalesforceEmulator:
    emulator.add_tenant(TENANT, leads=leads, contacts=contacts, deleted_meanwhile=2, purged_meanwhile=1)
    emulator.add_tenant(OTHER, leads=6, contacts=3)
    return emulator


@pytest.fixture
def salesforce():
    with populate(SalesforceEmulator(page_cap=50)) as emulator:
        yield emulator


def run(run_spec, emulator, resource, tenant=TENANT, **kwargs):
    kwargs.setdefault("sleep", lambda seconds: None)
    return run_spec(shipped_spec("salesforce"), resource, tenant, emulator, login=CLIENT_ID,
                    password=emulator.client_secret, **kwargs)


def query_all(emulator: SalesforceEmulator, soql: str) -> httpx.Response:
    return httpx.get(f"{emulator.url}{API}/queryAll", params={"q": soql},
                     headers={"Authorization": f"Bearer {TOKEN}"})


def test_leads_of_the_tenant_go_across_pages_and_batches_into_the_recycle_bin(
        run_spec, salesforce, subprocessor_ledger) -> None:
    before = datetime.now(UTC)
    result = run(run_spec, salesforce, "leads")

    # 205 found over 5 query pages; 2 went to the bin and 1 was purged by someone else meanwhile
    assert (result.found, result.deleted, result.already_gone, result.not_deleted) == (205, 202, 3, 0)
    assert result.status == "awaiting_provider"  # the Recycle Bin keeps them 15 days; REST cannot empty it
    assert before + timedelta(days=15) <= result.complete_by <= datetime.now(UTC) + timedelta(days=15)
    assert result.verification == "find_empty: 0 left"
    assert salesforce.remaining(TENANT) == {"leads": 0, "contacts": 8, "recycle_bin": 204}
    assert salesforce.remaining(OTHER) == {"leads": 6, "contacts": 3, "recycle_bin": 0}
    deletes = [c for c in salesforce.calls if c[0] == "DELETE"]
    assert [c[2] for c in deletes] == [200, 200]  # 205 ids: two sObject Collections calls (200 + 5)
    queries = [c for c in salesforce.calls if c[0] == "GET" and c[1].startswith(f"{API}/query")]
    assert len(queries) == 5 + 1  # five pages to find, one (empty) to verify

    kinds = [e.kind for e in events_of(subprocessor_ledger)]
    assert kinds.count("subprocessor.intent") == kinds.count("subprocessor.outcome") == 2
    assert kinds.count("subprocessor.preview") == kinds.count("subprocessor.verified") == 1
    outcomes = [e.payload for e in events_of(subprocessor_ledger, "subprocessor.outcome")]
    assert sum(o["deleted"] for o in outcomes) == 202 and sum(o["already_gone"] for o in outcomes) == 3
    verified = events_of(subprocessor_ledger, "subprocessor.verified")[0].payload
    assert (verified["method"], verified["left"]) == ("find_empty", 0)
    final = events_of(subprocessor_ledger, "subprocessor.result")[0].payload
    assert (final["status"], final["data_class"]) == ("awaiting_provider", "processor_crm_records")
    assert subprocessor_ledger.verify().ok


def test_deleted_leads_stay_visible_to_query_all_until_the_bin_empties(run_spec, salesforce) -> None:
    run(run_spec, salesforce, "leads")

    soql = f"SELECT Id, IsDeleted FROM Lead WHERE {ACCOUNT_FIELD} = '{TENANT}'"
    response = query_all(salesforce, soql)
    assert response.status_code == 200
    assert response.headers["Sforce-Limit-Info"].startswith("api-usage=")
    body = response.json()
    assert body["totalSize"] == 204 and all(r["IsDeleted"] is True for r in body["records"])


def test_contacts_go_too_and_a_locked_one_leaves_the_resource_incomplete(run_spec, subprocessor_ledger) -> None:
    emulator = SalesforceEmulator(page_cap=3)
    emulator.add_tenant(TENANT, leads=2, contacts=8, locked=1)
    emulator.add_tenant(OTHER, leads=1, contacts=4)
    with emulator:
        result = run(run_spec, emulator, "contacts")

    assert (result.found, result.deleted, result.not_deleted) == (8, 7, 1)
    assert result.status == "incomplete"
    assert result.verification == "find_empty: 1 left"
    assert emulator.remaining(TENANT)["contacts"] == 1 and emulator.remaining(TENANT)["leads"] == 2
    assert emulator.remaining(OTHER) == {"leads": 1, "contacts": 4, "recycle_bin": 0}
    failed = [e.payload for e in events_of(subprocessor_ledger, "subprocessor.item_failed")]
    assert [f["code"] for f in failed] == ["DELETE_FAILED"]
    assert subprocessor_ledger.verify().ok


def test_a_rerun_finds_nothing_and_deletes_nothing(run_spec, salesforce) -> None:
    run(run_spec, salesforce, "leads")
    again = run(run_spec, salesforce, "leads")
    assert (again.found, again.deleted, again.already_gone) == (0, 0, 0)
    assert (again.status, again.verification) == ("verified", "find_empty: 0 left")  # nothing sent: nothing to wait for


def test_an_exhausted_daily_api_limit_fails_the_run_without_retrying(run_spec) -> None:
    emulator = SalesforceEmulator(page_cap=50, api_limit=6)  # the pre-flight and 5 query pages, not the delete
    populate(emulator)
    with emulator:
        with pytest.raises(SubprocessorError, match="HTTP 403.*REQUEST_LIMIT_EXCEEDED"):
            run(run_spec, emulator, "leads")
        assert [c[2] for c in emulator.calls if c[0] == "DELETE"] == [403]  # asked once, not retried
        assert emulator.remaining(TENANT)["leads"] == 205 - 3


def test_ledger_events_hold_no_ids_only_digests_and_counts(run_spec, salesforce, subprocessor_ledger) -> None:
    run(run_spec, salesforce, "leads")
    text = json.dumps([e.payload for e in events_of(subprocessor_ledger)])
    assert "00Q000X" not in text and "Person " not in text
    calls = [e.payload for e in events_of(subprocessor_ledger, "subprocessor.call")]
    assert calls and all(c["path"].startswith(f"{API}/") for c in calls)
    assert not any(TENANT in c["path"] for c in calls)  # the template, not the rendered SOQL


def test_chaos_deletes_the_same_records_as_a_clean_run(run_spec) -> None:
    def erase_both(emulator: SalesforceEmulator, **kwargs) -> set[str]:
        with emulator:
            for resource in ("leads", "contacts"):
                result = run(run_spec, emulator, resource, **kwargs)
                assert result.status == "awaiting_provider" and result.verification == "find_empty: 0 left"
            assert emulator.remaining(OTHER) == {"leads": 6, "contacts": 3, "recycle_bin": 0}
            return emulator.deleted_ids()

    clean = erase_both(populate(SalesforceEmulator(page_cap=5), leads=12, contacts=6))
    chaotic = populate(SalesforceEmulator(page_cap=5, chaos=0.3), leads=12, contacts=6)
    deleted = erase_both(chaotic, sleep=None)  # real waiting: Retry-After must be honoured

    assert deleted == clean and len(clean) == 18
    assert chaotic.faults > 0
    assert any(status == 429 for _, _, status in chaotic.calls)  # Retry-After was exercised
    assert chaotic.early_calls == 0


# -- the processor's own org -----------------------------------------------------------------------

def test_the_spec_erases_in_the_processors_own_org_and_says_why() -> None:
    spec = shipped_spec("salesforce")
    assert spec.conn_id == "salesforce"  # one Connection: our org, for every customer
    for resource in spec.resources.values():
        assert resource.data_class == "processor_crm_records"  # not the customer's CRM sync
        assert resource.find.match == {ACCOUNT_FIELD: "{account_id}"}
    text = (RULES / "subprocessors" / "salesforce.yaml").read_text()
    assert "processor's OWN Salesforce org" in text and "Never the customer's own Salesforce org" in text


def test_other_accounts_and_the_processors_own_records_in_the_same_org_stay(run_spec) -> None:
    emulator = SalesforceEmulator(page_cap=4)
    emulator.add_tenant(TENANT, leads=6, contacts=3)
    emulator.add_tenant(OTHER, leads=5, contacts=2)
    emulator.add_own(leads=7, contacts=4)
    with emulator:
        for resource in ("leads", "contacts"):
            result = run(run_spec, emulator, resource)
            assert result.verification == "find_empty: 0 left"
    assert emulator.remaining(TENANT) == {"leads": 0, "contacts": 0, "recycle_bin": 9}
    assert emulator.remaining(OTHER) == {"leads": 5, "contacts": 2, "recycle_bin": 0}
    assert emulator.own_remaining() == 11


def test_a_query_that_lost_its_filter_still_deletes_only_the_accounts_records(run_spec, subprocessor_ledger) -> None:
    """The org answers every Lead, as a query whose WHERE was lost would: match keeps the account's own."""
    emulator = SalesforceEmulator(page_cap=4)
    emulator.add_tenant(TENANT, leads=6, contacts=0)
    emulator.add_tenant(OTHER, leads=5, contacts=0)
    emulator.add_own(leads=7, contacts=0)
    emulator.ignore_where = True
    with emulator:
        result = run(run_spec, emulator, "leads")
    assert (result.found, result.deleted) == (6, 6)
    assert emulator.remaining(OTHER)["leads"] == 5 and emulator.own_remaining() == 7
    preview = events_of(subprocessor_ledger, "subprocessor.preview")[0].payload
    assert preview["found"] == 6
