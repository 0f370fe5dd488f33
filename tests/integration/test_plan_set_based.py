"""Set-based planning on the embedded stack: the plan counts each location with one ``store.tally``, so the
application database sees the same number of statements for 10 accounts as for 200, and every planned
count is what per-account ``count`` says."""

from __future__ import annotations

import urllib.request

import pendulum
import pytest
import sqlalchemy as sa

from retention import embedded
from retention.engine import SweepContext, plan_sweep
from retention.engine.steps import count_mode
from retention.ledger import Ledger
from retention.rules import Account, load_ruleset
from retention.rules.inventory import S3Location, load_inventory
from retention.stores import Selector, Store
from retention.stores.s3 import S3Store
from retention.stores.sql import SqlStore
from tests.fixtures.stack import REPO
from tests.fixtures.tally import statements

pytestmark = pytest.mark.postgres

JURISDICTIONS = ("EEA", "UK", "US-CA")


def account(i: int) -> Account:
    return Account.model_validate({"id": f"acct_{i:04d}", "customer": f"Customer {i}", "state": "active",
                                   "jurisdiction": JURISDICTIONS[i % 3], "created_at": "2019-01-01T00:00:00Z",
                                   "contract_end": "2030-01-01T00:00:00Z"})


def plan_counting(app_url: str, s3_endpoint: str, ledger_url: str, n: int) -> tuple[int, list]:
    """Seed n accounts (one record per age and table), plan a dry run over every location; returns the
    statements the application database received while planning and the planned tasks."""
    now = pendulum.now("UTC").start_of("second")
    accounts = {a.id: a for a in map(account, range(n))}
    client = embedded.s3_client(s3_endpoint)
    embedded.seed(app_url, client, list(accounts), now, per_age=1)
    ruleset = load_ruleset(REPO / "retention_rules")
    inventory = load_inventory(REPO / "retention_rules" / "systems.yaml", ruleset)
    engine = sa.create_engine(app_url)

    def open_store(location_id: str, spec) -> Store:
        if isinstance(spec, S3Location):
            return S3Store(location_id, spec, client)
        return SqlStore(location_id, spec, engine)

    stores = {location_id: open_store(location_id, spec) for location_id, spec in inventory.locations.items()}
    with Ledger.open(ledger_url) as ledger, statements(engine) as sent:
        ctx = SweepContext(ruleset, inventory, accounts, ledger, open_store=lambda location_id, _: stores[location_id])
        plan = plan_sweep(ctx, now, dry_run=True, actor="test")
        tasks = ledger.tasks(plan.run_id)
    checked = check_against_count(stores, tasks)
    engine.dispose()
    return len(sent), checked


def check_against_count(stores: dict[str, Store], tasks: list) -> list:
    """Every planned count equals what the store's per-account ``count`` says."""
    for task in tasks:
        store = stores[task.location]
        assert task.total_count == store.count(Selector(task.account_id)), task.location
        if task.status == "planned":
            selector = Selector(task.account_id, task.anchor, task.cutoff)
            assert task.estimated_count == store.count(selector, **count_mode(task.action)), task.location
    return tasks


def reset_s3(endpoint: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()


def test_planning_sends_the_same_statements_for_10_as_for_200_accounts(postgres_url, s3_endpoint, tmp_path):
    reset_s3(s3_endpoint)
    few, few_tasks = plan_counting(postgres_url, s3_endpoint, f"sqlite:///{tmp_path / 'few.db'}", 10)
    reset_s3(s3_endpoint)
    many, many_tasks = plan_counting(postgres_url, s3_endpoint, f"sqlite:///{tmp_path / 'many.db'}", 200)

    assert len(many_tasks) == 20 * len(few_tasks) > 0  # every account has records in every seeded location
    assert many == few


def test_the_forecast_counts_what_per_day_per_account_count_says(stack):
    """The forecast's few tallies give the lines a count per account, location and day gives."""
    from retention.engine.forecast import forecast
    from retention.engine.planner import sweep_step
    from retention.engine.steps import Skip
    from retention.ledger.chain import iso_utc
    from retention.rules import resolve
    from retention.settings import Settings

    days = 12  # the demo's 20-day-old e-mail events fall due on about day 10
    with Ledger.open(stack.ledger_url) as ledger:
        ctx = SweepContext.load(Settings.from_env(), ledger)
        lines = {(d.day, d.location, d.account_id): (d.records, d.rule_id, d.cutoff)
                 for d in forecast(ctx, stack.now, days)}
        holds = ledger.resolver_holds()
        reference = {}
        for location_id, spec in ctx.inventory.locations.items():
            store = ctx.store(location_id)
            for account in ctx.accounts.values():
                already = 0
                for day in range(days + 1):
                    at = stack.now.add(days=day)
                    decision = resolve(ctx.ruleset, account, spec.data_class, at, holds)
                    step = sweep_step(decision, account)
                    if isinstance(step, Skip):
                        continue
                    due = store.count(step.selector, **count_mode(step.action))
                    if due > already:
                        cutoff = step.selector.cutoff
                        reference[at.to_date_string(), location_id, account.id] = (
                            due - already, decision.rule_id, iso_utc(cutoff) if cutoff else None)
                        already = due

    assert any(day != stack.now.to_date_string() for day, _, _ in reference)  # later days are in the check
    assert lines == reference
