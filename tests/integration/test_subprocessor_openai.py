"""OpenAI spec against the OpenAI emulator: recorded ids, conversation items before conversations, files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from retention.subprocessors import SubprocessorError
from tests.emulators.openai import TOKEN, OpenAIEmulator
from tests.fixtures.subprocessors import events_of, shipped_spec

TENANT, OTHER = "acct_1001", "acct_2002"
OTHER_DATA = {"responses": 2, "conversations": 1, "conversation_items": 2, "files": 2}


def populate(emulator: OpenAIEmulator, *, responses: int = 4, conversations: int = 3, items: int = 7,
             files: int = 5) -> OpenAIEmulator:
    emulator.add_tenant(TENANT, responses=responses, conversations=conversations, items=items, files=files)
    emulator.add_tenant(OTHER, responses=2, conversations=1, items=2, files=2)
    return emulator


@pytest.fixture
def openai():
    with populate(OpenAIEmulator(page_cap=3)) as emulator:
        yield emulator


def run(run_spec, emulator, resource, tenant=TENANT, **kwargs):
    kwargs.setdefault("sleep", lambda seconds: None)
    return run_spec(shipped_spec("openai"), resource, tenant, emulator, password=TOKEN,
                    recorded_ids=lambda recorded, account: emulator.recorded(recorded.kind, account), **kwargs)


def test_stored_responses_recorded_at_creation_go_and_others_stay(run_spec, openai, subprocessor_ledger) -> None:
    result = run(run_spec, openai, "responses")

    assert (result.found, result.deleted, result.already_gone, result.status) == (4, 4, 0, "verified")
    assert result.verification == "get_absent: 0 left"
    assert result.residual_copies_until > datetime.now(UTC) + timedelta(days=29)  # abuse-monitoring logs
    assert openai.remaining(TENANT)["responses"] == 0
    assert openai.remaining(OTHER) == OTHER_DATA
    kinds = [e.kind for e in events_of(subprocessor_ledger)]
    assert kinds.count("subprocessor.intent") == kinds.count("subprocessor.outcome") == 4
    verified = events_of(subprocessor_ledger, "subprocessor.verified")[0].payload
    assert (verified["method"], verified["left"]) == ("get_absent", 0)
    final = events_of(subprocessor_ledger, "subprocessor.result")[0].payload
    assert (final["status"], final["data_class"]) == ("verified", "ai_conversations")
    assert subprocessor_ledger.verify().ok


def test_conversation_items_go_first_across_cursor_pages_then_the_conversations(
        run_spec, openai, subprocessor_ledger) -> None:
    items = run(run_spec, openai, "conversation_items")

    assert (items.found, items.deleted, items.status) == (21, 21, "verified")
    assert items.verification == "find_empty: 0 left"
    listings = [c for c in openai.calls if c[0] == "GET" and c[1].endswith("/items")]
    assert len(listings) == 3 * 3 + 3  # 7 items in pages of 3 per conversation, then one empty page each
    assert openai.remaining(TENANT)["conversation_items"] == 0

    conversations = run(run_spec, openai, "conversations")

    assert (conversations.found, conversations.deleted, conversations.status) == (3, 3, "verified")
    assert conversations.verification == "get_absent: 0 left"
    assert openai.remaining(TENANT) == {"responses": 4, "conversations": 0, "conversation_items": 0, "files": 5}
    assert openai.remaining(OTHER) == OTHER_DATA
    previews = [e.payload for e in events_of(subprocessor_ledger, "subprocessor.preview")]
    assert [(p["resource"], p["found"], p["scopes"]) for p in previews] == [
        ("conversation_items", 21, 3), ("conversations", 3, 1)]
    assert subprocessor_ledger.verify().ok


def test_deleting_a_conversation_first_strands_its_items(run_spec, openai) -> None:
    """Why the order matters: OpenAI keeps a deleted conversation's items, and no longer lists them."""
    conversations = run(run_spec, openai, "conversations")
    assert conversations.status == "verified"
    assert openai.remaining(TENANT)["conversation_items"] == 21  # still stored at OpenAI

    with pytest.raises(SubprocessorError, match="find answered HTTP 404"):
        run(run_spec, openai, "conversation_items")  # loud, not a false "verified"


def test_files_recorded_at_upload_go_and_the_other_tenants_files_stay(run_spec, openai, subprocessor_ledger) -> None:
    result = run(run_spec, openai, "files")

    assert (result.found, result.deleted, result.status) == (5, 5, "verified")
    assert result.verification == "get_absent: 0 left"
    assert openai.remaining(TENANT)["files"] == 0 and openai.remaining(OTHER) == OTHER_DATA
    listing = httpx.get(f"{openai.url}/v1/files", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert sorted(f["id"] for f in listing["data"]) == sorted(openai.recorded("openai_file", OTHER))
    assert subprocessor_ledger.verify().ok


def test_a_rerun_finds_the_recorded_ids_already_gone(run_spec, openai) -> None:
    run(run_spec, openai, "responses")
    again = run(run_spec, openai, "responses")
    assert (again.found, again.deleted, again.already_gone, again.status) == (4, 0, 4, "verified")


def test_ledger_events_hold_no_ids_only_digests_and_counts(run_spec, openai, subprocessor_ledger) -> None:
    for resource in ("responses", "conversation_items", "conversations", "files"):
        run(run_spec, openai, resource)
    text = json.dumps([e.payload for e in events_of(subprocessor_ledger)])
    assert not any(prefix in text for prefix in ("resp_", "conv_", "msg_", "file-"))
    calls = [e.payload for e in events_of(subprocessor_ledger, "subprocessor.call")]
    # templates, not URLs (the pre-flight's names nothing)
    assert calls and all("{" in c["path"] for c in calls if c["operation"] != "preflight")


def test_chaos_deletes_the_same_objects_as_a_clean_run(run_spec) -> None:
    def erase_all(emulator: OpenAIEmulator, **kwargs) -> set[str]:
        with emulator:
            for resource in ("responses", "conversation_items", "conversations", "files"):
                result = run(run_spec, emulator, resource, **kwargs)
                assert result.status == "verified" and result.verification.endswith(": 0 left")
            assert emulator.remaining(TENANT) == dict.fromkeys(OTHER_DATA, 0)
            assert emulator.remaining(OTHER) == OTHER_DATA
            return set(emulator.deleted)

    small = {"responses": 2, "conversations": 2, "items": 2, "files": 2}  # ~30 calls, ~9 faults, ~11 s
    clean = erase_all(populate(OpenAIEmulator(page_cap=2), **small))
    chaotic = populate(OpenAIEmulator(page_cap=2, chaos=0.3), **small)
    deleted = erase_all(chaotic, sleep=None)  # real waiting: x-ratelimit-reset-requests must be honoured

    assert deleted == clean and len(clean) == 2 + 2 * 2 + 2 + 2
    assert chaotic.faults > 0
    assert any(status == 429 for _, _, status in chaotic.calls)  # the Go-duration reset was exercised
    assert chaotic.early_calls == 0
