"""The operator page in a real browser, served by Airflow's api-server on a loopback port: alone, and framed
by Airflow's own UI at /plugin/retention. It loads behind Airflow's session only, the chart draws what the
forecast says, the tables show the open offboarding and the certificate with the customer's name beside each
account, and a hold placed in the form shows up, is recorded in the staff member's name, says what it keeps
and takes the held data out of the forecast. The chart's axes are titled, its ticks are nice numbers, and a
year's forecast is drawn in weekly bars."""

from __future__ import annotations

import re

import httpx
import pendulum
import pytest
from playwright.sync_api import expect

from retention.engine.tasks import context
from retention.offboarding.plan import plan_offboarding
from retention.offboarding.request import OffboardingRequest
from tests.browser.helpers import HELD, bars, by_day, certificate, events, forecast, open_page, staff_get
from tests.fixtures.api import STAFF

pytestmark = pytest.mark.browser

OFFBOARDED = "acct_2002"  # Contoso Retail Inc. in demo/accounts.yaml
AIRFLOW_RUN = "manual__2026-11-30T17:40:00+00:00"


@pytest.fixture
def offboarding(live_api) -> str:
    """An offboarding planned by the offboarding DAG's run and waiting for its second pair of eyes."""
    request = OffboardingRequest(account_id=OFFBOARDED, choice="delete", reference="TKT-88")
    with context() as ctx:
        return plan_offboarding(ctx, request, pendulum.now("UTC"), requested_by="api:csm-3", actor="test",
                                dag_id="termination_offboarding", airflow_run_id=AIRFLOW_RUN)["run_id"]


def nice(step: int) -> bool:
    """1, 2 or 5 times a power of ten."""
    return step > 0 and str(step).rstrip("0") in ("1", "2", "5")


def test_the_page_and_its_data_need_airflows_session(live_api, browser) -> None:
    for path in ("/retention/ui/", "/retention/ui/operators.js", "/retention/holds", "/retention/offboardings"):
        assert httpx.get(live_api.url + path).status_code == 401, path
    anonymous = browser.new_context(base_url=live_api.url)
    try:
        answer = anonymous.new_page().goto("/retention/ui/")
        assert answer.status == 401 and "Retention" not in answer.text()
    finally:
        anonymous.close()


