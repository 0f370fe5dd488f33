"""S3 at SaaS scale: thousands of account prefixes in one bucket, the whole sweep against s5cmd.

Plain bucket: the shipped ``chat_attachments`` location (``tenants/{account_id}/attachments/<date>/<file>``,
the date segment is the record's time), ``objects`` objects spread evenly over ``accounts`` prefixes. Of each
account's ten slots, six are dated 2020 (past every cutoff), one ~500 days ago (past the one-year cutoff the
instruction of every fifth account sets, within the two-year default otherwise) and three ~10 days ago.
Versioned bucket: the same location on a versioned bucket, ``versioned_keys`` keys spread over the accounts,
each with two versions and a delete marker on every fifth key (moto's version listing is quadratic in the
bucket, so it stays at 10,000 keys).

Contenders, each on a freshly reset and seeded endpoint:
- the engine, the whole path a user runs: ``plan_sweep`` (counts), ``execute_location``, ``verify_location``,
  ``finish_sweep``, over the registry of ``accounts`` accounts and this one location, SQLite ledger;
- ``s5cmd run`` of a command file with one ``rm`` per due key (``rm --all-versions`` on the versioned bucket):
  s5cmd cannot filter by a per-account date, so it is handed the list of due keys, computed by the bench from
  the same cutoffs and not timed. That is the fairest equivalent: a user would also have to list the bucket;
- ``s5cmd ls`` of the bucket, filtered in Python against the cutoffs, then that ``s5cmd run``: what a user
  would run end to end without the engine (informational).

Verification re-lists the bucket until two listings agree: the keys left must be exactly the keys not due
(versioned: no version and no marker of a due key, every version of the others).
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from common import REPO, S5CMD, MotoProcess, Row, log, run_tool, s3_client, tail

LOCATION = "chat_attachments"
TEMPLATE = "tenants/{account_id}/attachments/"
SLOTS_OLD, SLOTS_MIDDLE = 6, 1  # of ten per account (the other three are recent)
MARKER_EVERY = 5
S3_RATIO = 0.6
LISTINGS = 6


def account_id(i: int) -> str:
    return f"acct_{i:05d}"


def _slot_date(slot: int, today: date) -> date:
    if slot < SLOTS_OLD:
        return date(2020, 1, 1) + timedelta(days=slot * 30)
    if slot < SLOTS_OLD + SLOTS_MIDDLE:
        return today - timedelta(days=500)
    return today - timedelta(days=10)


def object_keys(accounts: int, n: int, today: date, *, spread: bool = False) -> list[tuple[str, int, int]]:
    """(key, account index, slot) for n objects over the accounts; ``spread`` puts one key per account first."""
    keys = []
    for k in range(n):
        account, nth = k % accounts, k // accounts
        slot = (k * 7) % 10 if spread else nth % 10
        day = _slot_date(slot, today)
        keys.append((f"{TEMPLATE.format(account_id=account_id(account))}{day.isoformat()}/file-{k:06d}.bin",
                     account, slot))
    return keys


def registry(accounts: int) -> dict[str, Any]:
    """Active EEA / UK / US-CA accounts; every fifth with a one-year transcript instruction."""
    from retention.rules import Account

    jurisdictions = ("EEA", "UK", "US-CA")
    return {account_id(i): Account.model_validate({
        "id": account_id(i), "state": "active", "jurisdiction": jurisdictions[i % 3],
        "created_at": "2019-01-01T00:00:00+00:00",
        "instructions": {"chat_transcripts": "P1Y"} if i % 5 == 0 else {}}) for i in range(accounts)}


def due_keys(keys: list[tuple[str, int, int]], accounts: dict[str, Any], at: datetime) -> set[str]:
    """The keys past their account's cutoff, by the rules (the same resolution the planner makes)."""
    import pendulum

    from retention.engine.planner import sweep_step
    from retention.rules import load_ruleset, resolve

    ruleset = load_ruleset(REPO / "retention_rules")
    when = pendulum.instance(at)
    cutoffs = {}
    for aid, account in accounts.items():
        step = sweep_step(resolve(ruleset, account, "chat_transcripts", when, []), account)
        cutoffs[aid] = step.selector.cutoff  # type: ignore[union-attr]  # active accounts: a delete step
    due = set()
    for key, _account, _slot in keys:
        aid, day = key.split("/")[1], key.split("/")[3]
        if datetime.fromisoformat(day).replace(tzinfo=UTC) <= cutoffs[aid]:
            due.add(key)
    return due


