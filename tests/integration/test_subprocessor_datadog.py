"""Datadog spec against the Datadog emulator: cursor-paged log search in the body, one query deletion request,
polled in the paged list of deletion requests until Datadog reports it completed, then searched again."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from retention.subprocessors import Credentials, SubprocessorError, eraser
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


def on_the_emulators_clock(emulator: DatadogEmulator):
    """Waits of an hour or more (the job polls, every 6 h) pass on the emulator's clock; shorter ones
    (rate limits) really pass."""
    def sleep(seconds: float) -> None:
        if seconds >= 3600:
            emulator.elapse(seconds=seconds)
        else:
            time.sleep(seconds)
    return sleep


def run(run_spec, emulator, tenant=TENANT, **kwargs):
    kwargs.setdefault("sleep", on_the_emulators_clock(emulator))
    return run_spec(shipped_spec("datadog"), "logs", tenant, emulator, password=API_KEY,
                    extra={"application_key": APP_KEY}, **kwargs)


def begin(emulator, ledger, tenant=TENANT):
    """Find, preview and submit the deletion request, without waiting for it (the DAG's first step)."""
    credentials = Credentials(base_url=emulator.url, password=API_KEY, extra={"application_key": APP_KEY},
                              from_connection_host=True)
    spec = shipped_spec("datadog")
    with eraser(spec, "logs", tenant, ledger=ledger, actor="test", credentials=credentials,
                sleep=lambda s: None) as running:
        return running.begin("logs", tenant)


def others_untouched(emulator: DatadogEmulator) -> bool:
    return (emulator.remaining(OTHER)["logs"], emulator.remaining(LOOKALIKE)["logs"],
            sum(1 for log in emulator.logs if log["attributes"]["service"] == "scheduler")) == (6, 4, 5)


def test_one_deletion_request_is_polled_until_datadog_completes_it_then_searched_again(
        run_spec, datadog, subprocessor_ledger) -> None:
    before = datetime.now(UTC)
    result = run(run_spec, datadog)

    assert (result.found, result.deleted, result.jobs, result.not_deleted) == (23, 23, 1, 0)
    # Not a date we assumed: Datadog listed the request completed, and the search found nothing left.
    assert (result.status, result.verification, result.complete_by) == ("verified", "find_empty: 0 left", None)
    assert (result.assumed, result.assumptions) == (False, ["datadog_deletion_query_key"])
    assert result.residual_copies_until is not None  # the index retention (P15D)
    searches = [c for c in datadog.calls if c[1] == "/api/v2/logs/events/search"]
    assert len(searches) == 5 + 1  # 23 logs, 5 a page (the cursor went back in the body), then one to verify
    [request] = datadog.requests.values()
    attrs = request["attributes"]
    assert (attrs["query"], attrs["from_time"], attrs["status"], attrs["total_unrestricted"]) == (
        f"@tenant:{TENANT}", 0, "completed", 23)
    assert before.timestamp() * 1000 <= attrs["to_time"] <= time.time() * 1000  # up to the cutoff (now)
    polls = datadog.list_calls
    # the pre-flight's listing, then every 6 h for 10 days
    assert len(polls) == 1 + 40 + 1 and all(p["product"] == "logs" for p in polls)
    assert datadog.remaining(TENANT) == {"logs": 0, "pending_requests": 0}
    assert others_untouched(datadog)

    kinds = [e.kind for e in events_of(subprocessor_ledger)]
    assert kinds.count("subprocessor.intent") == kinds.count("subprocessor.outcome") == 1
    assert kinds.count("subprocessor.job") == 1 and kinds[-1] == "subprocessor.result"
    finished = next(e.payload for e in events_of(subprocessor_ledger, "subprocessor.job_finished"))
    assert finished["state"] == "done"
    summary = next(e.payload for e in events_of(subprocessor_ledger, "subprocessor.result"))
    assert (summary["status"], summary["verification"], summary["assumed"]) == ("verified", result.verification,
                                                                                False)
    job = next(e.payload for e in events_of(subprocessor_ledger, "subprocessor.job"))
    assert request["id"] not in str(job) and len(job["job_sha256"]) == 64  # a digest, not the id
    assert subprocessor_ledger.verify().ok


def test_nothing_is_gone_before_datadog_completes_the_request(subprocessor_ledger, datadog) -> None:
    progress = begin(datadog, subprocessor_ledger)
    assert len(progress.jobs) == 1 and not progress.done  # the DAG defers here; the triggerer polls
    assert datadog.remaining(TENANT) == {"logs": 23, "pending_requests": 1}
    assert not events_of(subprocessor_ledger, "subprocessor.result")  # no result is claimed while it runs


def test_the_poll_finds_our_request_on_a_later_page_of_the_list(run_spec, datadog) -> None:
    datadog.list_page_cap = 2
    headers = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}
    for other in (OTHER, LOOKALIKE, "acct_5003"):  # older requests fill the first page of the list
        body = {"data": {"type": "create_deletion_req", "attributes": {
            "query": {"@tenant": other}, "from": 0, "to": 1, "displayed_total": 0}}}
        assert httpx.post(f"{datadog.url}/api/v2/deletion/data/logs", json=body, headers=headers).status_code == 200
    result = run(run_spec, datadog)
    assert (result.status, result.verification) == ("verified", "find_empty: 0 left")
    assert any(call["offset"] > 0 for call in datadog.list_calls)  # it followed meta.next_page


