"""A real headless Chromium (Debian's package, which `make test` installs) driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# Flags for a sandboxed CI machine with no route out: no background traffic, no GPU, no setuid sandbox.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def chromium_path() -> str:
    path = os.environ.get("RETENTION_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:  # a failure, not a skip: the operator views must be tested wherever `make test` runs
        pytest.fail("no chromium: `make test` installs Debian's package; or set RETENTION_CHROMIUM to a binary")
    return path


@pytest.fixture(scope="module")  # not longer: Playwright's event loop must not outlive these tests
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@contextmanager
def signed_in(browser, url: str, username: str, role: str, *, viewport: dict[str, int] | None = None,
              color_scheme: str | None = None, local_storage: dict[str, str] | None = None) -> Iterator:
    """A browser tab signed in to Airflow as that user (Airflow's own ``_token`` session cookie). Optionally
    a window size, the system's colour scheme and items of the origin's localStorage set before any script
    runs (Airflow's UI keeps the user's theme and time zone there)."""
    import json

    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    from tests.fixtures.api import staff_token

    options = {key: value for key, value in (("viewport", viewport), ("color_scheme", color_scheme))
               if value is not None}
    session = browser.new_context(base_url=url, **options)
    if local_storage:
        session.add_init_script(f"for (const [k, v] of Object.entries({json.dumps(local_storage)})) "
                                "localStorage.setItem(k, v);")
    session.add_cookies([{"name": COOKIE_NAME_JWT_TOKEN, "value": staff_token(username, role), "url": url}])
    tab = session.new_page()
    # A ceiling, not a wait: the page is ready when it says so, which takes long on a loaded machine.
    tab.set_default_timeout(120_000)
    try:
        yield tab
    finally:
        session.close()


@pytest.fixture
def page(browser, live_api):
    """A browser tab signed in to Airflow as an admin."""
    from tests.fixtures.api import STAFF

    with signed_in(browser, live_api.url, STAFF, "admin") as tab:
        yield tab