# -- verification ----------------------------------------------------------------------------------

def listing(client: Any, bucket: str, versioned: bool) -> dict[str, int]:
    """key -> versions + markers (plain: 1 per key), re-listed until two listings agree."""
    seen: list[dict[str, int]] = []
    for _ in range(LISTINGS):
        found: dict[str, int] = {}
        if versioned:
            for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="tenants/"):
                for entry in (*page.get("Versions", ()), *page.get("DeleteMarkers", ())):
                    found[entry["Key"]] = found.get(entry["Key"], 0) + 1
        else:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="tenants/"):
                for entry in page.get("Contents", ()):
                    found[entry["Key"]] = 1
        seen.append(found)
        if len(seen) >= 2 and seen[-1] == seen[-2]:
            return found
    raise RuntimeError(f"{bucket}: {LISTINGS} listings never agreed twice in a row")


def verify(client: Any, bucket: str, versioned: bool, seeded: dict[str, int], due: set[str]) -> tuple[bool, str, int]:
    left = listing(client, bucket, versioned)
    due_left = sum(n for key, n in left.items() if key in due)
    expected = {key: n for key, n in seeded.items() if key not in due}
    records = sum(left.values())
    if due_left == 0 and left == expected:
        return True, f"{records:,} records remain = exactly those of keys not due", 0
    return False, (f"FAILED: {due_left:,} records of due keys remain; "
                   f"{sum(expected.values()) - (records - due_left):,} records of other keys missing"), due_left


# -- contenders ------------------------------------------------------------------------------------

def engine_sweep(endpoint: str, bucket: str, versioned: bool, accounts: dict[str, Any], at: datetime,
                 ledger_dir: Path) -> dict[str, Any]:
    import pendulum

    from retention.engine import SweepContext, execute_location, finish_sweep, plan_sweep, verify_location
    from retention.ledger import Ledger
    from retention.rules import load_ruleset
    from retention.rules.inventory import SystemsFile
    from retention.stores.s3 import S3Store

    ruleset = load_ruleset(REPO / "retention_rules")
    inventory = SystemsFile.model_validate({"locations": {LOCATION: {
        "kind": "s3", "data_class": "chat_transcripts", "conn_id": "object_store", "bucket": bucket,
        "key_template": TEMPLATE, "timestamp": {"key_segment": 3, "format": "%Y-%m-%d"}, "versioned": versioned}}})
    client = s3_client(endpoint)
    shutil.rmtree(ledger_dir, ignore_errors=True)
    ledger_dir.mkdir(parents=True)
    out: dict[str, Any] = {}
    with Ledger.open(f"sqlite:///{ledger_dir / 'ledger.db'}") as ledger:
        ctx = SweepContext(ruleset, inventory, accounts, ledger,
                           open_store=lambda location_id, spec: S3Store(location_id, spec, client))
        started = time.perf_counter()
        plan = plan_sweep(ctx, pendulum.instance(at), dry_run=False, actor="bench", acknowledged=(LOCATION,))
        out["plan_s"] = time.perf_counter() - started
        started = time.perf_counter()
        out["affected"] = execute_location(ctx, plan.run_id, LOCATION, actor="bench")
        out["execute_s"] = time.perf_counter() - started
        started = time.perf_counter()
        out["residue_tasks"] = verify_location(ctx, plan.run_id, LOCATION, actor="bench")
        out["verify_s"] = time.perf_counter() - started
        out["status"] = finish_sweep(ledger, plan.run_id, actor="bench").status
        out["planned_tasks"] = plan.tasks
    out["ledger_bytes"] = sum(p.stat().st_size for p in ledger_dir.glob("ledger.db*") if p.is_file())
    return out


def s5cmd_run(endpoint: str, bucket: str, keys: list[str], versioned: bool, work: Path) -> dict[str, Any]:
    commands = work / "s5cmd-commands.txt"
    flag = "--all-versions " if versioned else ""
    commands.write_text("".join(f"rm {flag}s3://{bucket}/{key}\n" for key in sorted(keys)))
    started = time.perf_counter()
    result = run_tool([S5CMD, "--endpoint-url", endpoint, "run", str(commands)])
    return {"execute_s": time.perf_counter() - started, "exit_code": result.returncode,
            "stderr_tail": tail(result.stderr)}


