"""Data subject requests at scale (issue 19): 1,000 erasure requests, one e-mail address each, against the demo
schema with 1M rows per table, through the product's path and against a hand-written per-request transaction.

    python bench/subjects.py [--rows 1000000] [--accounts 1000] [--requests 1000] [--quick] [--steps]
                             [--profile DIR] [--out FILE]

The data is ``subjects_data``'s. Seeded once into a template database; each contender works on its own
``CREATE DATABASE ... TEMPLATE`` copy, and both copies are verified by the same census.

- **The product**, in this process, one request after the other, each through the steps ``requests.tasks`` runs (the
  subject_request DAG and ``retention request run``), called at the level below them so that the rules, inventory
  and stores are loaded once, as a long-lived worker would: ``filing.file_request``, ``expand.record_expansion``
  (identity expansion through every location's ``linked``), ``plan.preview_request`` (index check, counts, one
  planned task per location with matches, subprocessors: none), ``decisions.approve_if_small``,
  ``engine.executor.execute_location`` and ``engine.verifier.verify_location`` for each location with work, and
  ``closing.close_request``. The ledger is PostgreSQL (a database of the same server), the S3 location with a
  subject key segment lives on a local moto endpoint (its bucket exists, empty: each request lists its account's
  prefix there). What each step adds by opening its own context is the next contender's; Airflow's scheduling
  between steps is measured by neither.
- **The product through the steps** (``--steps``): the same requests through ``requests.tasks`` as the DAG calls
  it (open_request, expand, preview, approve_if_small, execute and verify per location, close), each step opening
  the ledger and loading the rules, the inventory, the registry (``retention_rules/registry.yaml``'s SQL source:
  the application's accounts table) and its stores, in this one process.
- **The reference**, what an engineer would write instead, with psycopg: per request one transaction that reads
  the identifiers linked to the e-mail address (one SELECT per table holding an e-mail beside other identifiers),
  then per table one ``DELETE ... WHERE account_id = %s AND (<column> = ANY(%s) ...)`` (chat messages through
  their conversation first), ``app_users`` one ``UPDATE`` that clears and hashes the inventory's columns, and
  nothing where the rules keep the rows under law (invoices): the same job the product's preview plans.

Verification: per table, no requested row still identifiable, and every other row's count and checksum unchanged.
Lookups: the EXPLAIN of ``SqlStore.count``'s own statement for one request's expanded subject, at every SQL
location with subjects, must go through the index the inventory declares (no sequential scan); this bench fails
otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, REPO, MotoProcess, Row, apply_ratios, clear_dir, log, machine_info, postgres, write_json  # noqa: E402
from subjects_data import (  # noqa: E402
    Action,
    Location,
    Request,
    census,
    decide,
    explain_lookups,
    judge,
    load_specs,
    pick_requests,
    reference_lookups,
    reference_statements,
    seed_template,
    subject_locations,
    utc_now,
    write_requested,
)
from subjects_steps import ACTOR, Steps, latency, tasks_run  # noqa: E402

FULL = {"rows": 1_000_000, "accounts": 1_000, "requests": 1_000}
QUICK = {"rows": 100_000, "accounts": 1_000, "requests": 100}
S3_BUCKETS = ("chat-attachments",)  # the inventory's S3 locations with subjects


# -- the product ------------------------------------------------------------------------------------

class Statements:
    """SQL statements an engine's connections sent (SQLAlchemy's ``after_cursor_execute``)."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.count = 0
        event.listen(engine, "after_cursor_execute", self._one)

    def _one(self, *_args: Any) -> None:
        self.count += 1


