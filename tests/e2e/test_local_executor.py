"""Every DAG under Airflow's own scheduler, LocalExecutor, dag-processor, triggerer and api-server, through the
REST API only; the ledger, the stores and the emulator are read directly to check what the runs did."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from retention.certificates import KeySet, verify_file
from tests.e2e.conftest import E2E
from tests.e2e.sweeps import DAG_ID as SWEEP
from tests.e2e.sweeps import check_swept, sweep_conf
from tests.emulators.sendgrid import SendGridEmulator

EXECUTOR = "LocalExecutor"
pytestmark = pytest.mark.e2e
OFFBOARDING, ERASURE = "termination_offboarding", "subprocessor_erasure"


def test_a_triggered_sweep_deletes_what_was_due_and_keeps_the_rest(e2e: E2E) -> None:
    e2e.product.start_offboardings()
    before = e2e.product.data.rows()
    run_id = e2e.api.trigger(SWEEP, sweep_conf(e2e.product))

    run = e2e.api.wait_until_finished(SWEEP, run_id)

    assert run["state"] == "success", e2e.api.states(SWEEP, run_id)
    check_swept(e2e, run_id, before)


def test_with_one_sql_slot_no_two_sql_locations_run_at_once(e2e: E2E) -> None:
    e2e.product.reseed()
    slots = e2e.api.pool_slots("retention_sql")
    assert slots >= 2  # as `retention pools sync` made it: two locations could run at once
    e2e.api.set_pool_slots("retention_sql", 1)
    try:
        run_id = e2e.api.trigger(SWEEP, sweep_conf(e2e.product))
        run = e2e.api.wait_until_finished(SWEEP, run_id)
    finally:
        e2e.api.set_pool_slots("retention_sql", slots)

    assert run["state"] == "success", e2e.api.states(SWEEP, run_id)
    executed = sorted((datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"]))
                       for ti in e2e.api.task_instances(SWEEP, run_id) if ti["task_id"] == "execute_sql")
    assert len(executed) >= 2
    overlaps = [(a, b) for a, b in zip(executed, executed[1:], strict=False) if b[0] < a[1]]
    assert overlaps == []


def test_an_offboarding_is_approved_by_a_second_person_and_certified_for_the_customer(e2e: E2E) -> None:
    product, api = e2e.product, e2e.api
    account = "acct_1001"
    conf = {"account_id": account, "choice": "delete", "reference": "OFF-1001", "subprocessors": ["sendgrid"]}
    product.sendgrid.pending_polls = 1
    invoices = product.data.rows()[("invoices", account)]
    own, approved = api.trigger(OFFBOARDING, conf, user="alice"), api.trigger(OFFBOARDING, conf, user="alice")
    for run_id in (own, approved):
        api.wait_for_task(OFFBOARDING, run_id, "awaiting_input", "approve")
        api.wait_until_paused(OFFBOARDING, run_id, "approve")

    # Airflow takes alice's answer to her own request; the approval task refuses it (four eyes).
    assert api.answer(OFFBOARDING, own, "approve", ["Approve"], {"reason": "mine"}, user="alice").status_code == 200
    assert api.answer(OFFBOARDING, approved, "approve", ["Approve"], {"reason": "contract ended"},
                      user="bob").status_code == 200

    refused = api.wait_until_finished(OFFBOARDING, own)
    assert refused["state"] == "failed" and api.states(OFFBOARDING, own)[("approve", -1)] == "failed"
    with product.ledger() as ledger:
        (run,) = ledger.open_runs("offboarding", airflow_run_id=own)
        kinds = [e.kind for e in ledger.run_events(run.id)]
        assert "offboarding.self_approval_refused" in kinds and "offboarding.approved" not in kinds
        assert not ledger.run_events(run.id, "batch.intent")

    done = api.wait_until_finished(OFFBOARDING, approved)
    assert done["state"] == "success", api.states(OFFBOARDING, approved)
    left = {table: n for (table, owner), n in product.data.rows().items() if owner == account and n}
    assert left == {"retention_vault.invoices": invoices}  # only the copy kept under law, isolated
    assert product.sendgrid.remaining(account)["contacts"] == 0 and product.sendgrid.remaining("acct_3003")[
        "contacts"] == 7

    link = api.xcom(OFFBOARDING, approved, "certify")["link"]
    pdf = httpx.get(f"{e2e.airflow.url}{link['path']}", timeout=30)  # the customer: no Airflow login
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    certificate = verify_file(pdf.content, KeySet.read(product.home / "keys" / "jwks.json")).certificate
    termination = certificate["termination"]
    assert (termination["requested"]["by"], termination["approved"]["by"]) == ("api:alice", "api:bob")
    assert termination["election"]["choice"] == "delete"


def test_an_async_erasure_job_waits_in_the_triggerer_with_its_task_deferred(e2e: E2E) -> None:
    sendgrid, api = e2e.product.sendgrid, e2e.api
    account = "acct_2002"
    contacts = sendgrid.remaining(account)["contacts"]
    sendgrid.pending_polls = 10**9  # the provider holds the job pending until the test has seen the deferral
    try:
        run_id = api.trigger(ERASURE, {"account_id": account, "subprocessors": ["sendgrid"]}, user="alice")
        deferred = api.wait_for_task(ERASURE, run_id, "deferred", "sendgrid.erase_")
        polls = job_polls(sendgrid)
        # The triggerer polls the job while the task is deferred: no worker process waits for it.
        e2e.airflow.wait("the triggerer polling the pending job", lambda: job_polls(sendgrid) > polls, 60)
        state = api.states(ERASURE, run_id)[(deferred["task_id"], deferred["map_index"])]
        assert state == "deferred" and sendgrid.remaining(account)["contacts"] == contacts
    finally:
        sendgrid.pending_polls = 0

    run = api.wait_until_finished(ERASURE, run_id)

    assert run["state"] == "success", api.states(ERASURE, run_id)
    assert sendgrid.remaining(account)["contacts"] == 0 and sendgrid.remaining("acct_3003")["contacts"] == 7
    with e2e.product.ledger() as ledger:
        finished = [e.payload for e in ledger.events_of_kind("subprocessor.job_finished")
                    if e.payload.get("account_id") == account]
        results = {e.payload["resource"]: e.payload["status"] for e in ledger.events_of_kind("subprocessor.result")
                   if e.payload.get("account_id") == account}
    assert finished and all(f["state"] == "done" for f in finished)
    assert results["contacts"] == "verified"


def job_polls(sendgrid: SendGridEmulator) -> int:
    return sum(1 for call in sendgrid.requests if call.path.startswith("/v3/marketing/contacts/imports/"))
