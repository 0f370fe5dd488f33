"""The operator page lists the terminations waiting for their offboarding, overdue ones marked, from the
forecast the page already reads (acct_4004 terminated 2026-09-30 and elected deletion; nobody started its
offboarding, due 30 days after the termination)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_an_overdue_termination_is_listed_with_its_due_date(page) -> None:
    page.goto("/retention/ui/")
    page.wait_for_selector("body[data-ready=true]")
    row = page.locator("#terminations tr[data-id='acct_4004']")
    cells = [row.locator("td").nth(i).inner_text() for i in range(5)]
    assert row.locator(".account-id").inner_text() == "acct_4004"
    assert row.locator(".customer").inner_text() == "Tailspin Toys SE"
    assert cells[1] == "delete"
    # Times in the page's zone (Airflow's default, UTC here): the date with its year, the time and the zone.
    for cell, day in ((cells[2], "30 Sep"), (cells[3], "30 Oct")):
        assert cell.startswith(day) and all(part in cell for part in ("2026", "23:59", "UTC")), cell
    assert cells[4].startswith("overdue")
    assert row.locator("strong.overdue").count() == 1  # text, styled; nothing rendered as HTML