def product_run(app_url: str, ledger_url: str, endpoint: str, work: Path, requests: list[Request],
                accounts: int) -> dict[str, Any]:
    import pendulum
    import sqlalchemy as sa

    from retention.embedded import s3_client
    from retention.engine.context import SweepContext
    from retention.engine.executor import execute_location
    from retention.engine.verifier import verify_location
    from retention.identifier_hashes import load_key
    from retention.ledger import Ledger
    from retention.ledger.database import migrate
    from retention.registry.base import Registry
    from retention.requests.closing import close_request
    from retention.requests.decisions import approve_if_small
    from retention.requests.expand import record_expansion
    from retention.requests.filing import file_request
    from retention.requests.plan import preview_request
    from retention.requests.request import parse_subject_request
    from retention.rules.inventory import LocationSpec, S3Location
    from retention.settings import Settings
    from retention.stores import Store
    from retention.stores.s3 import S3Store
    from retention.stores.sql import SqlStore
    from saas_data import account_rows, to_account

    ruleset, inventory = load_specs()
    settings = Settings.from_env(rules_dir=REPO / "retention_rules", home=work / "home", database_url=ledger_url)
    migrate(ledger_url)
    engine = sa.create_engine(app_url)
    client = s3_client(endpoint)
    stores: dict[str, Store] = {}

    def open_store(location_id: str, spec: LocationSpec) -> Store:
        # One store per location for the whole run, as a long-lived worker would keep them (each engine.tasks
        # step opens its own: the table reflection it costs is not in these figures).
        if location_id not in stores:
            stores[location_id] = (S3Store(location_id, spec, client) if isinstance(spec, S3Location)
                                   else SqlStore(location_id, spec, engine))
        return stores[location_id]

    registry = Registry({row["id"]: to_account(row) for row in account_rows(accounts, datetime.now(UTC))},
                        "bench:accounts")
    steps = Steps()
    per_request: list[float] = []
    statuses: dict[str, int] = {}
    approvals_needed = 0
    today = datetime.now(UTC).date().isoformat()
    with Ledger.open(ledger_url) as ledger:
        app_statements, ledger_statements = Statements(engine), Statements(ledger.engine)
        ctx = SweepContext(ruleset, inventory, registry.accounts, ledger, open_store=open_store, registry=registry)
        key = load_key(settings)
        started = time.perf_counter()
        for location_id, spec in inventory.locations.items():  # opened (reflected) before the clock starts
            if spec.subject_kinds():
                ctx.store(location_id)
        stores_open_s = time.perf_counter() - started
        started_all = time.perf_counter()
        for request in requests:
            started = time.perf_counter()
            spec = parse_subject_request({"account_id": request.account_id, "request_type": "erasure",
                                          "identifiers": {"email": [request.email]},
                                          "reference": f"DSR-{request.index + 1}", "received_on": today})
            rid = steps.timed("file", lambda spec=spec: file_request(ledger, settings, registry, spec,
                                                                     filed_by=ACTOR))
            steps.timed("expand", lambda rid=rid: record_expansion(ctx, rid, key, actor=ACTOR))
            preview = steps.timed("preview", lambda rid=rid: preview_request(
                ctx, settings, rid, pendulum.now("UTC"), subprocessors=[], actor=ACTOR))
            if steps.timed("approve", lambda rid=rid: approve_if_small(ctx, rid, settings.subject_approval_records,
                                                                       actor=ACTOR)):
                approvals_needed += 1  # waits for a person: counted, left open
                per_request.append(time.perf_counter() - started)
                continue
            run_id = preview["run_id"]
            for location in preview["all"]:
                steps.timed("execute", lambda loc=location, run=run_id: execute_location(ctx, run, loc, actor=ACTOR))
            for location in preview["all"]:
                steps.timed("verify", lambda loc=location, run=run_id: verify_location(ctx, run, loc, actor=ACTOR))
            closed = steps.timed("close", lambda rid=rid: close_request(ctx, rid, actor=ACTOR))
            statuses[closed["status"]] = statuses.get(closed["status"], 0) + 1
            per_request.append(time.perf_counter() - started)
            if (request.index + 1) % 100 == 0:
                log(f"product: {request.index + 1:,} requests in {time.perf_counter() - started_all:.1f} s")
        total = time.perf_counter() - started_all
        statements = {"app_db_per_request": round(app_statements.count / len(requests), 1),
                      "ledger_per_request": round(ledger_statements.count / len(requests), 1)}
    engine.dispose()
    return {"seconds": total, "latency": latency(per_request), "steps": steps.summary(), "statuses": statuses,
            "approvals_needed": approvals_needed, "statements": statements,
            "stores_open_s": round(stores_open_s, 2)}


# -- the reference ----------------------------------------------------------------------------------

def reference_run(app_url: str, requests: list[Request], locations: list[Location],
                  actions: dict[tuple[str, str], tuple[Action, str]]) -> dict[str, Any]:
    import secrets

    import psycopg
    import sqlalchemy as sa

    lookups = reference_lookups(locations)
    plain = sa.engine.make_url(app_url).set(drivername="postgresql").render_as_string(hide_password=False)
    per_request: list[float] = []
    affected = 0
    with psycopg.connect(plain) as conn:
        started_all = time.perf_counter()
        for request in requests:
            started = time.perf_counter()
            params: dict[str, Any] = {"account": request.account_id, "email": request.email,
                                      "salt": secrets.token_hex(16)}
            linked: dict[str, set[str]] = {"email": {request.email}}
            with conn.transaction(), conn.cursor() as cur:
                for statement, kinds in lookups:
                    for values in cur.execute(statement, params).fetchall():
                        for kind, value in zip(kinds, values, strict=True):
                            if value is not None:
                                linked.setdefault(kind, set()).add(value)
                for loc in locations:
                    arrays = {kind: sorted(linked.get(kind, ())) for kind in loc.columns}
                    for statement in reference_statements(loc, actions[(request.account_id, loc.id)][0]):
                        cur.execute(statement, {**params, **arrays})
                        affected += max(cur.rowcount, 0)
            per_request.append(time.perf_counter() - started)
        total = time.perf_counter() - started_all
    return {"seconds": total, "latency": latency(per_request), "affected": affected}


