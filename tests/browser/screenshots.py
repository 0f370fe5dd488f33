"""The operator page's screenshots for the README (`make screenshots`): the test stack after a sweep, with a
legal hold, an offboarding awaiting approval, a complete certificate with a customer link and a partial one,
photographed in real Chromium light and dark at 1280 px and on a 390 x 844 phone, each the full page.

Not a test: pytest runs this file only when named (`make test` collects test_*.py), for its fixtures (the
same stack, server and browser as the browser tests)."""

from __future__ import annotations

from pathlib import Path

import pendulum
import pytest
from playwright.sync_api import expect

from retention.engine.tasks import context
from retention.offboarding.plan import plan_offboarding
from retention.offboarding.request import OffboardingRequest
from tests.browser.conftest import signed_in
from tests.browser.helpers import HELD, certificate, open_page, partial_certificate, place_hold
from tests.fixtures.api import STAFF

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
SHOTS = {  # file name: the browser's window and colour scheme
    "operator-page-light.png": {"viewport": {"width": 1280, "height": 900}, "color_scheme": "light"},
    "operator-page-dark.png": {"viewport": {"width": 1280, "height": 900}, "color_scheme": "dark"},
    "operator-page-phone.png": {"viewport": {"width": 390, "height": 844}, "color_scheme": "light"},
}


@pytest.mark.browser
def test_screenshots(browser, live_api) -> None:
    place_hold(live_api.url, "acct_3003", "LEGAL-2026-14")
    with context() as ctx:
        plan_offboarding(ctx, OffboardingRequest(account_id="acct_2002", choice="delete", reference="TKT-88"),
                         pendulum.now("UTC"), requested_by="api:csm-3", actor="screenshots",
                         dag_id="termination_offboarding", airflow_run_id="manual__2026-11-30T17:40:00+00:00")
    complete = certificate(live_api.url, live_api.run_id, HELD)
    partial_certificate(live_api.url, live_api.run_id, "acct_6006")
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name, window in SHOTS.items():
        with signed_in(browser, live_api.url, STAFF, "admin", **window) as tab:
            open_page(tab)
            row = tab.locator(f"#certificates tbody tr[data-id='{complete}']")
            row.locator("button.make-link").click()  # a complete certificate's link is minted at once
            expect(row.locator("input.link")).to_be_focused()  # minted, its URL selected for copying
            # As a reader first sees it: no control focused or text selected, every table at its first column.
            tab.evaluate("() => { document.activeElement?.blur(); "
                         "document.querySelectorAll('input.link').forEach(link => link.setSelectionRange(0, 0)); "
                         "window.getSelection().removeAllRanges(); "
                         "document.querySelectorAll('.table-scroll').forEach(box => { box.scrollLeft = 0; }); }")
            tab.screenshot(path=str(IMAGES / name), full_page=True)