def test_the_chart_draws_the_forecast_and_the_tables_show_offboardings_and_certificates(
        page, live_api, offboarding) -> None:
    issued = certificate(live_api.url, live_api.run_id, HELD)
    expected = by_day(forecast(live_api.url))
    open_page(page)

    drawn = bars(page)  # 30 days on a 1280 px wide page: one bar per day and data class
    assert page.get_attribute("#forecast-chart", "data-bucket") == "day"
    assert drawn and drawn == expected
    assert int(page.get_attribute("#forecast-chart", "data-total")) == sum(drawn.values())
    legend = page.locator("#forecast-legend li").all_inner_texts()
    assert legend == sorted({data_class for _, data_class in drawn})
    assert page.locator("#forecast-table tbody tr").count() == len({day for day, _ in drawn})
    assert page.locator("#forecast-chart g.axis-x text.axis-title").text_content() == "Sweep date (UTC)"
    assert page.locator("#forecast-chart g.axis-y text.axis-title").text_content() == "Records falling due"
    ticks = [int(t.replace(",", "")) for t in page.locator("#forecast-chart g.axis-y text.tick").all_text_contents()]
    steps = {b - a for a, b in zip(ticks, ticks[1:], strict=False)}
    assert ticks[0] == 0 and len(steps) == 1 and nice(steps.pop()), ticks  # 0, 5, 10, 15: never "8"

    # 366 days do not fit a bar per day in 1280 px: the bars are weekly sums, each starting on a Monday.
    year = forecast(live_api.url, 366)
    page.select_option("#forecast-days", "366")
    page.wait_for_selector('#forecast-chart[data-days="366"]')
    assert page.get_attribute("#forecast-chart", "data-bucket") == "week"
    weekly: dict[tuple[str, str], int] = {}
    for (day, data_class), records in by_day(year).items():
        monday = pendulum.parse(day).start_of("week").to_date_string()
        weekly[monday, data_class] = weekly.get((monday, data_class), 0) + records
    assert bars(page) == weekly

    row = page.locator(f"#offboardings tr[data-id='{offboarding}']")
    assert row.locator("td").nth(0).locator(".account-id").inner_text() == OFFBOARDED
    assert row.locator("td").nth(0).locator(".customer").inner_text() == "Contoso Retail Inc."
    assert row.locator("td").nth(3).inner_text().startswith("awaiting approval")
    assert re.search(r"\d+ tasks? planned", row.locator("td").nth(4).inner_text())
    # The way forward opens in Airflow's own window (the page's origin here): the approval in Required Actions,
    # the run's page, at the paths the route answers.
    (listed,) = staff_get(live_api.url, "offboardings")
    approve = row.locator("td").nth(3).locator("a.required-actions")
    run = row.locator("td").nth(5).locator("a.run-link")
    assert (approve.get_attribute("target"), run.get_attribute("target")) == ("_top", "_top")
    assert approve.get_attribute("href") == live_api.url + listed["required_actions_url"]
    assert run.get_attribute("href") == live_api.url + listed["run_url"]
    assert listed["run_url"].startswith("/dags/termination_offboarding/runs/manual__2026-11-30T17")
    assert offboarding in run.inner_text()  # the full run id, never cut

    certificate_row = page.locator(f"#certificates tr[data-id='{issued}']")
    assert certificate_row.locator("td").nth(1).locator(".account-id").inner_text() == HELD
    assert certificate_row.locator("td").nth(1).locator(".customer").inner_text() == "Northwind Traders GmbH"
    certificate_row.locator("button.make-link").click()
    link = certificate_row.locator("input.link")
    expect(link).to_have_value(re.compile("/download\\?token="))
    pdf = httpx.get(link.input_value(), timeout=60)  # what the customer gets: no Airflow session, only the link
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_a_hold_placed_in_the_form_shows_up_in_the_staff_members_name_and_leaves_the_forecast(page, live_api) -> None:
    open_page(page)
    before = int(page.get_attribute("#forecast-chart", "data-total"))
    held = sum(line["records"] for line in forecast(live_api.url)["lines"] if line["account_id"] == HELD)
    assert held > 0
    placing = []
    page.on("request", lambda request: placing.append(request) if request.method == "POST" else None)

    form = page.locator("#hold-form")
    form.locator("input[name=reference]").fill("LEGAL-2026-14")
    form.locator("input[name=reason]").fill("litigation hold, matter 14")
    form.locator("button[type=submit]").click()  # the defaults (every account, all data classes) hold nothing
    expect(form.locator(".field-error[data-for=account_id]")).to_contain_text(
        "Choose an account, a data class, or both")
    assert placing == []  # refused in the page, without calling the server

    form.locator("input[name=account_id]").fill("acct_l001")  # a misspelt account would hold nothing: refused
    form.locator("button[type=submit]").click()
    expect(form.locator(".field-error[data-for=account_id]")).to_contain_text("no account 'acct_l001'")
    assert page.locator("#holds td.empty").count() == 1

    form.locator("input[name=account_id]").fill(HELD)
    expect(page.locator("#hold-account-name")).to_have_text("Northwind Traders GmbH")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#holds tbody tr[data-id^='hold-']")
    row = page.locator("#holds tbody tr").first
    hold_id = row.get_attribute("data-id")
    assert row.locator("td").nth(1).locator(".account-id").inner_text() == HELD
    assert [row.locator("td").nth(i).inner_text() for i in (2, 3, 4, 5)] == [
        "all data classes", "LEGAL-2026-14", "litigation hold, matter 14", STAFF]
    expect(page.locator("#hold-result")).to_contain_text(f"Hold {hold_id} placed on {HELD}")
    expect(page.locator("#hold-result")).to_contain_text("the next sweep would have deleted")
    expect(form.locator(".field-error[data-for=account_id]")).to_be_empty()  # the earlier refusal is cleared
    # The chart redraws once the forecast answers, which takes seconds on a loaded machine: wait on the
    # condition itself, bounded only by a generous ceiling.
    expect(page.locator("#forecast-chart")).to_have_attribute("data-total", str(before - held), timeout=120_000)

    assert [(e.actor, e.payload["account_id"]) for e in events("hold.placed")] == [(f"api:{STAFF}", HELD)]


def test_airflows_ui_frames_the_page_under_browse(page, live_api) -> None:
    page.goto("/plugin/retention")
    frame = page.frame_locator("iframe")
    frame.locator("body[data-ready=true]").wait_for()
    assert frame.locator("#forecast-chart rect.bar").count() > 0
