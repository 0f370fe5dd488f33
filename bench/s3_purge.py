"""S3 prefix purge: the engine against s5cmd, `aws s3 rm --recursive` and a plain boto3 loop.

Every contender gets the same freshly seeded data (the endpoint is reset in between), is timed on its
own, and is then verified by re-listing the prefix until two consecutive listings agree. What a
contender left behind is reported, not hidden behind its exit code.

Plain bucket: N objects under one account's prefix; everything under it is due (no cutoff).
Versioned bucket: K keys, each with two versions, and a delete marker on top of every fifth key;
the job is K * 2 + K / 5 records (versions + markers), all of which must go.
"""

from __future__ import annotations

import time
from pathlib import Path

import pendulum

from common import (
    AWS,
    S5CMD,
    MotoProcess,
    Row,
    TimedStore,
    children_cpu_seconds,
    clear_dir,
    combine,
    log,
    run_tool,
    s3_client,
    self_cpu_seconds,
    tail,
)

BUCKET = "bench-attachments"
VBUCKET = "bench-recordings"
ACCOUNT = "acct_bench"
TEMPLATE = "tenants/{account_id}/attachments/"
PREFIX = TEMPLATE.format(account_id=ACCOUNT)
FILES_PER_DIR = 1000
MARKER_EVERY = 5  # versioned seed: a delete marker on top of every fifth key
# Not the default: the engine with S3Store(batch_size=2000), to show what that one setting changes
# (see bench/README.md). Never counted against a target.
VARIANT_BATCH = 2000
VARIANT = f"engine, batch_size={VARIANT_BATCH} (not default)"
# The engine with botocore's own timestamp parser (dateutil) instead of the store's fromisoformat parser
# (retention.stores.s3.fast_timestamps), to measure what that parser is worth. Never counted against a target.
BOTOCORE_PARSER = "engine, botocore's timestamp parser"
LISTINGS = 6  # verification: re-list until two consecutive listings agree, at most this often


# -- seeding ---------------------------------------------------------------------------------------

def object_keys(n: int) -> list[str]:
    return [f"{PREFIX}day-{i // FILES_PER_DIR:03d}/file-{i:06d}.bin" for i in range(n)]


def seed_plain(moto: MotoProcess, n: int, *, check_over_http: bool = False) -> None:
    moto.reset()
    versions, _ = moto.seed(BUCKET, PREFIX, object_keys(n))
    found = count_objects(s3_client(moto.endpoint), BUCKET) if check_over_http else versions
    if found != n:
        raise RuntimeError(f"seeding left {found} objects, expected {n}")


def seed_versioned(moto: MotoProcess, keys: int, *, check_over_http: bool = False) -> int:
    """Two versions of every key and a delete marker on every fifth; returns versions + markers."""
    moto.reset()
    names = object_keys(keys)
    doomed = names[::MARKER_EVERY]
    found = moto.seed(VBUCKET, PREFIX, names, versioned=True, copies=2, markers=doomed)
    if check_over_http:
        found = count_versions(s3_client(moto.endpoint), VBUCKET)
    if found != (2 * keys, len(doomed)):
        raise RuntimeError(f"seeding left {found} versions and markers, expected {(2 * keys, len(doomed))}")
    return sum(found)


# -- verification ----------------------------------------------------------------------------------

def _stable(listing, what: str):
    seen = []
    for _ in range(LISTINGS):
        seen.append(listing())
        if len(seen) >= 2 and seen[-1] == seen[-2]:
            return seen[-1]
    raise RuntimeError(f"{what}: {LISTINGS} listings never agreed twice in a row: {seen}")


def count_objects(client, bucket: str) -> int:
    def listing() -> int:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX)
        return sum(len(p.get("Contents", ())) for p in pages)
    return _stable(listing, f"objects under {bucket}/{PREFIX}")


def count_versions(client, bucket: str) -> tuple[int, int]:
    def listing() -> tuple[int, int]:
        versions = markers = 0
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=PREFIX):
            versions += len(page.get("Versions", ()))
            markers += len(page.get("DeleteMarkers", ()))
        return versions, markers
    return _stable(listing, f"versions under {bucket}/{PREFIX}")


# -- contenders ------------------------------------------------------------------------------------

