"""Benchmarks of the retention engine against the tools a user would pick instead (`make bench`).

    python bench/run.py [--quick] [--only s3-plain,s3-versioned,s3-parser,sql-1,sql-20,memory,forecast]

Starts a local S3 endpoint (moto, in its own process) and an embedded PostgreSQL, runs every scenario
with every contender on identically seeded data in this one run, verifies what each left behind,
prints one table (ratios against the reference of each scenario) and writes it with the machine's
facts to bench/results/latest.json (--quick: bench/results/quick.json). Loopback only; every
external command is bounded by a timeout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, MotoProcess, Row, apply_ratios, clear_dir, log, machine_info, postgres, write_json  # noqa: E402

SCENARIOS = ("s3-plain", "s3-versioned", "s3-parser", "sql-1", "sql-20", "memory", "saas", "saas-growth",
             "s3-saas", "forecast")
FULL = {"objects": 50_000, "versioned_keys": 10_000, "rows": 2_000_000, "due": 1_300_000,
        "memory": [(100_000, 5_000), (1_000_000, 50_000)],
        "saas": (10_000, 10_000_000), "saas_growth": ([100, 1_000, 10_000], 1_000_000),
        "s3_saas": (10_000, 100_000, 10_000), "forecast": (10_000, 1_000_000)}
QUICK = {"objects": 5_000, "versioned_keys": 1_000, "rows": 200_000, "due": 130_000,
         "memory": [(100_000, 5_000)],
         "saas": (100, 110_000), "saas_growth": ([10, 30, 100], 110_000),
         "s3_saas": (100, 2_000, 500), "forecast": (100, 110_000)}
S3_RATIO = 0.95
SQL_RATIO = 0.8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke check in a few minutes")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    parser.add_argument("--repeat", type=int, help="runs per contender, median reported (default 3; 1 with --quick)")
    parser.add_argument("--out", type=Path,
                        help="JSON output (default bench/results/latest.json, quick.json with --quick)")
    parser.add_argument("--saas-size", help="ACCOUNTS,ROWS for the saas scenario (default: the mode's)")
    parser.add_argument("--forecast-size", help="ACCOUNTS,ROWS for the forecast scenario (default: the mode's)")
    parser.add_argument("--s3-saas-size", help="ACCOUNTS,OBJECTS,VERSIONED_KEYS for s3-saas (default: the mode's)")
    parser.add_argument("--saas-engine-timeout", type=float, default=3600,
                        help="seconds before the saas scenarios' engine child is killed (its progress is reported)")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    sizes = dict(QUICK if args.quick else FULL)
    for option, key in ((args.saas_size, "saas"), (args.s3_saas_size, "s3_saas"), (args.forecast_size, "forecast")):
        if option:
            sizes[key] = tuple(int(part) for part in option.split(","))
    repeat = args.repeat or (1 if args.quick else 3)
    if not 1 <= repeat <= 9:
        parser.error("--repeat must be 1..9")
    out = args.out or BENCH / "results" / ("quick.json" if args.quick else "latest.json")

    import forecast
    import memory
    import s3_purge
    import s3_saas
    import saas
    import sql_delete

    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="retention-bench-"))
    log(f"work directory {work}")
    moto = None
    try:
        moto = MotoProcess(work / "s3-endpoint.log")
        clear_dir(work / "pg")
        with postgres(work / "pg" / "data") as server_url:
            from retention.embedded import create_database

            pg_url = create_database(server_url, "bench")
            info = machine_info(pg_url)
            if "s3-plain" in only:
                rows += s3_purge.plain_bucket(moto, work, sizes["objects"], repeat)
            if "s3-versioned" in only:
                rows += s3_purge.versioned_bucket(moto, work, sizes["versioned_keys"])
            if "s3-parser" in only:
                rows += s3_purge.timestamp_parser(moto, work, sizes["objects"], repeat)
            if "sql-1" in only:
                rows += sql_delete.scenario_rows(pg_url, sizes["rows"], sizes["due"], 1, work, repeat)
            if "sql-20" in only:
                rows += sql_delete.scenario_rows(pg_url, sizes["rows"], sizes["due"], 20, work, repeat)
            if "memory" in only:
                rows += memory.scenario_rows(pg_url, moto, work, sizes["memory"])
            if "saas" in only:
                rows += saas.scenario_rows(server_url, moto, work, *sizes["saas"],
                                           timeout=args.saas_engine_timeout)
            if "saas-growth" in only:
                rows += saas.growth_rows(server_url, moto, work, *sizes["saas_growth"],
                                         timeout=args.saas_engine_timeout)
            if "s3-saas" in only:
                rows += s3_saas.scenario_rows(moto, work, *sizes["s3_saas"])
            if "forecast" in only:
                rows += forecast.demo_rows(server_url, moto, work, repeat)
                rows += forecast.saas_rows(server_url, moto, work, *sizes["forecast"])
            info["s3_endpoint_rss_mb_at_end"] = round(moto.rss_mb(), 1)
    finally:
        if moto is not None:
            moto.stop()
        clear_dir(work)
        work.rmdir()

    apply_ratios(rows)
    judge(rows)
    saas.judge_targets(rows)
    s3_saas.judge_targets(rows)
    print_table(rows, sys.stdout)
    result = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "scenarios": only,
        "sizes": sizes,
        "repeat": repeat,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "machine": info,
        "rows": [r.as_dict() for r in rows],
        "targets": [{"scenario": r.scenario, "contender": r.contender, "target": r.target, "met": r.target_met}
                    for r in rows if r.target],
    }
    write_json(out, result)
    log(f"wrote {out}")
    return 0


def judge(rows: list[Row]) -> None:
    """Set target_met on the rows that carry one of the issue's targets."""
    for row in rows:
        if not row.target or row.target_met is not None:
            continue
        if row.scenario.startswith("S3 purge, plain"):
            row.target_met = row.verified and row.ratio is not None and row.ratio >= S3_RATIO
        elif row.scenario.startswith("PostgreSQL"):
            longest = row.extra.get("longest_tx_s_any_run", row.extra.get("longest_tx_s", float("inf")))
            row.target_met = row.verified and row.ratio is not None and row.ratio >= SQL_RATIO and longest <= 1.0


