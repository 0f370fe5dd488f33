"""Heroku spec against the Heroku emulator: the tenant's dedicated database add-on, found by exact name
across Range-paged listings, deleted, and checked absent; the API version header on every call."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.emulators.heroku import ACCEPT, APP, TOKEN, HerokuEmulator
from tests.fixtures.subprocessors import events_of, shipped_spec

TENANT, OTHER, PREFIXED = "acct_1001", "acct_2002", "acct_10011"  # PREFIXED: TENANT's id is a prefix of it
FILLERS = [f"acct_3{i:03d}" for i in range(20)]


def populate(emulator: HerokuEmulator) -> HerokuEmulator:
    for tenant in (TENANT, OTHER, PREFIXED, *FILLERS):
        emulator.add_tenant(tenant)
    emulator.add_addon(f"{TENANT}-db-archive", plan="heroku-postgresql:essential-0")  # not the convention
    emulator.add_addon("shared-redis", plan="heroku-redis:premium-0")
    emulator.add_addon("papertrail-logs", plan="papertrail:choklad")
    return emulator


@pytest.fixture
def heroku():
    with populate(HerokuEmulator(page_max=4)) as emulator:  # 26 add-ons: 7 pages
        yield emulator


def run(run_spec, emulator, resource="tenant_database", tenant=TENANT, **kwargs):
    kwargs.setdefault("sleep", lambda seconds: None)
    return run_spec(shipped_spec("heroku"), resource, tenant, emulator, password=TOKEN, **kwargs)


def others_untouched(emulator) -> None:
    assert all(emulator.remaining(t) == {"addons": 1} for t in (OTHER, PREFIXED, *FILLERS))
    names = {a["name"] for a in emulator.addons.values()}
    assert {f"{TENANT}-db-archive", "shared-redis", "papertrail-logs"} <= names


def test_the_tenant_database_is_found_across_range_pages_deleted_and_checked_absent(
        run_spec, heroku, subprocessor_ledger) -> None:
    result = run(run_spec, heroku)

    assert (result.found, result.deleted, result.already_gone) == (1, 1, 0)
    assert (result.status, result.verification) == ("verified", "get_absent: 0 left")
    assert heroku.remaining(TENANT) == {"addons": 0} and heroku.deleted == [f"{TENANT}-db"]
    others_untouched(heroku)
    listings = [c for c in heroku.requests if c.method == "GET" and c.path == f"/apps/{APP}/addons"]
    assert len(listings) == 7  # 26 add-ons, 4 a page
    assert "range" not in listings[0].headers
    assert all(c.headers["range"].startswith("id ]") for c in listings[1:])  # each the previous Next-Range
    kinds = [e.kind for e in events_of(subprocessor_ledger)]
    assert kinds.count("subprocessor.intent") == kinds.count("subprocessor.outcome") == 1
    assert kinds.count("subprocessor.verified") == 1
    assert subprocessor_ledger.verify().ok


def test_every_call_names_the_api_version_and_the_emulator_refuses_one_without(run_spec, heroku) -> None:
    run(run_spec, heroku)
    assert heroku.requests and all(c.headers.get("accept") == ACCEPT for c in heroku.requests)

    unversioned = httpx.get(f"{heroku.url}/apps/{APP}/addons", headers={"Authorization": f"Bearer {TOKEN}"})
    assert unversioned.status_code == 400 and unversioned.json()["id"] == "missing_version"


def test_an_addon_deleted_meanwhile_counts_as_already_gone(run_spec, heroku) -> None:
    heroku.ghosts.add(f"{TENANT}-db")  # still listed, but DELETE and GET answer 404 not_found
    result = run(run_spec, heroku)

    assert (result.found, result.deleted, result.already_gone) == (1, 0, 1)
    assert (result.status, result.verification) == ("verified", "get_absent: 0 left")
    others_untouched(heroku)


def test_an_account_without_a_database_has_nothing_to_delete(run_spec, heroku) -> None:
    result = run(run_spec, heroku, tenant="acct_9999")
    assert (result.found, result.deleted, result.status) == (0, 0, "verified")
    assert not any(c.method == "DELETE" for c in heroku.requests)


def test_a_rerun_finds_nothing_and_deletes_nothing(run_spec, heroku) -> None:
    run(run_spec, heroku)
    again = run(run_spec, heroku)
    assert (again.found, again.deleted, again.status) == (0, 0, "verified")
    assert sum(1 for c in heroku.requests if c.method == "DELETE") == 1


def test_a_rate_limit_without_retry_after_waits_the_specs_default(run_spec, heroku) -> None:
    waits: list[float] = []
    heroku.throttle(2)
    result = run(run_spec, heroku, sleep=waits.append)

    assert result.status == "verified"
    assert waits[:2] == [pytest.approx(2.05), pytest.approx(2.05)]  # default_wait PT2S, a little past


# -- chaos -----------------------------------------------------------------------------------------

def test_under_chaos_the_same_database_goes_as_in_a_clean_run(run_spec) -> None:
    """30 % of calls answer 429 (no Retry-After, as Heroku's) or 5xx; real sleeping, small data."""
    def emulator(chaos: float) -> HerokuEmulator:
        made = HerokuEmulator(chaos=chaos, page_max=4)
        for tenant in (TENANT, OTHER, PREFIXED, *FILLERS[:9]):  # 12 add-ons: 3 pages
            made.add_tenant(tenant)
        return made

    with emulator(0.0) as clean:
        expected = run(run_spec, clean)
    started = time.monotonic()
    with emulator(0.3) as chaotic:
        result = run(run_spec, chaotic, sleep=None)  # real waiting
    assert time.monotonic() - started < 30

    assert (expected.found, expected.deleted, expected.status) == (1, 1, "verified")
    assert (result.found, result.deleted, result.already_gone, result.status) == (1, 1, 0, "verified")
    assert chaotic.deleted == clean.deleted == [f"{TENANT}-db"]
    assert len(chaotic.addons) == len(clean.addons) == 11
    assert chaotic.faults > 0
    assert chaotic.early_calls == 0  # never called again before the bucket had refilled
