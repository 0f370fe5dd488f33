"""The staff routes behind the operator page, in Airflow's api-server app: holds are placed and released in
the Airflow user's name, a hold that would protect nothing is refused, writes need a JSON body (a form
posted from another site cannot place or release a hold on the strength of the session cookie), and
open offboardings report their stage."""

from __future__ import annotations

import pendulum

from retention.engine.tasks import context
from retention.ledger import Ledger
from retention.offboarding.plan import plan_offboarding
from retention.offboarding.request import OffboardingRequest
from retention.offboarding.status import AWAITING_APPROVAL
from retention.settings import Settings
from tests.fixtures.api import STAFF, staff_token

ACCOUNT = "acct_1001"


def holds_in_ledger() -> list:
    with Ledger.open(Settings.from_env().database_url) as ledger:
        return ledger.list_holds(include_released=True)


def test_every_operator_route_needs_airflows_session(api) -> None:
    for path in ("/retention/ui/", "/retention/holds", "/retention/offboardings", "/retention/data-classes"):
        assert api.get(path).status_code == 401, path
    hold = {"account_id": ACCOUNT, "reason": "xyz", "reference": "T-1"}
    assert api.post("/retention/holds", json=hold).status_code == 401
    assert api.post("/retention/holds/hold-1/release", json={"reason": "xyz"}).status_code == 401
    assert holds_in_ledger() == []


def test_the_page_is_served_with_a_policy_that_runs_only_its_own_script(api) -> None:
    page = api.get("/retention/ui/", headers=api.staff)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    script = api.get("/retention/ui/operators.js", headers=api.staff)
    assert script.headers["content-type"].startswith("text/javascript")
    for other in ("app.py", "../app.py", "static/operators.js", "%2e%2e/operators.py"):
        assert api.get(f"/retention/ui/{other}", headers=api.staff).status_code == 404, other


def test_a_hold_is_placed_and_released_in_the_staff_members_name(api) -> None:
    placed = api.post("/retention/holds", headers=api.staff, json={
        "account_id": ACCOUNT, "data_class": "chat_transcripts", "reason": "litigation", "reference": "LEGAL-14"})
    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert hold["placed_by"] == f"api:{STAFF}" and (hold["placed_by_user"], hold["placed_via"]) == (STAFF, "Airflow")
    assert (hold["reason"], hold["reference"], hold["customer"]) == ("litigation", "LEGAL-14", "Northwind Traders GmbH")
    assert [h["id"] for h in api.get("/retention/holds", headers=api.staff).json()] == [hold["id"]]

    release = f"/retention/holds/{hold['id']}/release"
    assert api.post(release, headers=api.staff, json={"reason": "matter closed"}).status_code == 200
    assert api.post(release, headers=api.staff, json={"reason": "matter closed"}).status_code == 409
    assert api.post("/retention/holds/hold-nope/release", headers=api.staff, json={"reason": "xyz"}).status_code == 404
    assert api.get("/retention/holds", headers=api.staff).json() == []
    every_hold = api.get("/retention/holds?all=true", headers=api.staff).json()
    assert [h["released_at"] is not None for h in every_hold] == [True]
    (recorded,) = holds_in_ledger()
    assert (recorded.placed_by, recorded.released_by, recorded.reason) == (f"api:{STAFF}", f"api:{STAFF}", "litigation")


def test_a_hold_that_would_protect_nothing_is_refused_with_the_field_named(api) -> None:
    def refused(body: dict, field: str) -> None:
        answer = api.post("/retention/holds", headers=api.staff,
                          json={"reason": "litigation", "reference": "T-1", **body})
        assert answer.status_code == 422 and field in answer.text, answer.text

    refused({"account_id": "acct_l001"}, "account_id")  # a misspelt account
    refused({"data_class": "chat_transcript"}, "data_class")  # a misspelt data class
    refused({}, "account_id: choose an account, a data class, or both")  # a hold on nothing
    assert holds_in_ledger() == []


def test_writes_with_the_session_cookie_need_a_json_body(api) -> None:
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    api.cookies.set(COOKIE_NAME_JWT_TOKEN, staff_token())
    form = api.post("/retention/holds", content='{"account_id": "acct_1001", "reason": "xyz", "reference": "T-1"}',
                    headers={"Content-Type": "text/plain"})
    assert form.status_code == 415
    assert holds_in_ledger() == []
    made = api.post("/retention/holds", json={"account_id": ACCOUNT, "reason": "xyz", "reference": "T-1"})
    assert made.status_code == 201  # the cookie authenticates a JSON request from the page itself


def test_open_offboardings_report_their_stage(api) -> None:
    assert api.get("/retention/offboardings", headers=api.staff).json() == []
    request = OffboardingRequest(account_id=ACCOUNT, choice="delete", reference="TKT-88")
    with context() as ctx:
        run_id = plan_offboarding(ctx, request, pendulum.now("UTC"), requested_by="api:csm-3", actor="test")["run_id"]
    (listed,) = api.get("/retention/offboardings", headers=api.staff).json()
    assert (listed["run_id"], listed["account_id"], listed["choice"], listed["stage"]) == (
        run_id, ACCOUNT, "delete", AWAITING_APPROVAL)
    assert set(listed["tasks"]) <= {"planned", "skipped"} and listed["tasks"]["planned"] > 0
    classes = api.get("/retention/data-classes", headers=api.staff).json()
    assert "chat_transcripts" in {c["name"] for c in classes}


def test_the_forecast_route_lists_overdue_terminations(api) -> None:
    """acct_4004 terminated 2026-09-30 and elected deletion: the sweep kept its data, and with no offboarding
    started its offboarding is overdue (due 30 days after the termination) until one is."""
    document = api.get("/retention/forecast", params={"days": 7}, headers=api.staff).json()
    overdue = {t["account_id"]: t for t in document["overdue_terminations"]}
    assert overdue["acct_4004"]["due_at"].startswith("2026-10-30") and overdue["acct_4004"]["choice"] == "delete"
    assert not [line for line in document["lines"] if line["account_id"] == "acct_4004" and line["cutoff"] is None]

    request = OffboardingRequest(account_id="acct_4004", choice="delete", reference="TKT-90")
    with context() as ctx:
        plan_offboarding(ctx, request, pendulum.now("UTC"), requested_by="api:csm-3", actor="test")
    document = api.get("/retention/forecast", params={"days": 7}, headers=api.staff).json()
    assert "acct_4004" not in {t["account_id"] for t in document["overdue_terminations"]}


def test_an_account_whose_registry_row_was_refused_can_still_be_held(api, refused_registry_row) -> None:
    """Read from the application's accounts table, acct_2002's row is refused (an unknown state): the account exists,
    so counsel can hold it; a misspelt id is still refused."""
    body = {"reason": "litigation", "reference": "T-2"}
    held = api.post("/retention/holds", headers=api.staff, json={**body, "account_id": "acct_2002"})
    assert held.status_code == 201, held.text
    misspelt = api.post("/retention/holds", headers=api.staff, json={**body, "account_id": "acct_2O02"})
    assert misspelt.status_code == 422 and "account_id" in misspelt.text
    assert [h.account_id for h in holds_in_ledger()] == ["acct_2002"]