def engine_purge(moto: MotoProcess, bucket: str, versioned: bool, ledger_dir: Path, *, bare: bool = False,
                 batch_size: int | None = None, plan_counts: bool = True, botocore_parser: bool = False) -> dict:
    """Plan one delete task in a ledger run and run execute_task on it (or, bare, the store's own loop).

    Timed separately: planning (the planner's two counts: total and due), execution, the store's verify.
    ``botocore_parser``: put botocore's own timestamp parser back after the store installed its own.
    """
    from retention.engine.executor import claim_and_execute
    from retention.ledger import Ledger
    from retention.rules.inventory import S3Location
    from retention.stores.base import Selector
    from retention.stores.s3 import S3Store
    from retention.stores.s3.fast_timestamps import set_timestamp_parser

    spec = S3Location(kind="s3", data_class="bench_objects", conn_id="bench", bucket=bucket,
                      key_template=TEMPLATE, versioned=versioned)
    options = {"batch_size": batch_size} if batch_size else {}
    client = s3_client(moto.endpoint)
    store = S3Store("bench_s3", spec, client, **options)
    if botocore_parser and not set_timestamp_parser(client, None):
        raise RuntimeError("could not put botocore's timestamp parser back; the comparison would be void")
    selector = Selector(ACCOUNT)
    out: dict = {}
    if bare:
        affected = batches = 0
        with Timer(moto) as t:
            for batch in store.batches(selector):
                affected += store.delete(batch).affected
                batches += 1
        out.update(execute_s=t.seconds, affected=affected, batches=batches, **t.cpu)
        return out
    clear_dir(ledger_dir)
    ledger = Ledger.open(f"sqlite:///{ledger_dir / 'ledger.db'}")
    try:
        started = time.perf_counter()
        if plan_counts:
            total = store.count(selector)  # the planner: all of the account's records here ...
            due = store.count(selector)  # ... and those the selector takes (the same, without a cutoff)
        else:
            total = due = None
        run_id = ledger.start_run("sweep", dry_run=False, as_of=pendulum.now("UTC"), rules_digest="0" * 64,
                                  actor="bench")
        ledger.add_planned_task(run_id, account_id=ACCOUNT, data_class="bench_objects", location="bench_s3",
                                action="delete", rule_id="bench", anchor=None, cutoff=None,
                                total_count=total, estimated_count=due)
        task = ledger.tasks(run_id)[0]
        out["plan_s"] = time.perf_counter() - started
        timed = TimedStore(store)
        with Timer(moto) as t:  # CPU figures cover execution only
            affected = claim_and_execute(ledger, timed, task.id, actor="bench")
        out["execute_s"] = t.seconds
        out.update(timed.breakdown(t.seconds), **t.cpu)
        started = time.perf_counter()
        residue = store.verify(selector)
        out["store_verify_s"] = time.perf_counter() - started
        out.update(affected=affected, planned=due, store_residue=residue.remaining,
                   batches=sum(1 for e in ledger.events() if e.kind == "batch.intent"))
    finally:
        ledger.close()
    return out


def boto3_loop(moto: MotoProcess, bucket: str) -> int:
    """The loop a user would write: list a page (StartAfter the last key), DeleteObjects it, repeat."""
    client = s3_client(moto.endpoint)
    start_after, deleted = None, 0
    for _ in range(1_000_000):  # bounded; ends when a listing is empty or not truncated
        params = {"Bucket": bucket, "Prefix": PREFIX, "MaxKeys": 1000}
        if start_after:
            params["StartAfter"] = start_after
        response = client.list_objects_v2(**params)
        keys = [o["Key"] for o in response.get("Contents", ())]
        if keys:
            result = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
            deleted += len(keys) - len(result.get("Errors", ()))
            start_after = keys[-1]
        if not keys or not response.get("IsTruncated"):
            break
    return deleted


def boto3_versions_loop(moto: MotoProcess, bucket: str) -> int:
    """The simplest loop that finishes the job on a versioned bucket: list the first page of versions and
    markers (no markers into a listing whose entries are being deleted), DeleteObjects every one of them
    by version id, and start over until a listing comes back empty."""
    client = s3_client(moto.endpoint)
    deleted = 0
    for _ in range(100_000):  # bounded; ends when a listing is empty
        response = client.list_object_versions(Bucket=bucket, Prefix=PREFIX, MaxKeys=1000)
        records = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                   for v in [*response.get("Versions", ()), *response.get("DeleteMarkers", ())]]
        if not records:
            break
        result = client.delete_objects(Bucket=bucket, Delete={"Objects": records, "Quiet": True})
        deleted += len(records) - len(result.get("Errors", ()))
    return deleted


