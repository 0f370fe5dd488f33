"""Bounds checked before anything is deleted: ``max_records`` over every round of a capped search, and
every id found checked by the path-value rule before the first delete call (not call by call)."""

from __future__ import annotations

import pytest

from retention.subprocessors import Credentials, SubprocessorError, erase
from retention.subprocessors.spec import ConnectorSpec
from tests.emulators.sendgrid import KEY, SendGridEmulator
from tests.fixtures.subprocessors import events_of, shipped_spec
from tests.integration.test_subprocessor_paths import SPEC, Provider

TENANT = "acct_1001"


def sendgrid_with_bound(max_records: int) -> ConnectorSpec:
    spec = shipped_spec("sendgrid")
    contacts = spec.resources["contacts"].model_copy(update={"max_records": max_records})
    return spec.model_copy(update={"resources": {**spec.resources, "contacts": contacts}})


def test_max_records_bounds_every_round_of_a_capped_search(run_spec, subprocessor_ledger) -> None:
    # 120 contacts, a search capped at 50: the first preview (50) is within 80, the second round's
    # running total (100) is not. Checked against the first preview only, all 120 would go.
    with SendGridEmulator(pending_polls=0) as sendgrid:
        sendgrid.add_tenant(TENANT, contacts=120, bounces=0, messages=0, recipients=0)
        with pytest.raises(SubprocessorError, match=r"at least 100 matching records, more than max_records \(80\)"):
            run_spec(sendgrid_with_bound(80), "contacts", TENANT, sendgrid, password=KEY, sleep=lambda s: None)
        assert sendgrid.remaining(TENANT)["contacts"] == 70  # the first round's 50 only
    intents = [e.payload for e in events_of(subprocessor_ledger, "subprocessor.intent")]
    assert sum(i["count"] for i in intents) == 50


def test_a_capped_search_within_its_bound_still_goes_all_the_way(run_spec) -> None:
    with SendGridEmulator(pending_polls=0) as sendgrid:
        sendgrid.add_tenant(TENANT, contacts=120, bounces=0, messages=0, recipients=0)
        result = run_spec(sendgrid_with_bound(120), "contacts", TENANT, sendgrid, password=KEY,
                          sleep=lambda s: None)
        assert (result.found, result.deleted, result.status) == (120, 120, "verified")


@pytest.mark.parametrize("bad", ["..", "."])
def test_a_bad_id_among_good_ones_stops_every_delete_of_the_batch(subprocessor_ledger, bad) -> None:
    # Batch of one: c1 and c2 come before the bad id. Checked call by call, they would be deleted
    # before the bad one is refused; checked up front, nothing is.
    with Provider() as provider:
        provider.contacts = [{"id": "c1"}, {"id": "c2"}, {"id": bad}]
        credentials = Credentials(base_url=provider.url, password="t", from_connection_host=True)
        with pytest.raises(SubprocessorError, match=r"refused before any deletion.*\{id\}"):
            erase(ConnectorSpec.model_validate(SPEC), "contacts", TENANT, ledger=subprocessor_ledger, actor="test",
                  credentials=credentials, sleep=lambda seconds: None)
        assert provider.deletes() == []
    assert not events_of(subprocessor_ledger, "subprocessor.intent")
