"""What the operator page's browser tests share: the staff routes called as a script would (a bearer token,
no page), the ledger's events, and the page's hooks (the ids and data attributes its scripts set) read back
from the browser."""

from __future__ import annotations

from typing import Any

import httpx

from retention.ledger import Ledger
from retention.settings import Settings
from tests.fixtures.api import bearer

HELD = "acct_1001"  # Northwind Traders GmbH in demo/accounts.yaml


def staff_get(url: str, path: str, **params: object) -> Any:  # the route's JSON: an object or a list
    answer = httpx.get(f"{url}/retention/{path}", params=params, headers=bearer(), timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json()


def staff_post(url: str, path: str, body: dict) -> dict:
    answer = httpx.post(f"{url}/retention/{path}", json=body, headers=bearer(), timeout=120)
    assert answer.status_code == 201, answer.text
    return answer.json()


def forecast(url: str, days: int = 30) -> dict:
    return staff_get(url, "forecast", days=days)


def by_day(answer: dict) -> dict[tuple[str, str], int]:
    """The forecast's records per (day, data class): the bars of a chart drawn in day buckets."""
    return {(day, data_class): records for day, classes in answer["by_day"].items()
            for data_class, records in classes.items()}


def due_now(answer: dict, account_id: str) -> int:
    """The account's records on the forecast's first day: what the next sweep finds due."""
    return sum(line["records"] for line in answer["lines"]
               if line["account_id"] == account_id and line["day"] == answer["start"])


def place_hold(url: str, account_id: str | None, reference: str, data_class: str | None = None) -> dict:
    return staff_post(url, "holds", {"account_id": account_id, "data_class": data_class, "reference": reference,
                                     "reason": f"litigation hold, matter {reference}"})


def certificate(url: str, run_id: str, account_id: str) -> str:
    return staff_post(url, "certificates", {"run_id": run_id, "account_id": account_id, "exporter": "Acme Ltd",
                                            "importer": "Service Inc."})["certificate_id"]


def partial_certificate(url: str, run_id: str, account_id: str) -> str:
    """A certificate the ledger makes partial: a subprocessor accepted the account's erase job and has not
    confirmed it yet (an exception on the certificate, never certified as done)."""
    with Ledger.open(Settings.from_env().database_url) as ledger:
        ledger.append("subprocessor.result", {
            "subprocessor": "sendgrid", "resource": "recipient_erasure", "data_class": "email_delivery",
            "account_id": account_id, "found": 12, "deleted": 12, "already_gone": 0, "not_deleted": 0, "jobs": 1,
            "status": "awaiting_provider", "verification": "after_completion",
            "complete_by": "2026-12-23T00:00:00+00:00"}, actor="test")
    return certificate(url, run_id, account_id)


def events(kind: str) -> list:
    with Ledger.open(Settings.from_env().database_url) as ledger:
        return ledger.events_of_kind(kind)


def open_page(tab, path: str = "/retention/ui/") -> None:
    tab.goto(path)
    tab.wait_for_selector("body[data-ready=true]")


def bars(tab) -> dict[tuple[str, str], int]:
    found = tab.eval_on_selector_all("#forecast-chart rect.bar", "rects => rects.map(r => [r.dataset.day, "
                                     "r.dataset.class, Number(r.dataset.records)])")
    return {(day, data_class): records for day, data_class, records in found}