# -- databases --------------------------------------------------------------------------------------

def _admin(server_url: str, *statements: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    admin.dispose()


def _url(server_url: str, name: str) -> str:
    import sqlalchemy as sa

    return sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)


def copy_of(server_url: str, template: str, name: str) -> str:
    _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
           f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return _url(server_url, name)


# -- the scenario -----------------------------------------------------------------------------------

def scenario(server_url: str, moto: MotoProcess, work: Path, rows: int, accounts: int,
             n_requests: int, with_steps: bool, profile: Path | None) -> tuple[list[Row], dict[str, Any]]:
    now = utc_now()
    _, inventory = load_specs()
    locations = subject_locations(inventory)
    name = f"Subject requests: {n_requests:,} erasures, {rows / 1e6:g}M rows per table, {accounts:,} accounts"
    log(f"{name}: seeding")
    started = time.perf_counter()
    template = "subjects_template"
    _admin(server_url, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
    counts = seed_template(server_url, template, locations, accounts, rows, now)
    requests = pick_requests(n_requests, accounts, rows)
    actions = decide(requests, locations, accounts, now)
    template_url = _url(server_url, template)
    requested = write_requested(template_url, requests, locations, actions)
    before = census(template_url, locations)
    seed_s = time.perf_counter() - started
    log(f"{name}: {sum(counts.values()):,} rows seeded in {seed_s:.0f} s; requested {requested}")
    first = requests[0]
    expanded = _expanded(template_url, first)
    lookups = explain_lookups(template_url, locations, expanded, first.account_id)
    details: dict[str, Any] = {"seed_s": round(seed_s, 1), "tables": counts, "requested": requested,
                               "accounts_per_action": _action_counts(actions), "lookups": lookups}
    out: list[Row] = []
    reference = "hand-written transaction per request (psycopg)"
    try:
        url = copy_of(server_url, template, "subjects_reference")
        log(f"{name}: {reference}")
        ref = reference_run(url, requests, locations, actions)
        ok, text, left = judge(before, census(url, locations))
        out.append(Row(name, reference, n_requests, ref["seconds"], verified=ok, verification=text, left=left,
                       extra={"requests_per_minute": round(n_requests / ref["seconds"] * 60, 1), **ref}))
        _admin(server_url, 'DROP DATABASE IF EXISTS "subjects_reference" WITH (FORCE)')
        url = copy_of(server_url, template, "subjects_product")
        _admin(server_url, 'DROP DATABASE IF EXISTS "subjects_ledger" WITH (FORCE)',
               'CREATE DATABASE "subjects_ledger"')
        moto.reset()
        for bucket in S3_BUCKETS:
            moto.seed(bucket, "tenants/", [])
        log(f"{name}: product (file, expand, preview, approve, execute, verify, close)")
        product = profiled(profile, "product", lambda: product_run(
            url, _url(server_url, "subjects_ledger"), moto.endpoint, work, requests, accounts))
        ok, text, left = judge(before, census(url, locations))
        if product["approvals_needed"] or set(product["statuses"]) != {"completed"}:
            ok = False
            text += f"; requests closed {product['statuses']}, {product['approvals_needed']} awaiting approval"
        out.append(Row(name, "product: requests steps + engine execute/verify", n_requests, product["seconds"],
                       reference=reference, verified=ok, verification=text, left=left,
                       extra={"requests_per_minute": round(n_requests / product["seconds"] * 60, 1), **product}))
        if with_steps:
            url = copy_of(server_url, template, "subjects_steps")
            _admin(server_url, 'DROP DATABASE IF EXISTS "subjects_steps_ledger" WITH (FORCE)',
                   'CREATE DATABASE "subjects_steps_ledger"')
            moto.reset()
            for bucket in S3_BUCKETS:
                moto.seed(bucket, "tenants/", [])
            log(f"{name}: product through the steps (requests.tasks, a context per step)")
            steps = profiled(profile, "steps", lambda: tasks_run(
                url, _url(server_url, "subjects_steps_ledger"), moto.endpoint, work, requests))
            ok, text, left = judge(before, census(url, locations))
            if steps["approvals_needed"] or set(steps["statuses"]) != {"completed"}:
                ok = False
                text += f"; requests closed {steps['statuses']}, {steps['approvals_needed']} awaiting approval"
            out.append(Row(name, "product through the steps (requests.tasks, a context per step)", n_requests,
                           steps["seconds"], reference=reference, verified=ok, verification=text, left=left,
                           extra={"requests_per_minute": round(n_requests / steps["seconds"] * 60, 1), **steps}))
    finally:
        _admin(server_url, *(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'
                             for db in ("subjects_reference", "subjects_product", "subjects_ledger", "subjects_steps",
                                       "subjects_steps_ledger", template)))
    return out, details


def profiled(directory: Path | None, name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()``, under cProfile into ``directory/name.prof`` when a directory is given."""
    if directory is None:
        return run()
    import cProfile

    directory.mkdir(parents=True, exist_ok=True)
    profiler = cProfile.Profile()
    try:
        return profiler.runcall(run)
    finally:
        profiler.dump_stats(directory / f"{name}.prof")


def _expanded(url: str, request: Request) -> dict[str, list[str]]:
    """One request's identifiers as the expansion reaches them (``bench.linked``)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found: dict[str, list[str]] = {}
        for kind, value in conn.execute(sa.text("SELECT kind, value FROM bench.linked WHERE account_id = :a AND "
                                                "EXISTS (SELECT 1 FROM bench.linked e WHERE e.account_id = :a "
                                                "AND e.kind = 'email' AND e.value = :e)"),
                                        {"a": request.account_id, "e": request.email}):
            found.setdefault(kind, []).append(value)
    engine.dispose()
    return found


def _action_counts(actions: dict[tuple[str, str], tuple[Action, str]]) -> dict[str, dict[str, int]]:
    """Per location, how many of the requested accounts it deletes, anonymizes or keeps in."""
    out: dict[str, dict[str, int]] = {}
    for (_, location), (action, _) in actions.items():
        out.setdefault(location, {}).setdefault(action, 0)
        out[location][action] += 1
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"smoke sizes: {QUICK}")
    parser.add_argument("--rows", type=int, help=f"rows per table (default {FULL['rows']:,})")
    parser.add_argument("--accounts", type=int, help=f"accounts (default {FULL['accounts']:,})")
    parser.add_argument("--requests", type=int, help=f"erasure requests (default {FULL['requests']:,})")
    parser.add_argument("--steps", action="store_true",
                        help="also run the product through the requests.tasks steps, a context per step (as the DAG)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="cProfile each product contender into DIR/<contender>.prof (its times then include the "
                             "profiler's cost: not for the figures)")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/<date>-subjects.json)")
    args = parser.parse_args()
    sizes = dict(QUICK if args.quick else FULL)
    sizes.update({k: v for k, v in (("rows", args.rows), ("accounts", args.accounts), ("requests", args.requests))
                  if v is not None})
    started_at = datetime.now(UTC)
    out = args.out or BENCH / "results" / f"{started_at:%Y-%m-%d}-{'quick-' if args.quick else ''}subjects.json"
    work = Path(tempfile.mkdtemp(prefix="retention-bench-subjects-"))
    t0 = time.perf_counter()
    moto = None
    try:
        moto = MotoProcess(work / "s3-endpoint.log")
        clear_dir(work / "pg")
        with postgres(work / "pg" / "data") as server_url:
            from retention.embedded import create_database

            info = machine_info(create_database(server_url, "bench"))
            rows, details = scenario(server_url, moto, work, sizes["rows"], sizes["accounts"], sizes["requests"],
                                     args.steps, args.profile)
    finally:
        if moto is not None:
            moto.stop()
        clear_dir(work)
        work.rmdir()
    apply_ratios(rows)
    lookups_ok = all(lookup["through_declared_index"] for lookup in details["lookups"])
    for row in rows:
        print(f"{row.contender}: {row.extra['requests_per_minute']:,.0f} requests/min, latency {row.extra['latency']}"
              f"{f', ratio {row.ratio:.3f}x' if row.ratio is not None else ''}; "
              f"{'ok: ' if row.verified else ''}{row.verification}")
    for lookup in details["lookups"]:
        print(f"lookup {lookup['location']}: {', '.join(lookup['scans'])} via {', '.join(lookup['indexes_used'])}"
              f"{'' if lookup['through_declared_index'] else '  NOT THROUGH ITS DECLARED INDEX'}")
    write_json(out, {"started_at": started_at.isoformat(timespec="seconds"), "sizes": sizes,
                     "wall_seconds": round(time.perf_counter() - t0, 1), "machine": info,
                     "rows": [r.as_dict() for r in rows], "lookups_through_indexes": lookups_ok, **details})
    log(f"wrote {out}")
    return 0 if lookups_ok and all(r.verified for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
