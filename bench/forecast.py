"""The 366-day forecast (issue 20): the set-based forecast against what one would run instead, in the same run.

- **demo**: the demo stack (``retention.embedded.seed``: the six demo accounts, records of every age in every
  table and both buckets; ``demo/accounts.yaml`` through ``SweepContext.load``, as the API and the CLI load it),
  366 days, after one untimed run of each (connections and imports warm, as in the api-server). Contenders:
  ``engine.forecast.forecast``, and the previous version (every account resolved on every
  day at every location, the days counted with ``store.tally``; ``tests/fixtures/forecast_reference.py``, also
  the tests' oracle). Verification: both give the same lines.
- **10,000 accounts**: ``saas_data``'s registry and tables (``seed_template``), the shipped inventory (its two
  buckets empty), 366 days. Contenders: ``forecast``, with the statements it sends to the application database
  counted per location; and what a DBA would write: per SQL location and day, one grouped
  ``SELECT account_id, count(*) ... JOIN unnest(:ids, :cutoffs) ... WHERE anchor <= cutoff GROUP BY account_id``
  with that day's per-account cutoffs (the rules' cutoffs, computed beforehand and not timed), 367 statements per
  location. Verification: per location, the records the forecast makes due by day 366 equal the reference's
  count on day 366.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from common import REPO, MotoProcess, Row, log

sys.path.insert(0, str(REPO))  # the previous forecast lives with the tests, as their oracle

DAYS = 366
DEMO_LIMIT_S = 2.0


def demo_rows(server_url: str, moto: MotoProcess, work: Path, repeat: int) -> list[Row]:
    import pendulum
    from tests.fixtures.forecast_reference import previous_forecast
    from tests.fixtures.stack import ACCOUNTS

    from retention import embedded
    from retention.engine import SweepContext
    from retention.engine.forecast import forecast
    from retention.ledger import Ledger
    from retention.settings import Settings

    _reset(moto)
    app_url = embedded.create_database(server_url, "forecast_demo")
    now = pendulum.now("UTC").start_of("second")
    embedded.seed(app_url, embedded.s3_client(moto.endpoint), ACCOUNTS, now)
    os.environ.update({**embedded.airflow_connections(app_url, moto.endpoint),
                       "RETENTION_RULES_DIR": str(REPO / "retention_rules"),
                       "RETENTION_ACCOUNTS_FILE": str(REPO / "demo" / "accounts.yaml")})
    scenario = f"Forecast, demo stack ({len(ACCOUNTS)} accounts), {DAYS} days"
    with Ledger.open(f"sqlite:///{work / 'forecast-demo.db'}") as ledger:
        ctx = SweepContext.load(Settings.from_env(), ledger)
        holds = ledger.resolver_holds()
        fast: list[float] = []
        slow: list[float] = []
        lines: list[Any] = []
        reference: list[Any] = []
        forecast(ctx, now, DAYS)  # warm-up, not timed: the API and the CLI answer from a running process
        previous_forecast(ctx, now, DAYS, holds)
        for _ in range(repeat):  # round-robin
            started = time.perf_counter()
            lines = list(forecast(ctx, now, DAYS))
            fast.append(time.perf_counter() - started)
            started = time.perf_counter()
            reference = previous_forecast(ctx, now, DAYS, holds)
            slow.append(time.perf_counter() - started)
    same = lines == reference
    verification = f"{len(lines)} lines, the same as the previous version's" if same else \
        f"DIFFERENT: {len(lines)} lines against the previous version's {len(reference)}"
    records = sum(line.records for line in lines)
    log(f"{scenario}: forecast {_median(fast):.2f} s, previous {_median(slow):.2f} s; {verification}")
    return [Row(scenario, "previous forecast (resolve per account x day x location, tally per day)", records,
                _median(slow), verified=same, verification=verification, extra={"runs_s": _rounded(slow)}),
            Row(scenario, "forecast (set-based)", records, _median(fast),
                reference="previous forecast (resolve per account x day x location, tally per day)", verified=same,
                verification=verification, target=f"< {DEMO_LIMIT_S:.0f} s", target_met=same and _median(fast)
                < DEMO_LIMIT_S, extra={"runs_s": _rounded(fast)})]


def saas_rows(server_url: str, moto: MotoProcess, work: Path, accounts: int, rows: int) -> list[Row]:
    import pendulum
    import sqlalchemy as sa

    from retention import embedded
    from retention.engine import SweepContext
    from retention.engine.forecast import forecast
    from retention.ledger import Ledger
    from retention.rules import load_ruleset
    from retention.rules.inventory import S3Location, load_inventory
    from retention.stores import Store
    from retention.stores.s3 import S3Store
    from retention.stores.sql import SqlStore
    from saas_data import S3_BUCKETS, account_rows, seed_template, to_account

    _reset(moto)
    client = embedded.s3_client(moto.endpoint)
    for bucket, versioned in S3_BUCKETS:
        client.create_bucket(Bucket=bucket)
        if versioned:
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    now = pendulum.now("UTC").start_of("second")
    name = "forecast_saas"
    seed_template(server_url, name, accounts, rows, now)
    url = str(sa.engine.make_url(server_url).set(database=name))
    engine = sa.create_engine(url)
    ruleset = load_ruleset(REPO / "retention_rules")
    inventory = load_inventory(REPO / "retention_rules" / "systems.yaml", ruleset)
    registry = {account.id: account for account in map(to_account, account_rows(accounts, now))}

    def open_store(location_id: str, spec: Any) -> Store:
        if isinstance(spec, S3Location):
            return S3Store(location_id, spec, client)
        return SqlStore(location_id, spec, engine)

    stores = {location_id: open_store(location_id, spec) for location_id, spec in inventory.locations.items()}
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    with Ledger.open(f"sqlite:///{work / 'forecast-saas.db'}") as ledger:
        ctx = SweepContext(ruleset, inventory, registry, ledger, open_store=lambda location_id, _: stores[location_id])
        sent.clear()
        started = time.perf_counter()
        lines = list(forecast(ctx, now, DAYS))
        seconds = time.perf_counter() - started
    statements = len(sent)
    due_by_location: dict[str, int] = {}
    for line in lines:
        due_by_location[line.location] = due_by_location.get(line.location, 0) + line.records
    sa.event.remove(engine, "before_cursor_execute", record)
    reference_s, reference_due, reference_statements = _dba_per_day(ctx, engine, now)
    engine.dispose()
    compared = sorted(reference_due)
    differ = [location for location in compared if reference_due[location] != due_by_location.get(location, 0)]
    same = not differ
    verification = (f"per location, records due by day {DAYS} equal the reference's ({len(compared)} SQL locations)"
                    if same else f"DIFFERENT at {', '.join(differ)}")
    records = sum(due_by_location.values())
    scenario = f"Forecast, {accounts:,} accounts, {rows:,} rows, {DAYS} days"
    sql_locations = sum(1 for spec in inventory.locations.values() if not isinstance(spec, S3Location))
    log(f"{scenario}: forecast {seconds:.1f} s ({statements} statements), reference {reference_s:.1f} s "
        f"({reference_statements} statements); {verification}")
    return [Row(scenario, "DBA: one grouped COUNT per SQL location and day", records, reference_s, verified=same,
                verification=verification, extra={"statements": reference_statements,
                                                  "statements_per_location": reference_statements // len(compared)}),
            Row(scenario, "forecast (set-based, all locations)", records, seconds,
                reference="DBA: one grouped COUNT per SQL location and day", verified=same, verification=verification,
                extra={"statements": statements, "sql_locations": sql_locations,
                       "statements_per_sql_location": round(statements / sql_locations, 2),
                       "lines": len(lines)})]


def _dba_per_day(ctx: Any, engine: Any, now: Any) -> tuple[float, dict[str, int], int]:
    """Per SQL location and day, one grouped count of the rows at or before each account's cutoff of that day;
    the cutoffs are the rules' (``resolve``, ``sweep_step``, ``cutoff_series``), computed first and not timed.
    No pending-anonymize filter: none of the bench's rows is anonymized yet, so it would change no count.
    Returns the seconds spent in the statements, each location's count on the last day, and the statements."""
    import sqlalchemy as sa

    from retention.engine.planner import sweep_step
    from retention.engine.steps import Step
    from retention.rules import resolve
    from retention.rules.inventory import SqlLocation
    from retention.rules.resolver import cutoff_series

    moments = [now.add(days=day) for day in range(DAYS + 1)]
    memo: dict[Any, Any] = {}
    seconds = 0.0
    statements = 0
    last_day: dict[str, int] = {}
    with engine.connect() as conn:
        for location_id, spec in ctx.inventory.locations.items():
            if not isinstance(spec, SqlLocation):
                continue
            plan: dict[str, tuple[str, tuple[datetime, ...]]] = {}
            for account in ctx.accounts.values():
                decision = resolve(ctx.ruleset, account, spec.data_class, now, [])
                step = sweep_step(decision, account)
                if not isinstance(step, Step) or step.selector.anchor is None:
                    continue  # none of these accounts is terminated: every step here is record-anchored
                key = (decision.rule_id, decision.retain_for)
                if key not in memo:
                    memo[key] = cutoff_series(ctx.ruleset, decision, moments)
                plan[account.id] = (step.selector.anchor, memo[key])
            table = spec.table
            for anchor in sorted({anchor for anchor, _ in plan.values()}):
                column = spec.timestamps[anchor]
                ids = [account for account, (a, _) in plan.items() if a == anchor]
                statement = sa.text(
                    f"SELECT t.account_id, count(*) FROM {table} t JOIN unnest(CAST(:ids AS text[]), "
                    f"CAST(:cutoffs AS timestamptz[])) AS w(account_id, cutoff) ON t.account_id = w.account_id "
                    f"WHERE t.{column} <= w.cutoff GROUP BY t.account_id")
                for day in range(DAYS + 1):
                    cutoffs = [plan[account][1][day] for account in ids]
                    started = time.perf_counter()
                    counted = conn.execute(statement, {"ids": ids, "cutoffs": cutoffs}).all()
                    seconds += time.perf_counter() - started
                    statements += 1
                    if day == DAYS:
                        last_day[location_id] = last_day.get(location_id, 0) + sum(n for _, n in counted)
            log(f"reference: {location_id} counted")
    return seconds, last_day, statements


def _reset(moto: MotoProcess) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{moto.endpoint}/moto-api/reset", method="POST")).close()


def _median(values: list[float]) -> float:
    return sorted(values)[(len(values) - 1) // 2]


def _rounded(values: list[float]) -> list[float]:
    return [round(value, 3) for value in values]
