"""SendGrid spec against the SendGrid emulator: subuser fan-out with on-behalf-of, a capped search with
async deletion jobs, bounces keyed by e-mail address, and an erase job nobody can poll."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from retention.rules.errors import RulesError
from retention.subprocessors import load_spec
from retention.subprocessors.spec import ConnectorSpec
from tests.emulators.sendgrid import KEY, PARENT, SendGridEmulator, sent_query
from tests.fixtures.subprocessors import RULES, events_of, shipped_spec

TENANT, OTHER = "acct_1001", "acct_2002"
SHARED = "shared.person@example.com"  # an End-User both customers e-mailed


def populate(emulator: SendGridEmulator) -> SendGridEmulator:
    emulator.add_tenant(TENANT, contacts=120, bounces=23, messages=30, recipients=12, shared_recipients=(SHARED,))
    emulator.add_tenant(OTHER, contacts=7, bounces=4, messages=5, recipients=3, shared_recipients=(SHARED,))
    emulator.add_tenant(PARENT, contacts=5, bounces=3, messages=2)  # the parent account's own data
    return emulator


@pytest.fixture
def sendgrid():
    with populate(SendGridEmulator(pending_polls=2)) as emulator:
        yield emulator


def spec_with_page_size(resource: str, size: int) -> ConnectorSpec:
    """The shipped spec with a smaller find page, so a few records span several pages."""
    spec = shipped_spec("sendgrid")
    r = spec.resources[resource]
    find = r.find.model_copy(update={"pagination": r.find.pagination.model_copy(update={"page_size": size})})
    return spec.model_copy(update={"resources": {**spec.resources, resource: r.model_copy(update={"find": find})}})


def run(run_spec, emulator, resource, tenant=TENANT, *, spec=None, **kwargs):
    kwargs.setdefault("sleep", lambda seconds: None)
    return run_spec(spec or shipped_spec("sendgrid"), resource, tenant, emulator, password=KEY, **kwargs)


def untouched(emulator) -> None:
    assert emulator.remaining(OTHER) == {"contacts": 7, "bounces": 4, "activity": 6}
    assert emulator.remaining(PARENT) == {"contacts": 5, "bounces": 3, "activity": 2}


def payload_text(ledger) -> str:
    return json.dumps([e.payload for e in events_of(ledger)])


# -- contacts --------------------------------------------------------------------------------------

def test_contacts_go_in_capped_rounds_of_async_jobs_and_others_stay(run_spec, sendgrid, subprocessor_ledger) -> None:
    result = run(run_spec, sendgrid, "contacts")

    assert (result.found, result.deleted, result.not_deleted, result.jobs) == (120, 120, 0, 3)  # 50 + 50 + 20
    assert (result.status, result.verification) == ("verified", "find_empty: 0 left")
    assert sendgrid.remaining(TENANT)["contacts"] == 0
    untouched(sendgrid)
    events = events_of(subprocessor_ledger)
    kinds = [e.kind for e in events]
    assert kinds.count("subprocessor.intent") == kinds.count("subprocessor.outcome") == 3
    assert [e.payload["state"] for e in events if e.kind == "subprocessor.job_finished"] == ["done"] * 3
    assert subprocessor_ledger.verify().ok


def test_contacts_are_removed_only_when_their_job_completes(run_spec, sendgrid) -> None:
    run(run_spec, sendgrid, "contacts")

    polls = [c for c in sendgrid.requests if c.path.startswith("/v3/marketing/contacts/imports/")]
    assert len(polls) == 3 * 3  # pending, pending, completed for each job
    assert all(c.headers.get("on-behalf-of") == TENANT for c in polls)  # the job is the subuser's
    assert all(job["status"] == "completed" for job in sendgrid.jobs.values())


def test_every_tenant_request_acts_for_the_subuser_and_delete_all_is_never_sent(run_spec, sendgrid) -> None:
    for resource in ("contacts", "bounces", "recipient_erasure"):
        run(run_spec, sendgrid, resource)

    listing = [c for c in sendgrid.requests if c.path == "/v3/subusers"]
    assert listing and all("on-behalf-of" not in c.headers for c in listing)
    # the parent key's own: the subuser listing and the credentials pre-flight (/v3/scopes)
    assert all(c.headers.get("on-behalf-of") == TENANT for c in sendgrid.requests
               if c.path not in ("/v3/subusers", "/v3/scopes"))
    assert not any("delete_all" in sent_query(c) for c in sendgrid.requests)


def test_the_emulator_honours_delete_all_contacts_and_the_loader_refuses_it(sendgrid, tmp_path) -> None:
    # The switch is real: sent for the subuser, it erases every one of its contacts...
    headers = {"Authorization": f"Bearer {KEY}", "on-behalf-of": OTHER}
    job = httpx.delete(f"{sendgrid.url}/v3/marketing/contacts", params={"delete_all_contacts": "true"},
                       headers=headers).json()["job_id"]
    for _ in range(3):
        httpx.get(f"{sendgrid.url}/v3/marketing/contacts/imports/{job}", headers=headers)
    assert sendgrid.remaining(OTHER)["contacts"] == 0
    # ...so a spec that names it must not load.
    text = (RULES / "subprocessors" / "sendgrid.yaml").read_text()
    assert text.count('query: {ids: "{ids}"}') == 1
    path = tmp_path / "sendgrid.yaml"
    path.write_text(text.replace('query: {ids: "{ids}"}', 'query: {delete_all_contacts: "true"}'))
    with pytest.raises(RulesError, match="delete everything"):
        load_spec(path)


# -- bounces ---------------------------------------------------------------------------------------

def test_bounces_go_across_pages_and_no_address_enters_the_ledger(run_spec, sendgrid, subprocessor_ledger) -> None:
    result = run(run_spec, sendgrid, "bounces", spec=spec_with_page_size("bounces", 5))

    assert (result.found, result.deleted, result.status) == (23, 23, "verified")
    assert result.verification == "find_empty: 0 left"
    assert sendgrid.remaining(TENANT)["bounces"] == 0
    untouched(sendgrid)
    pages = [c for c in sendgrid.requests if c.method == "GET" and c.path == "/v3/suppression/bounces"]
    assert [c.arg("offset") for c in pages] == ["0", "5", "10", "15", "20", "0"]  # 5 pages, then the verification
    deletes = [c for c in sendgrid.requests if c.method == "DELETE"]
    assert len(deletes) == 1 and sorted(deletes[0].body["emails"]) == sorted(sendgrid.deleted["bounces"])
    assert "@" not in payload_text(subprocessor_ledger)  # addresses only as digests
    assert subprocessor_ledger.verify().ok


def test_a_rerun_finds_nothing_and_deletes_nothing(run_spec, sendgrid) -> None:
    run(run_spec, sendgrid, "bounces")
    again = run(run_spec, sendgrid, "bounces")
    assert (again.found, again.deleted, again.status) == (0, 0, "verified")
    assert sum(1 for c in sendgrid.requests if c.method == "DELETE") == 1


def test_an_account_without_a_subuser_has_nothing_to_delete(run_spec, sendgrid) -> None:
    result = run(run_spec, sendgrid, "contacts", tenant="acct_9999")
    assert (result.found, result.deleted, result.status) == (0, 0, "verified")
    assert [c.path for c in sendgrid.requests] == ["/v3/scopes", "/v3/subusers"]
    untouched(sendgrid)


# -- recipient erasure -----------------------------------------------------------------------------

def test_erase_job_is_accepted_and_its_completion_is_stated_as_our_assumption(
        run_spec, sendgrid, subprocessor_ledger) -> None:
    before = datetime.now(UTC)
    result = run(run_spec, sendgrid, "recipient_erasure")

    assert (result.found, result.deleted, result.jobs) == (13, 13, 1)  # 12 own recipients + the shared one
    # SendGrid documents no completion time: the 30 days are ours, so the result is "assumed", never
    # "awaiting_provider" (which a certificate reads as the provider's own deadline) or "verified".
    assert (result.status, result.assumed, result.assumptions) == ("assumed", True, ["sendgrid_erasure_30_days"])
    assert before + timedelta(days=30) <= result.complete_by <= datetime.now(UTC) + timedelta(days=30)
    assert result.verification.startswith("after_completion: we assume it completes by ")
    final = events_of(subprocessor_ledger, "subprocessor.result")[0].payload
    assert (final["status"], final["assumed"], final["assumptions"]) == ("assumed", True,
                                                                          ["sendgrid_erasure_30_days"])
    (job,) = sendgrid.erase_jobs
    assert job["user"] == TENANT and len(job["emails"]) == 13 and SHARED in job["emails"]
    assert sendgrid.remaining(TENANT)["activity"] == 31  # accepted, not done yet

    assert sendgrid.complete_erase_jobs() == 1  # SendGrid gets round to it
    assert sendgrid.remaining(TENANT)["activity"] == 0
    untouched(sendgrid)  # the other customer's mail to the shared address stays: erasure is per subuser
    kinds = [e.kind for e in events_of(subprocessor_ledger)]
    assert "subprocessor.job" in kinds and "subprocessor.verified" not in kinds  # nothing to check yet
    assert "@" not in payload_text(subprocessor_ledger)
    assert subprocessor_ledger.verify().ok


# -- chaos -----------------------------------------------------------------------------------------

def test_contacts_under_chaos_go_exactly_as_in_a_clean_run(run_spec) -> None:
    """30 % of calls answer 429 (X-RateLimit-Reset, an epoch) or 5xx; real sleeping, small data."""
    def emulator(chaos: float) -> SendGridEmulator:
        made = SendGridEmulator(chaos=chaos, pending_polls=1)
        made.add_tenant(TENANT, contacts=60)
        made.add_tenant(OTHER, contacts=7)
        return made

    with emulator(0.0) as clean:
        tenant_contacts = clean.contact_ids(TENANT)
        expected = run(run_spec, clean, "contacts")
    started = time.monotonic()
    with emulator(0.3) as chaotic:
        result = run(run_spec, chaotic, "contacts", sleep=None)  # real waiting
    assert time.monotonic() - started < 30

    assert (expected.found, expected.deleted, expected.status) == (60, 60, "verified")
    assert (result.found, result.deleted, result.not_deleted, result.status) == (60, 60, 0, "verified")
    assert sorted(chaotic.deleted["contacts"]) == sorted(clean.deleted["contacts"]) == sorted(tenant_contacts)
    assert chaotic.remaining(TENANT)["contacts"] == 0 and chaotic.remaining(OTHER)["contacts"] == 7
    assert chaotic.faults > 0
    assert chaotic.early_calls == 0  # never called again before X-RateLimit-Reset