class Timer:
    """Wall time plus CPU of this process, of waited-for child processes, and of the S3 endpoint."""

    def __init__(self, moto: MotoProcess) -> None:
        self.moto = moto

    def __enter__(self) -> Timer:
        self._cpu = (self_cpu_seconds(), children_cpu_seconds(), self.moto.cpu_seconds())
        self._errors = self.moto.tracebacks()
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t
        me, kids, server = self._cpu
        self.cpu = {"client_cpu_s": round(self_cpu_seconds() - me + children_cpu_seconds() - kids, 2),
                    "endpoint_cpu_s": round(self.moto.cpu_seconds() - server, 2)}
        self.cpu["endpoint_cpu_share"] = round(self.cpu["endpoint_cpu_s"] / self.seconds, 2) if self.seconds else None
        self.cpu["endpoint_http_500s"] = self.moto.tracebacks() - self._errors


# -- scenarios -------------------------------------------------------------------------------------

def plain_bucket(moto: MotoProcess, work: Path, n: int, repeat: int = 1) -> list[Row]:
    """Each contender ``repeat`` times, round-robin, each run on freshly seeded data; the median is
    reported. `aws s3 rm` runs once: it is an order of magnitude slower, its noise changes nothing."""
    scenario = f"S3 purge, plain bucket, {n:,} objects"
    ledger_dir = work / "ledger-s3"
    target = "engine >= 0.95 x s5cmd objects/s, 0 left"
    seeded = 0

    def measure(name: str) -> Row:
        nonlocal seeded
        log(f"{scenario}: {name}")
        seed_plain(moto, n, check_over_http=seeded == 0)  # the first seed is also counted over HTTP
        seeded += 1
        extra: dict = {}
        if name == "s5cmd rm":
            with Timer(moto) as t:
                result = run_tool([S5CMD, "--endpoint-url", moto.endpoint, "rm", f"s3://{BUCKET}/{PREFIX}*"])
            extra = {"exit_code": result.returncode, "stderr": tail(result.stderr), **t.cpu}
            row = Row(scenario, name, n, t.seconds)
        elif name == "aws s3 rm --recursive":
            with Timer(moto) as t:
                result = run_tool([AWS, "--endpoint-url", moto.endpoint, "s3", "rm", "--recursive",
                                   "--only-show-errors", f"s3://{BUCKET}/{PREFIX}"])
            extra = {"exit_code": result.returncode, "stderr": tail(result.stderr), **t.cpu}
            row = Row(scenario, name, n, t.seconds, reference="s5cmd rm")
        elif name == "boto3 list+DeleteObjects loop":
            with Timer(moto) as t:
                extra["deleted"] = boto3_loop(moto, BUCKET)
            extra.update(t.cpu)
            row = Row(scenario, name, n, t.seconds, reference="s5cmd rm")
        elif name == VARIANT:
            extra = engine_purge(moto, BUCKET, False, ledger_dir, batch_size=VARIANT_BATCH, plan_counts=False)
            row = Row(scenario, name, n, extra["execute_s"], reference="s5cmd rm")
        elif name == BOTOCORE_PARSER:
            extra = engine_purge(moto, BUCKET, False, ledger_dir, plan_counts=False, botocore_parser=True)
            row = Row(scenario, name, n, extra["execute_s"], reference="s5cmd rm")
        else:
            extra = engine_purge(moto, BUCKET, False, ledger_dir)
            row = Row(scenario, name, n, extra["execute_s"], reference="s5cmd rm", target=target)
        row.extra.update({k: round(v, 3) if isinstance(v, float) else v for k, v in extra.items()})
        left = count_objects(s3_client(moto.endpoint), BUCKET)
        row.left, row.verified = left, left == 0
        row.verification = ("0 objects left (2 listings agree)" if left == 0
                            else f"FAILED: {left:,} of {n:,} objects left")
        return row

    contenders = ["s5cmd rm", "engine (execute_task)", BOTOCORE_PARSER, VARIANT, "boto3 list+DeleteObjects loop",
                  "aws s3 rm --recursive"]
    runs: dict[str, list[Row]] = {name: [] for name in contenders}
    for rep in range(repeat):
        for name in contenders:
            if name.startswith("aws") and rep > 0:
                continue
            runs[name].append(measure(name))
    rows = []
    for name in contenders:
        row = combine(runs[name])
        rows.append(row)
        if name == "engine (execute_task)":
            # The whole engine path a sweep runs: the planner's two counts, execution, the store's verify.
            rows.append(_end_to_end(row, "s5cmd rm"))
    return rows