def print_table(rows: list[Row], stream) -> None:
    header = ["contender", "items", "seconds", "items/s", "ratio", "verification", "target"]
    lines = []
    scenario = None
    references = {(r.scenario, r.reference) for r in rows if r.reference}
    for row in rows:
        if row.scenario != scenario:
            scenario = row.scenario
            lines.append(None)
            lines.append(scenario)
        if row.reference is None:
            ratio = "ref" if (row.scenario, row.contender) in references else "-"
        else:
            ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "n/a"
        if row.target is None:
            target = ""
        else:
            target = ("MET" if row.target_met else "MISSED") + f": {row.target}"
        longest = row.extra.get("longest_tx_s_any_run", row.extra.get("longest_tx_s"))
        if longest is not None:
            target += f" (longest tx {longest:.3f} s)" if target else f"longest tx {longest:.3f} s"
        if row.extra.get("peak_rss_mb") is not None:
            target += f" (peak RSS {row.extra['peak_rss_mb']:.0f} MB)"
        lines.append([row.contender, f"{row.items:,}", f"{row.seconds:.2f}", f"{row.rate:,.0f}", ratio,
                      ("ok: " if row.verified else "") + row.verification, target])
    cells = [line for line in lines if isinstance(line, list)] + [header]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    fmt = lambda cols: "  ".join(c.rjust(w) if i in (1, 2, 3, 4) else c.ljust(w)  # noqa: E731
                                 for i, (c, w) in enumerate(zip(cols, widths, strict=True))).rstrip()
    print(fmt(header), file=stream)
    for line in lines:
        if line is None:
            print(file=stream)
        elif isinstance(line, str):
            print(f"== {line}", file=stream)
        else:
            print(fmt(line), file=stream)
    print(file=stream)
    print("ratio: items/s against the scenario's reference row (ref); n/a where either left data behind.",
          file=stream)
    print("items/s: the job's size (everything that had to go) over the contender's time.", file=stream)


if __name__ == "__main__":
    sys.exit(main())
