"""The staff routes the operator page reads, in Airflow's real api-server app over swept demo accounts: what placing
a hold keeps and what releasing it lets the sweep delete (the same count the forecast shows once it is released),
the next sweep from Airflow's own metadata database, the account picker, customer names beside ids, offboardings
linked into Airflow's UI, the page's settings, and validation errors in words next to their field."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pendulum
import pytest
import sqlalchemy as sa

from retention import embedded
from retention.engine.tasks import context
from retention.ids import ACCOUNT_ID_RULE
from retention.ledger import Ledger
from retention.offboarding.plan import plan_offboarding
from retention.offboarding.request import OffboardingRequest
from retention.offboarding.status import AWAITING_APPROVAL
from retention.settings import Settings
from tests.fixtures.adhoc_dags import registered
from tests.fixtures.api import bearer

ACCOUNT, OTHER = "acct_1001", "acct_2002"
NAMES = {"acct_1001": "Northwind Traders GmbH", "acct_2002": "Contoso Retail Inc.", "acct_3003": "Fabrikam Ltd",
         "acct_4004": "Tailspin Toys SE", "acct_5005": "Alpine Ski House AG", "acct_6006": "Wide World Importers LLC"}
CLASS = "visitor_activity"  # page_views (systems.yaml)
SWEEP_DAG = Path(__file__).resolve().parents[2] / "dags" / "retention_sweep.py"


def add_old_page_views(stack, account: str, n: int) -> None:
    """``n`` page views of the account older than any rule keeps them, written after the fixture's sweep: the next
    sweep finds exactly these due."""
    engine = sa.create_engine(stack.app_url)
    with engine.begin() as conn:
        conn.execute(embedded.APP.tables["page_views"].insert(), [
            {"account_id": account, "viewed_at": stack.now.subtract(days=4000), "url": "/pricing",
             "visitor_id": f"v-old-{i}"} for i in range(n)])
    engine.dispose()


def due_today(api, account: str | None, data_class: str | None) -> Counter:
    """Day 0 of ``GET /forecast?days=1`` in a scope (None: any): records per account."""
    document = api.get("/retention/forecast", params={"days": 1}, headers=api.staff).json()
    due: Counter = Counter()
    for line in document["lines"]:
        if line["day"] == document["start"] and account in (None, line["account_id"]) and data_class in (
                None, line["data_class"]):
            due[line["account_id"]] += line["records"]
    return due


def place(api, **scope) -> dict:
    placed = api.post("/retention/holds", headers=api.staff, json={"reason": "litigation", "reference": "LEGAL-14",
                                                                   **scope})
    assert placed.status_code == 201, placed.text
    return placed.json()


def events() -> int:
    with Ledger.open(Settings.from_env().database_url) as ledger:
        return len(list(ledger.events()))


def test_a_hold_keeps_and_its_release_resumes_exactly_what_the_forecast_shows_once_released(api, stack) -> None:
    add_old_page_views(stack, ACCOUNT, 7)
    hold = place(api, account_id=ACCOUNT, data_class=CLASS)
    assert hold["keeps"] == {"records": 7, "accounts": 1}
    assert due_today(api, ACCOUNT, CLASS) == Counter()  # held: the forecast shows nothing due there

    preview = api.get(f"/retention/holds/{hold['id']}/release-preview", headers=api.staff)
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert shown["resumes"] == {"records": 7, "by_data_class": {CLASS: 7},
                                "by_account": [{"account_id": ACCOUNT, "customer": NAMES[ACCOUNT], "records": 7}]}
    assert {k: shown["hold"][k] for k in ("id", "account_id", "customer", "data_class", "reference", "reason")} == {
        "id": hold["id"], "account_id": ACCOUNT, "customer": NAMES[ACCOUNT], "data_class": CLASS,
        "reference": "LEGAL-14", "reason": "litigation"}
    released = api.post(f"/retention/holds/{hold['id']}/release", headers=api.staff, json={"reason": "matter closed"})
    assert released.status_code == 200, released.text

    assert due_today(api, ACCOUNT, CLASS) == Counter({ACCOUNT: shown["resumes"]["records"]})


def test_a_class_wide_hold_counts_every_account_it_covers(api, stack) -> None:
    add_old_page_views(stack, ACCOUNT, 3)
    add_old_page_views(stack, OTHER, 4)
    hold = place(api, data_class=CLASS)
    assert (hold["keeps"], hold["account_id"], hold["customer"]) == ({"records": 7, "accounts": 2}, None, None)
    resumes = api.get(f"/retention/holds/{hold['id']}/release-preview", headers=api.staff).json()["resumes"]
    assert resumes["by_account"] == [{"account_id": OTHER, "customer": NAMES[OTHER], "records": 4},
                                     {"account_id": ACCOUNT, "customer": NAMES[ACCOUNT], "records": 3}]
    api.post(f"/retention/holds/{hold['id']}/release", headers=api.staff, json={"reason": "matter closed"})
    assert due_today(api, None, CLASS) == Counter({OTHER: 4, ACCOUNT: 3})


def test_a_hold_over_nothing_due_keeps_nothing_now(api) -> None:
    hold = place(api, account_id=ACCOUNT)  # the fixture swept everything due
    assert hold["keeps"] == {"records": 0, "accounts": 0}
    assert api.get(f"/retention/holds/{hold['id']}/release-preview", headers=api.staff).json()["resumes"] == {
        "records": 0, "by_account": [], "by_data_class": {}}


def test_a_hold_stands_when_what_it_keeps_cannot_be_counted(api, stack, monkeypatch) -> None:
    """The object store is unreachable: the hold is placed and in force all the same, and the answer says its count
    is missing (a 500 would have the person place it again)."""
    closed = f"http://127.0.0.1:{embedded.free_port()}"
    monkeypatch.setenv("AIRFLOW_CONN_OBJECT_STORE", embedded.airflow_connections(stack.app_url, closed)[
        "AIRFLOW_CONN_OBJECT_STORE"])
    placed = api.post("/retention/holds", headers=api.staff,
                      json={"account_id": ACCOUNT, "reason": "litigation", "reference": "LEGAL-14"})
    assert placed.status_code == 201, placed.text
    assert placed.json()["keeps"] is None and placed.json()["keeps_not_counted"]
    assert [h["id"] for h in api.get("/retention/holds", headers=api.staff).json()] == [placed.json()["id"]]


def test_a_preview_of_an_unknown_or_released_hold_is_refused_and_changes_nothing(api) -> None:
    assert api.get("/retention/holds/hold-nope/release-preview", headers=api.staff).status_code == 404
    hold = place(api, account_id=ACCOUNT)
    path = f"/retention/holds/{hold['id']}/release-preview"
    assert api.get(path).status_code == 401
    before = events()
    assert api.get(path, headers=api.staff).status_code == 200
    assert events() == before
    api.post(f"/retention/holds/{hold['id']}/release", headers=api.staff, json={"reason": "matter closed"})
    refused = api.get(path, headers=api.staff)
    assert refused.status_code == 409 and "already released" in refused.json()["detail"]


@pytest.fixture
def sweep_dag(airflow_db):
    """The real ``retention_sweep`` DAG of dags/ in Airflow's metadata database, as the dag-processor writes it;
    removed afterwards (no other test expects it there)."""
    from airflow.api.common.delete_dag import delete_dag
    from airflow.dag_processing.dagbag import DagBag

    registered(DagBag(dag_folder=str(SWEEP_DAG)).dags["retention_sweep"])
    yield "retention_sweep"
    delete_dag("retention_sweep")


def next_run_after(dag_id: str):
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.get(DagModel, dag_id).next_dagrun_create_after


def test_the_next_sweep_is_what_airflow_scheduled_and_none_while_the_dag_is_paused(api, sweep_dag) -> None:
    hold = place(api, account_id=ACCOUNT)
    preview = f"/retention/holds/{hold['id']}/release-preview"
    unpaused = api.patch(f"/api/v2/dags/{sweep_dag}", headers=api.staff, json={"is_paused": False})
    assert unpaused.status_code == 200, unpaused.text
    shown = api.get(preview, headers=api.staff).json()
    scheduled = next_run_after(sweep_dag)  # @daily: a midnight (with no scheduler here, possibly today's, passed)
    assert scheduled is not None and pendulum.instance(scheduled).time() == pendulum.time(0, 0)
    assert (shown["next_sweep_source"], shown["sweep_paused"]) == ("airflow", False)
    assert pendulum.parse(shown["next_sweep"]) == pendulum.instance(scheduled)

    api.patch(f"/api/v2/dags/{sweep_dag}", headers=api.staff, json={"is_paused": True})
    shown = api.get(preview, headers=api.staff).json()
    assert (shown["next_sweep"], shown["next_sweep_source"], shown["sweep_paused"]) == (None, "airflow", True)


def test_without_the_sweep_dag_in_airflow_the_next_sweep_is_unknown(api) -> None:
    hold = place(api, account_id=ACCOUNT)
    shown = api.get(f"/retention/holds/{hold['id']}/release-preview", headers=api.staff).json()
    assert (shown["next_sweep"], shown["next_sweep_source"], shown["sweep_paused"]) == (None, "unknown", None)


def test_holds_show_their_reason_customer_and_who_placed_them_through_which_channel(api) -> None:
    place(api, account_id=ACCOUNT, data_class=CLASS)
    with Ledger.open(Settings.from_env().database_url) as ledger:
        ledger.place_hold(account_id=None, data_class="chat_transcripts", reason="regulator inquiry",
                          reference="REG-3", placed_by="cli:alice")
    listed = {h["reference"]: h for h in api.get("/retention/holds", headers=bearer("auditor-2", "viewer")).json()}
    by_api, by_cli = listed["LEGAL-14"], listed["REG-3"]
    assert (by_api["customer"], by_api["reason"], by_api["placed_by_user"], by_api["placed_via"]) == (
        NAMES[ACCOUNT], "litigation", "dpo-7", "Airflow")
    assert (by_cli["account_id"], by_cli["customer"], by_cli["reason"]) == (None, None, "regulator inquiry")
    assert (by_cli["placed_by"], by_cli["placed_by_user"], by_cli["placed_via"]) == ("cli:alice", "alice", "CLI")


def test_invalid_hold_input_answers_in_words_with_the_field_first(api) -> None:
    def refused(body: dict, detail: str, path: str = "/retention/holds") -> None:
        answer = api.post(path, headers=api.staff, json=body)
        assert (answer.status_code, answer.json()["detail"]) == (422, detail), answer.text

    full = {"account_id": ACCOUNT, "reason": "litigation", "reference": "LEGAL-14"}
    refused({**full, "reason": "no"}, "reason: must be at least 3 characters")
    refused({k: v for k, v in full.items() if k != "reference"}, "reference: is required")
    refused({**full, "reference": ""}, "reference: must not be empty")
    # One account-id rule (retention.ids) for every path: ':' and a leading '.' are not ids the registry can hold.
    for not_an_id in ("jane@example.org", "acct:1001", ".acct_1001"):
        refused({**full, "account_id": not_an_id}, f"account_id: must be an account id ({ACCOUNT_ID_RULE})")
    refused({"reason": "litigation", "reference": "T-1"}, "account_id: choose an account, a data class, or both "
                                                          "(a hold on everything is not a hold)")
    personal = api.post("/retention/holds", headers=api.staff, json={**full, "reason": "call jane@example.org"})
    assert personal.status_code == 422 and personal.json()["detail"].startswith("reason: looks like an email address; ")
    both = api.post("/retention/holds", headers=api.staff, json={"account_id": ACCOUNT, "reason": "x"})
    assert [e["field"] for e in both.json()["errors"]] == ["reason", "reference"]
    assert "jane@example.org" not in api.post("/retention/holds", headers=api.staff,
                                              json={**full, "account_id": "jane@example.org"}).text
    hold = place(api, account_id=ACCOUNT)
    refused({"reason": "ok"}, "reason: must be at least 3 characters", f"/retention/holds/{hold['id']}/release")
    assert [h["id"] for h in api.get("/retention/holds", headers=api.staff).json()] == [hold["id"]]


def test_the_account_picker_finds_accounts_by_id_or_customer_name(api) -> None:
    def found(**params) -> list[str]:
        answer = api.get("/retention/accounts", params=params, headers=bearer("auditor-2", "viewer"))
        assert answer.status_code == 200, answer.text
        return [a["account_id"] for a in answer.json()]

    by_name = sorted(NAMES, key=lambda a: NAMES[a].casefold())
    assert found() == by_name
    assert found(q="NORTHWIND") == found(q="1001") == [ACCOUNT]
    assert found(q="acct_", limit=2) == by_name[:2]
    assert found(q="nobody") == []
    (northwind,) = api.get("/retention/accounts", params={"q": "north"}, headers=api.staff).json()
    assert northwind == {"account_id": ACCOUNT, "customer": NAMES[ACCOUNT], "state": "active", "jurisdiction": "EEA"}
    for limit in (0, 101):
        assert api.get("/retention/accounts", params={"limit": limit}, headers=api.staff).status_code == 422
    assert api.get("/retention/accounts").status_code == 401


def test_the_account_picker_finds_an_account_whose_registry_row_was_refused(api, refused_registry_row) -> None:
    answer = api.get("/retention/accounts", params={"q": "2002"}, headers=api.staff).json()
    assert answer == [{"account_id": OTHER, "customer": None, "state": None, "jurisdiction": None}]
    assert api.get("/retention/accounts", headers=api.staff).json()[-1]["account_id"] == OTHER  # unnamed: last


def test_offboardings_link_to_their_airflow_run_and_its_required_actions(api) -> None:
    airflow_run = "manual__2026-11-30T17:40:00+00:00"
    with context() as ctx:
        made_by_dag = plan_offboarding(ctx, OffboardingRequest(account_id=ACCOUNT, choice="delete", reference="T-88"),
                                       pendulum.now("UTC"), requested_by="api:csm-3", actor="test",
                                       dag_id="termination_offboarding", airflow_run_id=airflow_run)["run_id"]
        made_alone = plan_offboarding(ctx, OffboardingRequest(account_id=OTHER, choice="delete", reference="T-89"),
                                      pendulum.now("UTC"), requested_by="api:csm-3", actor="test")["run_id"]
    listed = {o["run_id"]: o for o in api.get("/retention/offboardings", headers=api.staff).json()}
    by_dag, alone = listed[made_by_dag], listed[made_alone]
    assert (by_dag["stage"], by_dag["customer"], by_dag["dag_id"]) == (
        AWAITING_APPROVAL, NAMES[ACCOUNT], "termination_offboarding")
    assert by_dag["run_url"] == "/dags/termination_offboarding/runs/manual__2026-11-30T17%3A40%3A00%2B00%3A00"
    assert by_dag["required_actions_url"] == ("/required_actions?dag_display_name_pattern=termination_offboarding"
                                              "&response_received=false")
    assert (alone["customer"], alone["dag_id"], alone["run_url"], alone["required_actions_url"]) == (
        NAMES[OTHER], None, None, None)


def test_the_forecast_names_the_customer_of_every_account_it_lists(api) -> None:
    document = api.get("/retention/forecast", params={"days": 366}, headers=api.staff).json()
    named = {line["account_id"] for line in document["lines"]} | {
        t["account_id"] for t in document["overdue_terminations"] + document["terminations_due"]}
    assert named and document["customers"] == {account: NAMES[account] for account in named}


def test_a_forecast_with_more_lines_than_asked_for_sends_only_its_series(api) -> None:
    full = api.get("/retention/forecast?days=366", headers=api.staff).json()
    assert len(full["lines"]) > 1 and full["lines_total"] == len(full["lines"]) and not full["lines_omitted"]
    bounded = api.get(f"/retention/forecast?days=366&max_lines={len(full['lines']) - 1}", headers=api.staff).json()
    assert bounded["lines"] == [] and bounded["lines_omitted"] and bounded["lines_total"] == len(full["lines"])
    assert bounded["by_day"] == full["by_day"]  # the chart's series stays whole
    enough = api.get(f"/retention/forecast?days=366&max_lines={len(full['lines'])}", headers=api.staff).json()
    assert not enough["lines_omitted"] and [without_cutoff(line) for line in enough["lines"]] == [
        without_cutoff(line) for line in full["lines"]]  # a later call's cutoffs are a little later


def without_cutoff(line: dict) -> dict:
    return {key: value for key, value in line.items() if key != "cutoff"}


def test_certificates_name_their_customer(api) -> None:
    issued = api.post("/retention/certificates", headers=api.staff, json={
        "run_id": api.run_id, "account_id": ACCOUNT, "exporter": "Acme Ltd", "importer": "Service Inc."})
    assert issued.status_code == 201, issued.text
    (listed,) = api.get("/retention/certificates", headers=bearer("auditor-2", "viewer")).json()
    assert (listed["certificate_id"], listed["customer"]) == (issued.json()["certificate_id"], NAMES[ACCOUNT])


def test_the_page_settings_follow_airflows_configured_time_zone(api, monkeypatch) -> None:
    def settings() -> dict:
        answer = api.get("/retention/page-settings", headers=bearer("auditor-2", "viewer"))
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert settings() == {"default_time_zone": "UTC", "sweep_dag_id": "retention_sweep", "refresh_seconds": 60}
    monkeypatch.setenv("AIRFLOW__CORE__DEFAULT_TIMEZONE", "europe/zurich")
    assert settings()["default_time_zone"] == "Europe/Zurich"
    assert api.get("/retention/page-settings").status_code == 401
