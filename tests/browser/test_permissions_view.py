"""The operator page in a real browser for users without every permission: an ``op`` places a legal hold
from the form, but the release dialog is refused what a release would resume and says which permission is
missing, with nothing to confirm; a Viewer sees the page and is refused placing a hold, told so beside the
form. The ledger records only what was allowed."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from retention.ledger import Ledger
from retention.settings import Settings
from tests.browser.conftest import signed_in

pytestmark = pytest.mark.browser

HELD = "acct_1001"


def open_page(tab) -> None:
    tab.goto("/retention/ui/")
    tab.wait_for_selector("body[data-ready=true]")


def place_hold(tab, reference: str) -> None:
    form = tab.locator("#hold-form")
    form.locator("input[name=account_id]").fill(HELD)
    form.locator("input[name=reference]").fill(reference)
    form.locator("input[name=reason]").fill("litigation hold, matter 14")
    form.locator("button[type=submit]").click()


def holds() -> list:
    with Ledger.open(Settings.from_env().database_url) as ledger:
        return ledger.list_holds(include_released=True)


def test_an_op_places_a_hold_in_the_page_but_is_refused_releasing_it(browser, live_api) -> None:
    with signed_in(browser, live_api.url, "legal-ops-3", "op") as tab:
        open_page(tab)
        place_hold(tab, "LEGAL-2026-14")
        tab.wait_for_selector("#holds tbody tr[data-id^='hold-']")
        tab.locator("#holds tbody tr button.release").click()
        dialog = tab.locator("dialog#release-dialog")
        expect(dialog.locator("#release-error")).to_contain_text("missing permission: RELEASE_HOLD",
                                                                 timeout=120_000)
        expect(dialog.locator("#release-confirm")).to_be_disabled()
    (hold,) = holds()
    assert (hold.placed_by, hold.released_at) == ("api:legal-ops-3", None)


def test_a_viewer_sees_the_page_and_is_refused_placing_a_hold(browser, live_api) -> None:
    with signed_in(browser, live_api.url, "auditor-2", "viewer") as tab:
        open_page(tab)
        place_hold(tab, "LEGAL-2026-15")
        expect(tab.locator("#hold-error")).to_contain_text(
            "missing permission: PLACE_HOLD (POST on 'Retention Holds')", timeout=120_000)
    assert holds() == []