def timestamp_parser(moto: MotoProcess, work: Path, n: int, repeat: int) -> list[Row]:
    """The engine with the store's timestamp parser against the engine with botocore's, and nothing else:
    round-robin, ``repeat`` runs each on freshly seeded data, the median reported. The reference is
    botocore's parser, so the ratio is what the store's parser (retention.stores.s3.fast_timestamps) gains."""
    scenario = f"S3 timestamp parser, plain bucket, {n:,} objects"
    ledger_dir = work / "ledger-s3-parser"
    contenders = [BOTOCORE_PARSER, "engine (execute_task)"]
    runs: dict[str, list[Row]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name in contenders:
            log(f"{scenario}: {name}")
            seed_plain(moto, n)
            extra = engine_purge(moto, BUCKET, False, ledger_dir, plan_counts=False,
                                 botocore_parser=name == BOTOCORE_PARSER)
            reference = None if name == BOTOCORE_PARSER else BOTOCORE_PARSER
            row = Row(scenario, name, n, extra["execute_s"], reference=reference)
            row.extra.update({k: round(v, 3) if isinstance(v, float) else v for k, v in extra.items()})
            left = count_objects(s3_client(moto.endpoint), BUCKET)
            row.left, row.verified = left, left == 0
            row.verification = ("0 objects left (2 listings agree)" if left == 0
                                else f"FAILED: {left:,} of {n:,} objects left")
            runs[name].append(row)
    return [combine(runs[name]) for name in contenders]


def _end_to_end(row: Row, reference: str) -> Row:
    e = row.extra
    return Row(row.scenario, "engine incl. plan counts + verify", row.items,
               e["plan_s"] + e["execute_s"] + e["store_verify_s"], reference=reference, verified=row.verified,
               verification=row.verification, left=row.left,
               extra={"note": "median run's plan (2 listings) + execute_task + store.verify (2 listings)",
                      "plan_s": e["plan_s"], "store_verify_s": e["store_verify_s"]})


def versioned_bucket(moto: MotoProcess, work: Path, keys: int) -> list[Row]:
    records = 2 * keys + len(range(0, keys, MARKER_EVERY))
    scenario = f"S3 purge, versioned bucket, {keys:,} keys = {records:,} versions+markers"
    ledger_dir = work / "ledger-s3v"
    rows: list[Row] = []
    # The reference is the plain boto3 loop, not s5cmd: s5cmd rm --all-versions leaves most versions behind
    # here (exit code 0), and a rate for a job left undone is no yardstick.
    reference = "boto3 list-versions+DeleteObjects loop"
    contenders = [reference, "engine (execute_task)", BOTOCORE_PARSER, "s5cmd rm --all-versions",
                  "aws s3 rm --recursive"]
    for name in contenders:
        log(f"{scenario}: {name}")
        records = seed_versioned(moto, keys, check_over_http=not rows)
        extra: dict = {}
        if name.startswith("s5cmd"):
            with Timer(moto) as t:
                result = run_tool([S5CMD, "--endpoint-url", moto.endpoint, "rm", "--all-versions",
                                   f"s3://{VBUCKET}/{PREFIX}*"])
            extra = {"exit_code": result.returncode, "stderr": tail(result.stderr)}
            row = Row(scenario, name, records, t.seconds, reference=reference)
        elif name == reference:
            with Timer(moto) as t:
                extra["deleted"] = boto3_versions_loop(moto, VBUCKET)
            row = Row(scenario, name, records, t.seconds)
        elif name.startswith("aws"):
            with Timer(moto) as t:
                result = run_tool([AWS, "--endpoint-url", moto.endpoint, "s3", "rm", "--recursive",
                                   "--only-show-errors", f"s3://{VBUCKET}/{PREFIX}"])
            extra = {"exit_code": result.returncode, "stderr": tail(result.stderr)}
            row = Row(scenario, name, records, t.seconds, reference=reference)
        elif name == BOTOCORE_PARSER:
            extra = engine_purge(moto, VBUCKET, True, ledger_dir, plan_counts=False, botocore_parser=True)
            row = Row(scenario, name, records, extra["execute_s"], reference=reference)
        else:
            extra = engine_purge(moto, VBUCKET, True, ledger_dir)
            row = Row(scenario, name, records, extra["execute_s"], reference=reference,
                      target="every version and delete marker gone")
        versions, markers = count_versions(s3_client(moto.endpoint), VBUCKET)
        left = versions + markers
        row.left, row.verified = left, left == 0
        row.verification = ("0 versions, 0 markers left (2 listings agree)" if left == 0 else
                            f"FAILED: {versions:,} versions + {markers:,} delete markers left (of {records:,})")
        if row.target:
            row.target_met = row.verified
        if "client_cpu_s" not in extra:
            extra.update(t.cpu)
        row.extra.update({k: round(v, 3) if isinstance(v, float) else v for k, v in extra.items()})
        rows.append(row)
        if name == "engine (execute_task)":
            rows.append(_end_to_end(row, reference))
    return rows
