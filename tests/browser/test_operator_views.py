"""The operator page in a real browser, served by Airflow's api-server on a loopback port: alone, and framed
by Airflow's own UI at /plugin/retention. It loads behind Airflow's session only, the chart draws what the
forecast says, the tables show the open offboarding and the certificate, and a hold placed in the form
shows up, is recorded in the staff member's name and takes the held data out of the forecast."""

from __future__ import annotations

import httpx
import pendulum
import pytest
from playwright.sync_api import expect

from retention.engine.tasks import context
from retention.ledger import Ledger
from retention.offboarding.plan import plan_offboarding
from retention.offboarding.request import OffboardingRequest
from retention.settings import Settings
from tests.fixtures.api import STAFF, staff_token

pytestmark = pytest.mark.browser

HELD, OFFBOARDED = "acct_1001", "acct_2002"


@pytest.fixture
def offboarding(live_api) -> str:
    """An offboarding planned and waiting for its second pair of eyes."""
    request = OffboardingRequest(account_id=OFFBOARDED, choice="delete", reference="TKT-88")
    with context() as ctx:
        return plan_offboarding(ctx, request, pendulum.now("UTC"), requested_by="api:csm-3", actor="test")["run_id"]


@pytest.fixture
def certificate(live_api) -> str:
    made = httpx.post(f"{live_api.url}/retention/certificates", headers={"Authorization": f"Bearer {staff_token()}"},
                      json={"run_id": live_api.run_id, "account_id": HELD, "exporter": "Acme Ltd",
                            "importer": "Service Inc."}, timeout=60)
    assert made.status_code == 201, made.text
    return made.json()["certificate_id"]


def forecast(live_api) -> dict:
    answer = httpx.get(f"{live_api.url}/retention/forecast", params={"days": 30},
                       headers={"Authorization": f"Bearer {staff_token()}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def open_page(page) -> None:
    page.goto("/retention/ui/")
    page.wait_for_selector("body[data-ready=true]")


def bars(page) -> dict[tuple[str, str], int]:
    found = page.eval_on_selector_all("#forecast-chart rect.bar", "rects => rects.map(r => [r.dataset.day, "
                                      "r.dataset.class, Number(r.dataset.records)])")
    return {(day, data_class): records for day, data_class, records in found}


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
        page, live_api, offboarding, certificate) -> None:
    expected = forecast(live_api)
    open_page(page)

    drawn = bars(page)
    assert drawn and drawn == {(day, data_class): records for day, classes in expected["by_day"].items()
                               for data_class, records in classes.items()}
    assert int(page.get_attribute("#forecast-chart", "data-total")) == sum(drawn.values())
    legend = page.locator("#forecast-legend li").all_inner_texts()
    assert legend == sorted({data_class for _, data_class in drawn})

    row = page.locator(f"#offboardings tr[data-id='{offboarding}']")
    assert row.locator("td").nth(0).inner_text() == OFFBOARDED
    assert row.locator("td").nth(3).inner_text() == "awaiting approval"

    certificate_row = page.locator(f"#certificates tr[data-id='{certificate}']")
    assert certificate_row.locator("td").nth(1).inner_text() == HELD
    certificate_row.locator("button.make-link").click()
    link = certificate_row.locator("input.link").input_value()
    pdf = httpx.get(link, timeout=60)  # what the customer gets: no Airflow session, only the link
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_a_hold_placed_in_the_form_shows_up_in_the_staff_members_name_and_leaves_the_forecast(page, live_api) -> None:
    open_page(page)
    before = int(page.get_attribute("#forecast-chart", "data-total"))
    held = sum(line["records"] for line in forecast(live_api)["lines"] if line["account_id"] == HELD)
    assert held > 0

    form = page.locator("#hold-form")
    form.locator("input[name=account_id]").fill("acct_l001")  # a misspelt account would hold nothing: refused
    form.locator("input[name=reference]").fill("LEGAL-2026-14")
    form.locator("input[name=reason]").fill("litigation hold, matter 14")
    form.locator("button[type=submit]").click()
    assert "no account 'acct_l001'" in page.locator("#hold-result.error").inner_text()
    assert page.locator("#holds td.empty").count() == 1

    form.locator("input[name=account_id]").fill(HELD)
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#holds tbody tr[data-id^='hold-']")
    row = page.locator("#holds tbody tr").first
    assert [row.locator("td").nth(i).inner_text() for i in (1, 2, 3, 4)] == [
        HELD, "all data classes", "LEGAL-2026-14", f"api:{STAFF}"]
    # The chart redraws once the forecast answers, which takes seconds on a loaded machine: wait on the
    # condition itself, bounded only by a generous ceiling.
    expect(page.locator("#forecast-chart")).to_have_attribute("data-total", str(before - held), timeout=120_000)

    with Ledger.open(Settings.from_env().database_url) as ledger:
        placed = ledger.events_of_kind("hold.placed")
    assert [(e.actor, e.payload["account_id"]) for e in placed] == [(f"api:{STAFF}", HELD)]


def test_airflows_ui_frames_the_page_under_browse(page, live_api) -> None:
    page.goto("/plugin/retention")
    frame = page.frame_locator("iframe")
    frame.locator("body[data-ready=true]").wait_for()
    assert frame.locator("#forecast-chart rect.bar").count() > 0
