"""A soft delete followed by a purge (``completion: soft_delete`` with ``purge``), on a local HTTP provider that
keeps deleted records in a bin until they are purged: the purge empties the bin, and a legal hold placed
between the deletes and the purge ends the resource as ``held`` (no purge call, no verification), as a hold
placed between two delete calls does."""

from __future__ import annotations

from typing import Any

import pytest

from retention.ledger import Ledger
from retention.subprocessors import Credentials, ResourceResult, erase
from retention.subprocessors.spec import ConnectorSpec
from tests.emulators.base import Call, Emulator, Reply
from tests.fixtures.subprocessors import events_of
from tests.integration.test_holds_every_path import HELD, HoldAfterFirstOutcome

OTHER = "acct_2002"
DATA_CLASS = "error_reports"
IDS = {"method": "DELETE", "path": "/v1/accounts/{account_id}/notes", "query": {"ids": "{ids}"}}
PURGE = {"method": "DELETE", "path": "/v1/accounts/{account_id}/bin", "query": {"ids": "{ids}"}}
SPEC = {
    "subprocessor": "sentry", "docs": ["https://example.org/docs"], "conn_id": "notes",
    "base_url": "https://api.example.org", "auth": {"kind": "bearer"},
    "rate_limit": {"max_attempts": 1}, "test_request": {"method": "GET", "path": "/v1/me"},
    "resources": {
        "notes": {
            "data_class": DATA_CLASS, "description": "Notes of the account; deleted ones wait in a bin.",
            "find": {"request": {"method": "GET", "path": "/v1/accounts/{account_id}/notes"},
                     "pagination": {"style": "none"}},
            "delete": {"request": IDS, "batch": 50},  # one call for the account's notes: then the purge
            "completion": {"kind": "soft_delete", "purge": {"request": PURGE, "batch": 50}},
            "verify": {"kind": "find_empty"},
            "max_records": 100,
        },
    },
}


class BinProvider(Emulator):
    """Notes per account: a delete moves them to the account's bin, a purge of the bin removes them for good."""

    name = "bin"

    def __init__(self) -> None:
        super().__init__()
        self.notes: dict[str, list[str]] = {}  # account -> live note ids
        self.bin: dict[str, list[str]] = {}  # account -> deleted, not yet purged
        self.route("GET", r"/v1/me", lambda call: Reply(200, {}))  # the spec's credentials pre-flight
        self.route("GET", r"/v1/accounts/(?P<account>[^/]+)/notes", self._list)
        self.route("DELETE", r"/v1/accounts/(?P<account>[^/]+)/notes", self._delete)
        self.route("DELETE", r"/v1/accounts/(?P<account>[^/]+)/bin", self._purge)

    def add_account(self, account: str, notes: int) -> None:
        self.notes[account] = [f"{account}-n{i}" for i in range(notes)]
        self.bin[account] = []

    def _ids(self, call: Call) -> list[str]:
        return [i for i in (call.arg("ids") or "").split(",") if i]

    def _list(self, call: Call) -> Reply:
        return Reply(200, [{"id": note} for note in self.notes.get(call.match["account"], [])])

    def _delete(self, call: Call) -> Reply:
        account, ids = call.match["account"], self._ids(call)
        self.notes[account] = [n for n in self.notes[account] if n not in ids]
        self.bin[account] += ids
        return Reply(204)

    def _purge(self, call: Call) -> Reply:
        account, ids = call.match["account"], self._ids(call)
        self.bin[account] = [n for n in self.bin[account] if n not in ids]
        return Reply(204)

    def authorized(self, call: Call) -> bool:
        return True

    def remaining(self, tenant: str) -> dict[str, int]:
        return {"notes": len(self.notes.get(tenant, [])), "bin": len(self.bin.get(tenant, []))}

    def requests(self, path_end: str) -> list[tuple[str, str, int]]:
        return [c for c in self.calls if c[0] == "DELETE" and c[1].endswith(path_end)]


@pytest.fixture
def provider():
    with BinProvider() as running:
        running.add_account(HELD, notes=3)
        running.add_account(OTHER, notes=2)
        yield running


def run(provider: BinProvider, ledger: Any) -> ResourceResult:
    credentials = Credentials(base_url=provider.url, password="t", from_connection_host=True)
    return erase(ConnectorSpec.model_validate(SPEC), "notes", HELD, ledger=ledger, actor="test",
                 credentials=credentials, sleep=lambda seconds: None)


def test_the_purge_empties_the_bin_after_the_deletes(provider, subprocessor_ledger) -> None:
    result = run(provider, subprocessor_ledger)

    assert (result.found, result.deleted, result.status) == (3, 3, "verified")
    assert provider.remaining(HELD) == {"notes": 0, "bin": 0}
    assert provider.remaining(OTHER) == {"notes": 2, "bin": 0}
    steps = [e.payload["step"] for e in events_of(subprocessor_ledger, "subprocessor.outcome")]
    assert steps == ["delete", "purge"]


def test_a_hold_placed_between_the_deletes_and_the_purge_ends_the_resource_held(provider, tmp_path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        # The hold is written as the delete call's outcome is recorded: after the delete, before the purge.
        result = run(provider, HoldAfterFirstOutcome(ledger, DATA_CLASS))
        hold_ids = [hold.id for hold in ledger.list_holds()]
        kinds = [e.kind for e in events_of(ledger)]
        held = [e.payload for e in events_of(ledger, "subprocessor.held")]
        final = [e.payload for e in events_of(ledger, "subprocessor.result")]

    assert len(provider.requests("/notes")) == 1 and provider.requests("/bin") == []  # no purge reached it
    assert provider.remaining(HELD) == {"notes": 0, "bin": 3}  # in the bin, not purged: still there
    assert (result.status, result.deleted, result.verification) == ("held", 3, "")
    assert "subprocessor.verified" not in kinds  # what is kept is not residue
    assert kinds.count("subprocessor.intent") == kinds.count("subprocessor.outcome") == 1  # the delete's only
    assert [(h["account_id"], h["data_class"], h["holds"]) for h in held] == [(HELD, DATA_CLASS, hold_ids)]
    assert [(f["status"], f["holds"]) for f in final] == [("held", hold_ids)]
