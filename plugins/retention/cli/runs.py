"""The commands that run or read a sweep: `retention sweep`, `forecast`, `replay` and `report`."""

from __future__ import annotations

from pathlib import Path

import click

from retention.cli.base import Failure, accounts_option, common, ledger_option, moment, open_ledger
from retention.cli.output import emit, logs_to_stderr, progress
from retention.rules import parse_utc


@click.command("sweep")
@click.option("--dry-run", is_flag=True, help="Plan and count; delete nothing.")
@click.option("--at", "at_text", metavar="DATE", help="Decide as of this instant (ISO-8601; default now).")
@click.option("--resume", "run_id", metavar="RUN_ID", help="Finish an interrupted run from its checkpoints.")
@click.option("--acknowledge-mass-deletion", "acknowledged", multiple=True, metavar="LOCATION",
              help="Let this run make more than RETENTION_MASS_DELETION_SHARE of LOCATION's records due at once "
                   "(repeat per location; a dry run names them). Any other such location is kept.")
@accounts_option
@ledger_option
@common
def sweep_command(dry_run: bool, at_text: str | None, run_id: str | None, acknowledged: tuple[str, ...],
                  accounts_file: Path | None, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Apply the retention rules everywhere: plan, delete in batches, verify, report (as the DAG does)."""
    logs_to_stderr()
    from retention.engine import SweepContext, sweep
    from retention.engine.overdue import describe, record_check
    from retention.engine.report import render
    from retention.ledger import Ledger
    from retention.settings import Settings

    if run_id and acknowledged:
        raise click.UsageError("--acknowledge-mass-deletion goes with a new sweep; a resumed run keeps its plan")
    at = moment(at_text)
    settings = Settings.from_env(rules_dir=rules_dir, accounts_file=accounts_file, database_url=database_url)
    with Ledger.open(settings.database_url) as opened:
        ctx = SweepContext.load(settings, opened)
        report = sweep(ctx, at, dry_run=dry_run, actor="cli:retention-sweep", run_id=run_id, progress=progress,
                       acknowledged=acknowledged)
        # The sweep leaves terminated accounts to their offboarding: say which ones nobody has started in time.
        overdue = record_check(ctx, report.run_id, at, actor="cli:retention-sweep")
    document = {**report.as_dict(), "overdue_terminations": [t.as_dict() for t in overdue]}
    if as_json:
        emit(document)
    else:
        click.echo(render(report))
    if overdue:
        click.echo(f"Warning: {describe(overdue)}", err=True)
    if report.status != "succeeded":
        refused = "".join(f"; mass deletion at {report.mass_deletion_text(m)} (run again with --acknowledge-mass-"
                          f"deletion {m['location']} if the change is meant)" for m in report.refused)
        raise Failure(f"sweep {report.run_id} {report.status}{refused}", document)


@click.command("forecast")
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True, help="How many days ahead.")
@click.option("--at", "at_text", metavar="DATE", help="Start of the forecast (ISO-8601; default now).")
@accounts_option
@ledger_option
@common
def forecast_command(days: int, at_text: str | None, accounts_file: Path | None, database_url: str | None,
                     rules_dir: Path, as_json: bool) -> None:
    """What the daily sweep will delete or anonymize per day, data class and account, and why. Deletes nothing."""
    logs_to_stderr()
    from retention.engine import SweepContext
    from retention.engine.forecast import as_document, forecast
    from retention.ledger import Ledger
    from retention.settings import Settings

    settings = Settings.from_env(rules_dir=rules_dir, accounts_file=accounts_file, database_url=database_url)
    with Ledger.open(settings.database_url) as opened:
        lines = forecast(SweepContext.load(settings, opened), moment(at_text), days, progress)
    if as_json:
        return emit(as_document(lines, days))
    if not lines:
        click.echo(f"nothing falls due in the next {days} day(s)")
    else:
        click.echo(f"{'day':10}  {'data class':20} {'account':10} {'location':18} {'action':9} {'records':>8}  why")
        for line in lines:
            click.echo(f"{line.day:10}  {line.data_class:20} {line.account_id:10} {line.location:18} {line.action:9} "
                       f"{line.records:>8,}  {line.why}")
        click.echo(f"\n{sum(line.records for line in lines):,} record(s) fall due in the next {days} day(s)")
    if lines.terminations:  # deleted by their offboarding (approved, certified), never by the sweep
        click.echo("\nTerminations awaiting their offboarding (the sweep does not delete a terminated account):")
        for t in lines.terminations:
            state = "OVERDUE" if t.overdue else "due"
            click.echo(f"  {t.account_id:10} elected {t.choice:6} terminated {t.terminated_at[:10]}  "
                       f"offboarding {state} {t.due_at[:10]}")


@click.command("replay")
@click.option("--since", "since_text", required=True, metavar="DATE",
              help="When the restored backup was taken (ISO-8601); every deletion recorded since is applied again.")
@accounts_option
@ledger_option
@common
def replay_command(since_text: str, accounts_file: Path | None, database_url: str | None, rules_dir: Path,
                   as_json: bool) -> None:
    """After restoring a database from a backup: re-apply the ledger's deletions so nothing comes back."""
    logs_to_stderr()
    from retention.engine import SweepContext
    from retention.engine.replay import replay
    from retention.engine.report import render
    from retention.ledger import Ledger
    from retention.settings import Settings

    try:
        since = parse_utc(since_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    settings = Settings.from_env(rules_dir=rules_dir, accounts_file=accounts_file, database_url=database_url)
    with Ledger.open(settings.database_url) as opened:
        report = replay(SweepContext.load(settings, opened), since, actor="cli:retention-replay",
                        progress=progress)
    emit(report.as_dict()) if as_json else click.echo(render(report))
    if report.status != "succeeded":
        raise Failure(f"replay {report.run_id} {report.status}", report.as_dict())



@click.command("report")
@click.argument("run_id")
@ledger_option
@common
def report_command(run_id: str, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Show what a run deleted, what it kept and why (read from the ledger)."""
    from retention.engine.report import build_report, render

    with open_ledger(database_url) as opened:
        if opened.get_run(run_id) is None:
            raise Failure(f"no run {run_id!r} in the ledger")
        report = build_report(opened, run_id)
    if as_json:
        return emit(report.as_dict())
    click.echo(render(report))