def s5cmd_ls_run(endpoint: str, bucket: str, due: set[str], versioned: bool, work: Path) -> dict[str, Any]:
    """List with s5cmd, keep the keys past their cutoff (the bench's cutoffs), delete them with s5cmd run."""
    started = time.perf_counter()
    listed = run_tool([S5CMD, "--endpoint-url", endpoint, "ls", f"s3://{bucket}/tenants/*"])
    keys = [line.split()[-1] for line in listed.stdout.splitlines() if line.strip()]
    chosen = [key for key in keys if f"tenants/{key}" in due or key in due]
    out = s5cmd_run(endpoint, bucket, [k if k.startswith("tenants/") else f"tenants/{k}" for k in chosen],
                    versioned, work)
    out["execute_s"] = time.perf_counter() - started
    out["listed"] = len(keys)
    return out


# -- the scenario ----------------------------------------------------------------------------------

def one_bucket(moto: MotoProcess, work: Path, accounts_n: int, n: int, *, versioned: bool) -> list[Row]:
    at = datetime.now(UTC)
    bucket = "saas-recordings" if versioned else "saas-attachments"
    kind = f"{n:,} keys x 2 versions + markers" if versioned else f"{n:,} objects"
    scenario = f"S3 SaaS, {'versioned' if versioned else 'plain'}: {accounts_n:,} account prefixes, {kind}"
    keys = object_keys(accounts_n, n, at.date(), spread=versioned)
    names = [key for key, _, _ in keys]
    markers = names[::MARKER_EVERY] if versioned else []
    marked = set(markers)
    seeded = {key: (3 if key in marked else 2) if versioned else 1 for key in names}  # versions + markers
    accounts = registry(accounts_n)
    due = due_keys(keys, accounts, at)
    items = sum(seeded[key] for key in due)
    client = s3_client(moto.endpoint)

    def seed() -> None:
        moto.reset()
        found = moto.seed(bucket, "tenants/", names, versioned=versioned, copies=2 if versioned else 1,
                          markers=markers)
        if sum(found) != sum(seeded.values()):
            raise RuntimeError(f"seeding left {found}, expected {sum(seeded.values())} records")

    log(f"{scenario}: {len(due):,} of {n:,} keys due ({items:,} records)")
    rows: list[Row] = []
    ref = "s5cmd run (due keys given)"
    log(f"{scenario}: {ref}")
    seed()
    out = s5cmd_run(moto.endpoint, bucket, list(due), versioned, work)
    ok, text, left = verify(client, bucket, versioned, seeded, due)
    rows.append(Row(scenario, ref, items, out["execute_s"], verified=ok, verification=text, left=left, extra=out))
    log(f"{scenario}: engine sweep")
    seed()
    out = engine_sweep(moto.endpoint, bucket, versioned, accounts, at, work / "ledger-s3-saas")
    ok, text, left = verify(client, bucket, versioned, seeded, due)
    ok = ok and out["status"] == "succeeded"
    whole = out["plan_s"] + out["execute_s"] + out["verify_s"]
    target = None if versioned else f"whole path >= {S3_RATIO}x s5cmd"
    rows.append(Row(scenario, "engine, whole path (plan counts + execute + verify)", items, whole, reference=ref,
                    verified=ok, verification=text + ("" if out["status"] == "succeeded" else f"; run {out['status']}"),
                    left=left, target=target, extra={k: round(v, 3) if isinstance(v, float) else v
                                                      for k, v in out.items()}))
    rows.append(Row(scenario, "engine, execute_location alone", items, out["execute_s"], reference=ref,
                    verified=ok, verification="the run above"))
    if not versioned:
        name = "s5cmd ls + filter + run (what a user runs end to end)"
        log(f"{scenario}: {name}")
        seed()
        out = s5cmd_ls_run(moto.endpoint, bucket, due, versioned, work)
        ok, text, left = verify(client, bucket, versioned, seeded, due)
        rows.append(Row(scenario, name, items, out["execute_s"], reference=ref, verified=ok, verification=text,
                        left=left, extra=out))
    return rows


def judge_targets(rows: list[Row]) -> None:
    for row in rows:
        if row.scenario.startswith("S3 SaaS") and row.target is not None:
            row.target_met = bool(row.verified and row.ratio is not None and row.ratio >= S3_RATIO)


def scenario_rows(moto: MotoProcess, work: Path, accounts: int, objects: int, versioned_keys: int) -> list[Row]:
    return (one_bucket(moto, work, accounts, objects, versioned=False)
            + one_bucket(moto, work, accounts, versioned_keys, versioned=True))