def test_a_request_cancelled_while_it_waits_leaves_the_logs_and_says_so(run_spec, datadog, subprocessor_ledger) -> None:
    headers = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}

    def cancel_then_wait(seconds: float) -> None:
        for request_id, request in datadog.requests.items():
            if request["attributes"]["status"] == "pending":
                httpx.put(f"{datadog.url}/api/v2/deletion/requests/{request_id}/cancel", headers=headers)
        datadog.elapse(seconds=seconds)

    result = run(run_spec, datadog, sleep=cancel_then_wait)
    assert (result.deleted, result.not_deleted, result.status) == (0, 23, "incomplete")
    assert result.verification == "find_empty: 23 left"
    assert datadog.remaining(TENANT)["logs"] == 23
    finished = next(e.payload for e in events_of(subprocessor_ledger, "subprocessor.job_finished"))
    assert finished["state"] == "failed"


def test_a_rerun_after_completion_finds_nothing_and_requests_nothing(run_spec, datadog) -> None:
    run(run_spec, datadog)
    again = run(run_spec, datadog)

    assert (again.found, again.deleted, again.jobs) == (0, 0, 0)
    assert len(datadog.requests) == 1


def test_a_tenant_without_logs_gets_no_deletion_request(run_spec, datadog) -> None:
    result = run(run_spec, datadog, tenant="acct_9999")

    assert (result.found, result.deleted, result.jobs) == (0, 0, 0)
    assert datadog.requests == {} and others_untouched(datadog)


def test_logs_after_the_cutoff_stay(run_spec, datadog) -> None:
    cutoff = datetime.now(UTC) - timedelta(hours=12)
    result = run(run_spec, datadog, cutoff=cutoff)
    assert (result.status, result.verification) == ("verified", "find_empty: 0 left")  # up to the cutoff

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


def test_a_request_can_be_cancelled_for_ten_days_then_no_more(subprocessor_ledger, datadog) -> None:
    """Why the run waits for Datadog's own status: until it completes, the deletion can be undone."""
    headers = {"DD-API-KEY": API_KEY, "DD-APPLICATION-KEY": APP_KEY}
    begin(datadog, subprocessor_ledger)
    begin(datadog, subprocessor_ledger)  # a rerun inside the window submits a second request
    first, second = datadog.requests
    datadog.elapse(days=9)
    assert httpx.put(f"{datadog.url}/api/v2/deletion/requests/{first}/cancel", headers=headers).status_code == 200
    listed = httpx.get(f"{datadog.url}/api/v2/deletion/requests", params={"product": "logs"}, headers=headers)
    assert [r["attributes"]["status"] for r in listed.json()["data"]] == ["canceled", "pending"]
    by_status = httpx.get(f"{datadog.url}/api/v2/deletion/requests", params={"status": "canceled"}, headers=headers)
    assert [r["id"] for r in by_status.json()["data"]] == [first]
    datadog.elapse(days=1)
    assert httpx.put(f"{datadog.url}/api/v2/deletion/requests/{second}/cancel", headers=headers).status_code == 412
    assert datadog.remaining(TENANT)["logs"] == 0 and others_untouched(datadog)


