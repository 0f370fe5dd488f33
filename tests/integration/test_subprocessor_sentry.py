"""Sentry spec against the Sentry emulator: project-per-customer fan-out, Link-header pages, bulk remove by ids only."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import yaml

from retention.rules.errors import RulesError
from retention.subprocessors import SubprocessorError, load_spec
from tests.emulators.sentry import ORG, TOKEN, SentryEmulator
from tests.fixtures.subprocessors import RULES, events_of, shipped_spec

TENANT, OTHER, LOOKALIKE = "acct_1001", "acct_2002", "acct_10010"
OTHERS = {OTHER: {"unresolved": 6, "resolved": 2}, LOOKALIKE: {"unresolved": 3, "ignored": 1},
          "backend": {"unresolved": 4, "resolved": 1}}


def populate(emulator: SentryEmulator, tenant_issues: dict[str, int]) -> SentryEmulator:
    emulator.add_project("backend", **OTHERS["backend"])  # our own service's project
    emulator.add_project(TENANT, **tenant_issues)
    emulator.add_project(LOOKALIKE, **OTHERS[LOOKALIKE])  # a slug that starts with the tenant's
    emulator.add_project(OTHER, **OTHERS[OTHER])
    return emulator


@pytest.fixture
def sentry():
    emulator = populate(SentryEmulator(page_size=25), {"unresolved": 97, "resolved": 21, "ignored": 12})
    with emulator:
        yield emulator


def run(run_spec, emulator, tenant=TENANT, **kwargs):
    return run_spec(shipped_spec("sentry"), "issues", tenant, emulator, password=TOKEN, **kwargs)


def others_untouched(emulator: SentryEmulator) -> bool:
    return all(emulator.remaining(slug) == {"issues": sum(counts.values()), "pending_deletion": 0}
               for slug, counts in OTHERS.items())


def test_every_issue_of_the_tenant_goes_across_pages_and_statuses_and_others_stay(
        run_spec, sentry, subprocessor_ledger) -> None:
    result = run(run_spec, sentry, sleep=lambda s: None)

    assert (result.found, result.deleted, result.not_deleted, result.status) == (130, 130, 0, "verified")
    assert result.verification == "get_absent: 0 left"
    assert sentry.remaining(TENANT) == {"issues": 0, "pending_deletion": 130}  # resolved and ignored too
    assert others_untouched(sentry)
    assert result.residual_copies_until is not None  # Sentry's 90-day event retention
    # 130 ids in batches of 100, each call naming its ids
    assert [(r["project"], len(r["ids"]), r["removed"]) for r in sentry.bulk_removes] == [
        (TENANT, 100, 100), (TENANT, 30, 30)]
    kinds = [e.kind for e in events_of(subprocessor_ledger)]
    assert kinds.count("subprocessor.intent") == kinds.count("subprocessor.outcome") == 2
    assert kinds.count("subprocessor.preview") == 1 and kinds.count("subprocessor.verified") == 1
    assert kinds[-1] == "subprocessor.result"
    verified = next(e.payload for e in events_of(subprocessor_ledger, "subprocessor.verified"))
    assert (verified["method"], verified["left"]) == ("get_absent", 0)
    assert subprocessor_ledger.verify().ok

    assert sentry.finish_deletions() == 130  # Sentry's deletion task
    assert sentry.remaining(TENANT) == {"issues": 0, "pending_deletion": 0} and others_untouched(sentry)


def test_no_delete_reaches_sentry_without_ids(run_spec, sentry) -> None:
    run(run_spec, sentry, sleep=lambda s: None)

    deletes = [c for c in sentry.calls if c[0] == "DELETE"]
    assert len(deletes) == len(sentry.bulk_removes) == 2
    assert all(r["ids"] and r["removed"] == len(r["ids"]) for r in sentry.bulk_removes)


def test_an_empty_project_gets_no_delete_at_all(run_spec) -> None:
    # An id-less remove here would wipe the project's unresolved issues: nothing to delete means no call.
    with populate(SentryEmulator(page_size=5), {}) as sentry:
        result = run(run_spec, sentry, sleep=lambda s: None)

        assert (result.found, result.deleted, result.status) == (0, 0, "verified")
        assert sentry.bulk_removes == [] and not [c for c in sentry.calls if c[0] == "DELETE"]
        assert others_untouched(sentry)


def test_the_emulator_removes_by_search_when_no_id_is_given_as_sentry_does(sentry) -> None:
    """The danger the spec avoids is real in the emulator, so the tests above prove something."""
    url = f"{sentry.url}/api/0/projects/{ORG}/{OTHER}/issues/"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.delete(url, params={"id[]": ""}, headers=headers).status_code == 204
    assert sentry.remaining(OTHER) == {"issues": 2, "pending_deletion": 6}  # every unresolved issue
    assert httpx.delete(url, params={"query": ""}, headers=headers).status_code == 204
    assert sentry.remaining(OTHER) == {"issues": 0, "pending_deletion": 8}


def test_the_loader_refuses_the_spec_without_ids_in_its_delete(tmp_path: Path) -> None:
    raw = yaml.safe_load((RULES / "subprocessors" / "sentry.yaml").read_text())
    raw["resources"]["issues"]["delete"]["request"]["query"] = {"query": "is:unresolved"}
    broken = tmp_path / "sentry.yaml"
    broken.write_text(yaml.safe_dump(raw))
    with pytest.raises(RulesError, match="must name \\{ids\\}"):
        load_spec(broken)


def test_a_token_without_event_admin_fails_loudly_and_deletes_nothing(run_spec) -> None:
    with populate(SentryEmulator(page_size=50, scopes=frozenset({"project:read", "event:read"})),
                  {"unresolved": 5}) as sentry:
        with pytest.raises(SubprocessorError, match="delete answered HTTP 403"):
            run(run_spec, sentry, sleep=lambda s: None)
        assert sentry.remaining(TENANT) == {"issues": 5, "pending_deletion": 0} and others_untouched(sentry)


def test_a_rerun_finds_nothing_and_deletes_nothing(run_spec, sentry) -> None:
    run(run_spec, sentry, sleep=lambda s: None)
    again = run(run_spec, sentry, sleep=lambda s: None)

    assert (again.found, again.deleted, again.status) == (0, 0, "verified")
    assert len(sentry.bulk_removes) == 2


def test_a_customer_without_a_project_has_nothing_at_sentry(run_spec, sentry) -> None:
    result = run(run_spec, sentry, tenant="acct_9999", sleep=lambda s: None)

    assert (result.found, result.deleted, result.status) == (0, 0, "verified")
    assert sentry.bulk_removes == [] and others_untouched(sentry)


def test_chaos_429_with_epoch_reset_and_5xx_end_with_the_same_deletion(run_spec, subprocessor_ledger) -> None:
    issues = {"unresolved": 4, "resolved": 1, "ignored": 1}
    with populate(SentryEmulator(page_size=3), issues) as clean:
        expected = run(run_spec, clean, sleep=lambda s: None)

    chaos = populate(SentryEmulator(page_size=3, chaos=0.3), issues)
    with chaos:
        started = time.monotonic()
        result = run(run_spec, chaos)  # real sleeping: the client must honour the reset header
        elapsed = time.monotonic() - started

        assert (result.found, result.deleted, result.status, result.verification) == \
            (expected.found, expected.deleted, expected.status, expected.verification) == \
            (6, 6, "verified", "get_absent: 0 left")
        assert [r["ids"] for r in chaos.bulk_removes] == [r["ids"] for r in clean.bulk_removes]  # the same ids
        assert chaos.remaining(TENANT) == clean.remaining(TENANT) == {"issues": 0, "pending_deletion": 6}
        assert others_untouched(chaos)
        assert chaos.early_calls == 0
        assert chaos.faults > 0
        assert elapsed < 30
    assert subprocessor_ledger.verify().ok
