"""The operator page as staff use it (issue 20), in real Chromium against Airflow's real api-server: a late
forecast answer never replaces the chart of the range now selected; releasing a hold first shows what it
covers and how many records the next sweep would then delete (the forecast's own count); a link to a partial
certificate is minted only after a person confirms; the page fits a phone's width, follows a dark theme on
its own and framed by Airflow's UI, names every row's action after its row, and keeps text readable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import signed_in
from tests.browser.helpers import (
    HELD,
    bars,
    by_day,
    certificate,
    due_now,
    events,
    forecast,
    open_page,
    partial_certificate,
    place_hold,
    staff_get,
)
from tests.fixtures.api import STAFF

pytestmark = pytest.mark.browser

CONTRAST = (Path(__file__).with_name("contrast.js")).read_text()
# The relative luminance (WCAG) of the body's background and text colours, as painted.
THEME_LUMINANCE = """() => {
  const paint = document.createElement("canvas").getContext("2d", { willReadFrequently: true });
  const rgb = (css) => { paint.clearRect(0, 0, 1, 1); paint.fillStyle = css; paint.fillRect(0, 0, 1, 1);
                         return [...paint.getImageData(0, 0, 1, 1).data.slice(0, 3)]; };
  const luminance = (c) => {
    const [r, g, b] = c.map((v) => v / 255).map((v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const body = getComputedStyle(document.body), root = getComputedStyle(document.documentElement);
  const behind = body.backgroundColor === "rgba(0, 0, 0, 0)" ? root.backgroundColor : body.backgroundColor;
  return [luminance(rgb(behind)), luminance(rgb(body.color))];
}"""


@pytest.fixture
def tab(browser, unswept_api):
    """An admin's tab on the page's server over the unswept stack (records of every age due now)."""
    with signed_in(browser, unswept_api, STAFF, "admin") as signed_in_tab:
        yield signed_in_tab


def test_a_late_answer_for_an_earlier_range_never_replaces_the_chart_of_the_range_selected(tab, unswept_api) -> None:
    week = by_day(forecast(unswept_api, 7))
    assert week  # records of every age: the next sweep alone finds some due
    open_page(tab)
    held_back = []
    tab.route(lambda url: "/retention/forecast" in url and "days=366" in url, lambda route: held_back.append(route))
    aborted = []
    tab.on("requestfailed", lambda request: aborted.append(request) if "days=366" in request.url else None)

    with tab.expect_request(lambda request: "days=366" in request.url):
        tab.select_option("#forecast-days", "366")
    expect(tab.locator("#forecast")).to_have_attribute("aria-busy", "true")  # the old chart is marked as stale
    tab.select_option("#forecast-days", "7")
    tab.wait_for_selector('#forecast-chart[data-days="7"]')
    expect(tab.locator("#forecast")).not_to_have_attribute("aria-busy", "true")

    (route,) = held_back
    if not aborted:  # the page kept the stale request open: let its answer arrive last, as a slow server would
        with tab.expect_event("requestfinished", lambda request: "days=366" in request.url):
            route.continue_()
        # The answer is in the page once its resource timing entry exists; two frames later it has had every
        # turn of the event loop it needs to be drawn, if the page were to draw it.
        tab.wait_for_function("() => performance.getEntriesByType('resource').some(e => e.name.includes('days=366'))")
        tab.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")

    assert tab.get_attribute("#forecast-chart", "data-days") == "7"
    assert bars(tab) == week
    assert int(tab.get_attribute("#forecast-chart", "data-total")) == sum(week.values())
    assert re.fullmatch(r"[\d,.\s]+ records fall due over 7 days", tab.inner_text("#forecast-total"))
    assert int(re.sub(r"\D", "", tab.inner_text("#forecast-total").split(" records")[0])) == sum(week.values())


def test_the_release_dialog_states_the_hold_and_the_records_the_next_sweep_would_then_delete(
        tab, unswept_api) -> None:
    due = due_now(forecast(unswept_api, 1), HELD)  # before the hold: what the next sweep would delete of it
    assert due > 0
    hold_id = place_hold(unswept_api, HELD, "LEGAL-2026-21")["id"]
    preview = staff_get(unswept_api, f"holds/{hold_id}/release-preview")
    assert preview["resumes"]["records"] == due

    open_page(tab)
    release = tab.locator(f"#holds tbody tr[data-id='{hold_id}'] button.release")
    release.click()
    dialog = tab.locator("dialog#release-dialog")
    expect(dialog).to_be_visible()
    tab.keyboard.press("Escape")  # cancels, and the keyboard is back on the button that opened it
    expect(dialog).not_to_be_visible()
    expect(release).to_be_focused()
    release.click()
    field = {name: dialog.locator(f"[data-field={name}]") for name in ("scope", "reference", "reason", "placed",
                                                                       "next-sweep")}
    expect(field["scope"]).to_contain_text(HELD)
    expect(field["scope"]).to_contain_text("Northwind Traders GmbH")
    expect(field["scope"]).to_contain_text("all data classes")
    expect(field["reference"]).to_have_text("LEGAL-2026-21")
    expect(field["reason"]).to_have_text("litigation hold, matter LEGAL-2026-21")
    expect(field["placed"]).to_contain_text(STAFF)
    expect(field["next-sweep"]).not_to_have_text(re.compile(r"^\W*$"))  # in words, whether or not Airflow knows it
    records = dialog.locator("#release-records")
    expect(records).to_have_attribute("data-records", str(due))
    expect(records).to_contain_text(f"{due:,}")
    expect(records).to_contain_text("due now: the next sweep would delete them")

    dialog.locator("#release-reason").fill("ok")  # too short: refused in words, nothing released
    dialog.locator("#release-confirm").click()
    expect(dialog.locator("#release-error")).to_contain_text(re.compile("reason", re.IGNORECASE))
    assert "{" not in dialog.locator("#release-error").inner_text()  # words, not the validator's JSON
    expect(dialog).to_be_visible()
    assert events("hold.released") == []

    dialog.locator("#release-reason").fill("matter 21 settled, counsel confirmed")
    dialog.locator("#release-confirm").click()
    expect(dialog).not_to_be_visible()
    expect(tab.locator("#notice")).to_contain_text(f"Released {hold_id}")
    expect(tab.locator(f"#holds tbody tr[data-id='{hold_id}']")).to_have_count(0)
    assert [(e.actor, e.payload["hold_id"]) for e in events("hold.released")] == [(f"api:{STAFF}", hold_id)]


def test_a_link_to_a_partial_certificate_is_minted_only_after_a_person_confirms(page, live_api) -> None:
    import httpx

    complete = certificate(live_api.url, live_api.run_id, HELD)
    partial = partial_certificate(live_api.url, live_api.run_id, "acct_2002")
    statuses = {c["certificate_id"]: c["status"] for c in staff_get(live_api.url, "certificates")}
    assert (statuses[complete], statuses[partial]) == ("complete", "partial")
    open_page(page)
    minting = []
    page.on("request", lambda request: minting.append(request.url) if request.url.endswith("/links") else None)

    row = page.locator(f"#certificates tbody tr[data-id='{partial}']")
    expect(row.locator("span.status.status-partial")).to_contain_text("partial")
    row.locator("button.make-link").click()
    dialog = page.locator("dialog#link-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("partial")
    assert (minting, events("certificate.link_created")) == ([], [])
    dialog.locator("#link-cancel").click()
    expect(dialog).not_to_be_visible()
    expect(row.locator("input.link")).to_have_count(0)
    assert (minting, events("certificate.link_created")) == ([], [])

    row.locator("button.make-link").click()
    dialog.locator("#link-confirm").click()
    link = row.locator("input.link")
    expect(link).to_have_value(re.compile(r"^https?://.+/download\?token="))
    expect(row.locator(".link-expiry")).to_be_visible()
    expect(row.locator(".link-expiry")).to_have_text(re.compile(r"^Expires \S.*\d"))
    pdf = httpx.get(link.input_value(), timeout=60)  # what the customer gets: no Airflow session, only the link
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert [e.payload["certificate_id"] for e in events("certificate.link_created")] == [partial]

    complete_row = page.locator(f"#certificates tbody tr[data-id='{complete}']")
    expect(complete_row.locator("span.status.status-complete")).to_have_text("complete")
    complete_row.locator("button.make-link").click()  # nothing to warn about: minted at once
    expect(complete_row.locator("input.link")).to_have_value(re.compile(r"/download\?token="))
    expect(dialog).not_to_be_visible()
    assert [e.payload["certificate_id"] for e in events("certificate.link_created")] == [partial, complete]


def test_on_a_phone_the_page_never_scrolls_sideways_and_labels_stay_above_their_inputs(browser, live_api) -> None:
    # Airflow's UI keeps the user's chosen time zone in localStorage (JSON), where the framed page can read it.
    with signed_in(browser, live_api.url, STAFF, "admin", viewport={"width": 390, "height": 844},
                   local_storage={"timezone": json.dumps("Asia/Tokyo")}) as phone:
        open_page(phone)
        assert phone.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        expect(phone.locator("html")).to_have_attribute("data-time-zone", "Asia/Tokyo")
        assert phone.locator("#forecast-chart rect.bar").count() > 0
        controls = phone.locator("#hold-form :is(input, select, textarea):not([type=hidden])")
        assert controls.count() >= 4
        for control in controls.all():
            label = phone.locator(f"label[for='{control.get_attribute('id')}']")
            expect(label).to_have_count(1)
            above, below = label.bounding_box(), control.bounding_box()
            assert above and below
            # Stacked: the label ends where its input begins, and they share the column.
            assert above["y"] + above["height"] <= below["y"] + 1, control.get_attribute("id")
            assert above["x"] < below["x"] + below["width"] and below["x"] < above["x"] + above["width"]


def test_dark_mode_follows_the_system_alone_and_airflows_theme_when_framed(browser, live_api) -> None:
    with signed_in(browser, live_api.url, STAFF, "admin", color_scheme="dark") as alone:
        open_page(alone)
        expect(alone.locator("html")).to_have_attribute("data-theme", "dark")
        background, text = alone.evaluate(THEME_LUMINANCE)
        assert background < 0.2 and text > 0.5, (background, text)

    # Airflow's UI set to dark (next-themes keeps the choice under "theme") on a light system.
    with signed_in(browser, live_api.url, STAFF, "admin", color_scheme="light",
                   local_storage={"theme": "dark"}) as airflow:
        airflow.goto("/plugin/retention")
        expect(airflow.locator("html")).to_have_class(re.compile(r"\bdark\b"))
        framed = airflow.frame_locator("iframe")
        framed.locator("body[data-ready=true]").wait_for()
        expect(framed.locator("html")).to_have_attribute("data-theme", "dark")
        background, text = framed.locator("html").evaluate(f"root => ({THEME_LUMINANCE})()")
        assert background < 0.2 and text > 0.5, (background, text)
        # Switched to light in Airflow's UI while the page is open: the framed page follows.
        airflow.evaluate("() => { const root = document.documentElement; root.classList.replace('dark', 'light');"
                         " root.style.colorScheme = 'light'; }")
        expect(framed.locator("html")).to_have_attribute("data-theme", "light")


def test_row_actions_are_named_after_their_rows_and_text_is_readable_in_both_themes(browser, live_api) -> None:
    holds = [place_hold(live_api.url, HELD, "LEGAL-2026-31")["id"],
             place_hold(live_api.url, None, "LEGAL-2026-32", data_class="chat_transcripts")["id"]]
    certificates = [certificate(live_api.url, live_api.run_id, account) for account in (HELD, "acct_2002")]
    with signed_in(browser, live_api.url, STAFF, "admin") as tab:
        open_page(tab)
        for hold_id in holds:
            button = tab.locator(f"#holds tbody tr[data-id='{hold_id}'] button.release")
            expect(button).to_have_accessible_name(re.compile(rf"^Release hold {hold_id} on \S"))
            expect(tab.get_by_role("button", name=f"Release hold {hold_id} on ")).to_have_count(1)
        expect(tab.locator(f"#holds tbody tr[data-id='{holds[1]}'] button.release")).to_have_accessible_name(
            f"Release hold {holds[1]} on every account, chat_transcripts")
        for certificate_id in certificates:
            button = tab.locator(f"#certificates tbody tr[data-id='{certificate_id}'] button.make-link")
            expect(button).to_have_accessible_name(re.compile(rf"^Create a customer link for certificate "
                                                              rf"{certificate_id} \(.+\)$"))
            expect(tab.get_by_role("button", name=f"for certificate {certificate_id} ")).to_have_count(1)
        # Every column holding a row's action has a header that names it.
        for section, action in (("holds", "button.release"), ("certificates", "button.make-link")):
            column = tab.locator(f"#{section} tbody tr {action}").first.evaluate(
                "button => button.closest('td').cellIndex")
            assert tab.locator(f"#{section} thead th").nth(column).inner_text().strip(), section
        assert tab.locator("#holds thead th").last.inner_text().strip() == "Actions"

    for scheme in ("light", "dark"):
        with signed_in(browser, live_api.url, STAFF, "admin", color_scheme=scheme) as tab:
            open_page(tab)
            expect(tab.locator("html")).to_have_attribute("data-theme", scheme)
            readable = tab.evaluate(CONTRAST, 4.5)
            assert "td.empty" in readable["checked"], scheme  # the worded empty state is among the text checked
            assert readable["failing"] == [], (scheme, readable["failing"])