def test_an_application_key_without_logs_delete_data_fails_loudly(run_spec) -> None:
    with populate(DatadogEmulator(page_cap=5, permissions=frozenset({"logs_read_data"})), HOURS) as datadog:
        # The pre-flight lists deletion requests (logs_delete_data): refused before the search, before any delete.
        with pytest.raises(SubprocessorError, match=r"pre-flight .* HTTP 403 \(the credentials were refused\)"):
            run(run_spec, datadog)
        assert datadog.requests == {}
        assert [path for _, path, _ in datadog.calls] == ["/api/v2/deletion/requests"]


def test_the_deletion_request_sends_json_numbers(run_spec, datadog) -> None:
    run(run_spec, datadog)
    assert datadog.string_numbers == set()


def test_the_deletion_request_displays_the_preview_count(run_spec, datadog) -> None:
    result = run(run_spec, datadog)
    [request] = datadog.requests.values()
    assert request["attributes"]["displayed_total"] == result.found


def test_the_preview_counts_only_logs_up_to_the_cutoff(run_spec, datadog) -> None:
    result = run(run_spec, datadog, cutoff=datetime.now(UTC) - timedelta(hours=12))
    assert (result.found, result.deleted) == (11, 11)


def test_a_tenant_without_logs_is_verified_at_once(run_spec, datadog) -> None:
    result = run(run_spec, datadog, tenant="acct_9999")
    assert result.status == "verified"


def test_an_application_error_is_retried_with_backoff(run_spec, datadog) -> None:
    datadog.fail_next = [500]  # through the gateway: with X-RateLimit-Reset, informational, not a wait
    datadog.period_left = 1800  # half an hour until the hourly period resets
    waits: list[float] = []
    result = run(run_spec, datadog, sleep=lambda s: waits.append(s) or datadog.elapse(seconds=s))
    assert waits and waits[0] < 60  # backoff, not the 1800 s of the informational header
    assert result.found == 23


def test_chaos_429_with_reset_seconds_and_5xx_end_with_the_same_deletion(run_spec, subprocessor_ledger) -> None:
    hours = [h + 0.5 for h in range(12)]
    with populate(DatadogEmulator(page_cap=2), hours) as clean:
        expected = run(run_spec, clean)

    chaos = populate(DatadogEmulator(page_cap=2, chaos=0.3), hours)
    with chaos:
        result = run(run_spec, chaos)  # real sleeping for rate limits: the client must honour X-RateLimit-Reset

        assert (result.found, result.deleted, result.jobs, result.status) == \
            (expected.found, expected.deleted, expected.jobs, expected.status) == (12, 12, 1, "verified")
        [request] = chaos.requests.values()  # a retried POST did not submit twice
        [clean_request] = clean.requests.values()
        assert (request["attributes"]["query"], request["attributes"]["total_unrestricted"]) == \
            (clean_request["attributes"]["query"], clean_request["attributes"]["total_unrestricted"])
        assert chaos.remaining(TENANT) == clean.remaining(TENANT) == {"logs": 0, "pending_requests": 0}
        assert sorted(log["id"] for log in chaos.logs) == sorted(log["id"] for log in clean.logs)  # the same survive
        assert others_untouched(chaos)
        assert chaos.early_calls == 0
        assert chaos.faults > 0
    assert subprocessor_ledger.verify().ok
