"""Datadog spec against the Datadog emulator: cursor-paged log search in the body, one query deletion request."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from retention.subprocessors import SubprocessorError
from tests.emulators.datadog import API_KEY, APP_KEY, DatadogEmulator
from tests.fixtures.subprocessors import events_of, shipped_spec

TENANT, OTHER, LOOKALIKE = "acct_1001", "acct_2002", "acct_10010"
HOURS = [h + 0.5 for h in range(23)]  # the tenant's logs: 0.5 h to 22.5 h old


def populate(emulator: DatadogEmulator, tenant_hours: list[float]) -> DatadogEmulator:
    emulator.add_logs(TENANT, tenant_hours)
    emulator.add_logs(OTHER, [1, 2, 3, 30, 31, 32])
    emulator.add_logs(LOOKALIKE, [1, 5, 9, 13])  # an id that starts with the tenant's
    emulator.add_logs(None, [1, 2, 3, 4, 5], service="scheduler")  # our own, no tenant
    return emulator


@pytest.fixture
def datadog():
    with populate(DatadogEmulator(page_cap=5), HOURS) as emulator:
        yield emulator


def run(run_spec, emulator, tenant=TENANT, **kwargs):
    return run_spec(shipped_spec("datadog"), "logs", tenant, emulator, password=API_KEY,
                    extra={"application_key": APP_KEY}, **kwargs)


def others_untouched(emulator: DatadogEmulator) -> bool:
    return (emulator.remaining(OTHER)["logs"], emulator.remaining(LOOKALIKE)["logs"],
            sum(1 for log in emulator.logs if log["attributes"]["service"] == "scheduler")) == (6, 4, 5)


def test_one_deletion_request_takes_every_log_of_the_tenant_once_datadog_completes_it(
        run_spec, datadog, subprocessor_ledger) -> None:
    before = datetime.now(UTC)
    result = run(run_spec, datadog, sleep=lambda s: None)

    assert (result.found, result.deleted, result.jobs, result.not_deleted) == (23, 23, 1, 0)
    assert result.status == "awaiting_provider"  # cancellable for 10 days, permanent after
    assert before + timedelta(days=10) <= result.complete_by <= datetime.now(UTC) + timedelta(days=10)
    assert result.verification == f"after_completion: the provider completes by {result.complete_by:%Y-%m-%d}"
    assert result.residual_copies_until is not None  # the index retention (P15D)
    searches = [c for c in datadog.calls if c[1] == "/api/v2/logs/events/search"]
    assert len(searches) == 5  # 23 logs, 5 a page: the cursor went back in the body
    [request] = datadog.requests.values()
    attrs = request["attributes"]
    assert (attrs["query"], attrs["from_time"], attrs["status"], attrs["total_unrestricted"]) == (
        f"@tenant:{TENANT}", 0, "pending", 23)
    assert before.timestamp() * 1000 <= attrs["to_time"] <= time.time() * 1000  # up to the cutoff (now)

    assert datadog.remaining(TENANT) == {"logs": 23, "pending_requests": 1}  # nothing gone before completion
    datadog.elapse(days=10)
    assert datadog.remaining(TENANT) == {"logs": 0, "pending_requests": 0}
    assert others_untouched(datadog)

    kinds = [e.kind for e in events_of(subprocessor_ledger)]
    assert kinds.count("subprocessor.intent") == kinds.count("subprocessor.outcome") == 1
    assert kinds.count("subprocessor.job") == 1 and kinds[-1] == "subprocessor.result"
    summary = next(e.payload for e in events_of(subprocessor_ledger, "subprocessor.result"))
    assert (summary["status"], summary["verification"]) == ("awaiting_provider", result.verification)
    job = next(e.payload for e in events_of(subprocessor_ledger, "subprocessor.job"))
    assert request["id"] not in str(job) and len(job["job_sha256"]) == 64  # a digest, not the id
    assert subprocessor_ledger.verify().ok


def test_a_rerun_after_completion_finds_nothing_and_requests_nothing(run_spec, datadog) -> None:
    run(run_spec, datadog, sleep=lambda s: None)
    datadog.elapse(days=10)
    again = run(run_spec, datadog, sleep=lambda s: None)

    assert (again.found, again.deleted, again.jobs) == (0, 0, 0)
    assert len(datadog.requests) == 1


def test_a_tenant_without_logs_gets_no_deletion_request(run_spec, datadog) -> None:
    result = run(run_spec, datadog, tenant="acct_9999", sleep=lambda s: None)

    assert (result.found, result.deleted, result.jobs) == (0, 0, 0)
    assert datadog.requests == {} and others_untouched(datadog)


def test_logs_after_the_cutoff_stay(run_spec, datadog) -> None:
    cutoff = datetime.now(UTC) - timedelta(hours=12)
    run(run_spec, datadog, cutoff=cutoff, sleep=lambda s: None)
    datadog.elapse(days=10)

    assert datadog.remaining(TENANT)["logs"] == 12  # 0.5 h to 11.5 h old
    assert all(log["_ms"] > cutoff.timestamp() * 1000 for log in datadog.tenant_logs(TENANT))
    assert others_untouched(datadog)


def test_the_deletion_query_names_the_attribute_the_search_found() -> None:
    logs = shipped_spec("datadog").resources["logs"]
    search = logs.find.request.body["filter"]["query"]
    deletion = logs.delete.request.body["data"]["attributes"]["query"]
    assert search.split() == [f"{key}:{value}" for key, value in deletion.items()] == ["@tenant:{account_id}"]


def test_a_deletion_query_naming_the_tag_instead_is_accepted_and_deletes_nothing(datadog) -> None:
    """Why the spec's query says @tenant: Datadog reads a key without @ as a tag."""
    body = {"data": {"type": "create_deletion_req",
                     "attributes": {"query": {"tenant": TENANT}, "from": 0, "to": datadog.now_ms(),
                                    "displayed_total": 23}}}
    reply = httpx.post(f"{datadog.url}/api/v2/deletion/data/logs", json=body,
                       headers={"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY})
    assert reply.status_code == 200 and reply.json()["data"]["attributes"]["status"] == "pending"
    datadog.elapse(days=10)
    assert datadog.remaining(TENANT)["logs"] == 23


def test_a_request_can_be_cancelled_for_ten_days_then_no_more(run_spec, datadog) -> None:
    """Why completion is async_unpollable with P10D: until then the deletion can be undone."""
    headers = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}
    run(run_spec, datadog, sleep=lambda s: None)
    run(run_spec, datadog, sleep=lambda s: None)  # a rerun inside the window submits a second request
    first, second = datadog.requests
    datadog.elapse(days=9)
    assert httpx.put(f"{datadog.url}/api/v2/deletion/requests/{first}/cancel", headers=headers).status_code == 200
    listed = httpx.get(f"{datadog.url}/api/v2/deletion/requests", params={"product": "logs"}, headers=headers)
    assert [r["attributes"]["status"] for r in listed.json()["data"]] == ["canceled", "pending"]
    datadog.elapse(days=1)
    assert httpx.put(f"{datadog.url}/api/v2/deletion/requests/{second}/cancel", headers=headers).status_code == 412
    assert datadog.remaining(TENANT)["logs"] == 0 and others_untouched(datadog)


def test_an_application_key_without_logs_delete_data_fails_loudly(run_spec) -> None:
    with populate(DatadogEmulator(page_cap=5, permissions=frozenset({"logs_read_data"})), HOURS) as datadog:
        with pytest.raises(SubprocessorError, match="delete answered HTTP 403"):
            run(run_spec, datadog, sleep=lambda s: None)
        assert datadog.requests == {}


def test_the_deletion_request_sends_json_numbers(run_spec, datadog) -> None:
    run(run_spec, datadog, sleep=lambda s: None)
    assert datadog.string_numbers == set()


def test_the_deletion_request_displays_the_preview_count(run_spec, datadog) -> None:
    result = run(run_spec, datadog, sleep=lambda s: None)
    [request] = datadog.requests.values()
    assert request["attributes"]["displayed_total"] == result.found


def test_the_preview_counts_only_logs_up_to_the_cutoff(run_spec, datadog) -> None:
    result = run(run_spec, datadog, cutoff=datetime.now(UTC) - timedelta(hours=12), sleep=lambda s: None)
    assert (result.found, result.deleted) == (11, 11)


def test_a_tenant_without_logs_is_verified_at_once(run_spec, datadog) -> None:
    result = run(run_spec, datadog, tenant="acct_9999", sleep=lambda s: None)
    assert result.status == "verified"


def test_an_application_error_is_retried_with_backoff(run_spec, datadog) -> None:
    datadog.fail_next = [500]  # through the gateway: with X-RateLimit-Reset, informational, not a wait
    datadog.period_left = 1800  # half an hour until the hourly period resets
    result = run(run_spec, datadog, sleep=lambda s: None)
    assert result.found == 23


def test_chaos_429_with_reset_seconds_and_5xx_end_with_the_same_deletion(run_spec, subprocessor_ledger) -> None:
    hours = [h + 0.5 for h in range(12)]
    with populate(DatadogEmulator(page_cap=2), hours) as clean:
        expected = run(run_spec, clean, sleep=lambda s: None)
        clean.elapse(days=10)

    chaos = populate(DatadogEmulator(page_cap=2, chaos=0.3), hours)
    with chaos:
        started = time.monotonic()
        result = run(run_spec, chaos)  # real sleeping: the client must honour X-RateLimit-Reset
        elapsed = time.monotonic() - started

        assert (result.found, result.deleted, result.jobs, result.status) == \
            (expected.found, expected.deleted, expected.jobs, expected.status) == (12, 12, 1, "awaiting_provider")
        [request] = chaos.requests.values()  # a retried POST did not submit twice
        [clean_request] = clean.requests.values()
        assert (request["attributes"]["query"], request["attributes"]["total_unrestricted"]) == \
            (clean_request["attributes"]["query"], clean_request["attributes"]["total_unrestricted"])
        chaos.elapse(days=10)
        assert chaos.remaining(TENANT) == clean.remaining(TENANT) == {"logs": 0, "pending_requests": 0}
        assert sorted(log["id"] for log in chaos.logs) == sorted(log["id"] for log in clean.logs)  # the same survive
        assert others_untouched(chaos)
        assert chaos.early_calls == 0
        assert chaos.faults > 0
        assert elapsed < 30
    assert subprocessor_ledger.verify().ok
