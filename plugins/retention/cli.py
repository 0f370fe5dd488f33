"""`retention` command line. Exit codes: 0 ok, 1 invalid input or failed check, 2 usage error."""

from __future__ import annotations

import functools
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import click
import pendulum

from retention.rules import (
    Decision,
    ResolutionError,
    RuleSet,
    RulesError,
    load_accounts,
    load_ruleset,
    parse_utc,
    resolve,
)

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
PG_CONNECT_TIMEOUT_SECONDS = "10"  # a database server that does not answer ends the command, not hangs it


class Failure(click.ClickException):
    """Invalid input or a failed check: exit 1 with a message (or the JSON document under --json)."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, document: dict | None = None):
        super().__init__(message)
        self.document = document or {"ok": False, "error": message}


def common(command: Callable) -> Callable:
    """Options every command takes, so scripts can rely on them everywhere."""

    @click.option("--rules-dir", type=click.Path(path_type=Path), envvar="RETENTION_RULES_DIR",
                  default="retention_rules", show_default=True, help="Folder of the rules files.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
    @functools.wraps(command)
    def wrapper(*args, as_json: bool, **kwargs):
        try:
            return _as_failure(command, *args, as_json=as_json, **kwargs)
        except Failure as exc:
            if as_json:
                _emit(exc.document)
                sys.exit(exc.exit_code)
            raise

    return wrapper


def _as_failure(command: Callable, *args, **kwargs):
    try:
        return command(*args, **kwargs)
    except RulesError as exc:
        raise Failure(str(exc), {"ok": False, "issues": [i.as_dict() for i in exc.issues]}) from exc
    except (ResolutionError, LookupError, ValueError) as exc:
        raise Failure(str(exc)) from exc


class SettingError(click.ClickException):
    """A setting that cannot be used (a ledger URL that cannot be opened): ``Error: <setting>: <cause>``, exit 2."""

    exit_code = EXIT_USAGE


class RetentionGroup(click.Group):
    """The top-level group. Whichever command meets a ledger that cannot be opened, it ends the same way: one
    line naming the setting and the cause, exit 2, no traceback. Any other error is left as it is."""

    def invoke(self, ctx: click.Context):
        preset = os.environ.get("PGCONNECT_TIMEOUT")
        os.environ.setdefault("PGCONNECT_TIMEOUT", PG_CONNECT_TIMEOUT_SECONDS)  # libpq's own setting wins if set
        try:
            return super().invoke(ctx)
        except Exception as exc:
            failure = _unopenable_ledger(exc, ctx)
            if failure is None:
                raise
            raise failure from None
        finally:
            if preset is None:
                os.environ.pop("PGCONNECT_TIMEOUT", None)


def _unopenable_ledger(exc: Exception, ctx: click.Context) -> SettingError | None:
    """A SettingError if ``exc`` was raised while opening the ledger (connecting, choosing the driver, parsing
    the URL, checking its schema), else None. Decided by where it was raised, so a store's database error
    later in a sweep is never blamed on the ledger setting."""
    if isinstance(exc, click.ClickException):
        return None
    from sqlalchemy import exc as sa_exc

    from retention.ledger import store
    from retention.settings import mask_url

    opening = {store.Ledger.open.__func__.__code__, store.migrate.__code__, store.create_ledger_engine.__code__,
               store.database_url.__code__}
    frames, tb = set(), exc.__traceback__
    while tb is not None:
        frames.add(tb.tb_frame.f_code)
        tb = tb.tb_next
    if not frames & opening or not isinstance(
            exc, (sa_exc.SQLAlchemyError, ImportError, OSError, store.LedgerSchemaError)):
        return None
    url = ctx.meta.get(_LEDGER_URL)
    setting = ctx.meta.get(_LEDGER_SETTING) or ("RETENTION_DATABASE_URL" if url else "RETENTION_HOME")
    if isinstance(exc, sa_exc.NoSuchModuleError):
        cause = f"no database dialect or driver for that URL scheme ({exc})"
    elif isinstance(exc, sa_exc.ArgumentError):
        cause = f"could not parse it as a database URL ({exc}); expected e.g. postgresql://USER@HOST/DB or sqlite:///PATH"
    elif isinstance(exc, ImportError):
        cause = f"its database driver is not installed ({exc})"
    elif isinstance(exc, sa_exc.DBAPIError):
        cause = str(exc.orig) if exc.orig is not None else str(exc)
        path = _sqlite_path(url)
        if path is not None and not path.parent.is_dir():
            cause += f" (the directory {path.parent} does not exist)"
    elif isinstance(exc, OSError):
        cause = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    else:
        cause = str(exc)
    cause = " ".join(cause.replace("\n", "; ").split())
    where = f"cannot open the ledger {mask_url(url)}: " if url else "cannot open the ledger: "
    return SettingError(f"{setting}: {where}{cause}")


def _sqlite_path(url: str | None) -> Path | None:
    if not url or not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?")[0]
    return Path(path) if path and path != ":memory:" else None


_LEDGER_URL, _LEDGER_SETTING = "retention.ledger_url", "retention.ledger_setting"


def _remember_ledger_setting(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Note which setting gave the ledger URL (flag, environment or the default), for error messages."""
    from click.core import ParameterSource

    source = ctx.get_parameter_source(param.name)
    ctx.meta[_LEDGER_URL] = value
    ctx.meta[_LEDGER_SETTING] = ("--database-url" if source is ParameterSource.COMMANDLINE
                                 else "RETENTION_DATABASE_URL" if value else "RETENTION_HOME")
    return value


def accounts_option(command: Callable) -> Callable:
    return click.option("--accounts", "accounts_file", type=click.Path(path_type=Path), envvar="RETENTION_ACCOUNTS_FILE",
                        help="Account registry file (accounts.yaml).")(command)


def operator_id() -> str:
    """Who acts through the CLI: the operating-system account running it, as ``cli:<user>``. Never a typed name.
    The CLI writes to the ledger with the ledger's own database credentials, so whoever runs it is already trusted
    as a database writer; staff without them act through the API and the operator page, as their Airflow user."""
    return f"cli:{getpass.getuser()}"


def ledger_option(command: Callable) -> Callable:
    return click.option("--database-url", envvar="RETENTION_DATABASE_URL", default=None,
                        callback=_remember_ledger_setting,
                        help="Ledger database (default: SQLite under $RETENTION_HOME, ./var).")(command)


def _emit(document: dict) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True, default=str))


def _logs_to_stderr() -> None:
    """Airflow, once imported, logs to standard output, which is this command's output (``--json | jq``).

    On a terminal a progress bar replaces the engine's info lines (warnings still show); elsewhere (cron,
    CI, a pipe) the step lines are the record of progress and stay."""
    import logging

    import airflow  # noqa: F401  configures logging on import
    import structlog

    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setStream(sys.__stderr__)
    factory = structlog.get_config().get("logger_factory")
    if getattr(factory, "io", False) is None:  # Airflow's factory writes to sys.stdout when given no stream
        factory.io = sys.__stderr__
    if sys.stderr.isatty():
        logging.getLogger("retention").setLevel(logging.WARNING)


def _progress(locations: list[str], label: str) -> Iterable[str]:
    """On a terminal, a bar per phase on standard error naming the location in hand; elsewhere nothing."""
    return _bar(locations, label) if sys.stderr.isatty() else locations


def _bar(locations: list[str], label: str) -> Iterator[str]:
    with click.progressbar(locations, label=f"{label:<12}", file=sys.stderr, show_pos=True,
                           item_show_func=lambda location: location) as bar:
        yield from bar


def _open_ledger(database_url: str | None):
    from retention.ledger import Ledger  # the rules commands must work without a ledger import cost

    return Ledger.open(database_url)


def _moment(value: str | None) -> pendulum.DateTime:
    if value is None:
        return pendulum.now("UTC")
    try:
        return parse_utc(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--at") from exc


@click.group(cls=RetentionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="retention-orchestrator")
def main() -> None:
    """Retention rules, legal holds and the deletion ledger."""


# --- rules -----------------------------------------------------------------------------------------

@main.group()
def rules() -> None:
    """Validate and explain the retention rules."""


@rules.command("validate")
@common
def rules_validate(rules_dir: Path, as_json: bool) -> None:
    """Check every rules file; list every problem with file:line:column and field."""
    from retention.subprocessors.tasks import specs
    from retention.settings import Settings

    ruleset = load_ruleset(rules_dir)
    connectors = specs(Settings.from_env(rules_dir=rules_dir))  # retention_rules/subprocessors/*.yaml
    summary = {"ok": True, "rules_dir": str(rules_dir), "digest": ruleset.digest, "rules": len(ruleset.rules),
               "data_classes": len(ruleset.data_classes.data_classes),
               "processor_data_rules": len(ruleset.processor_rules),
               "processor_data_classes": len(ruleset.processor_data_classes),
               "jurisdictions": sorted(ruleset.jurisdictions.jurisdictions), "overrides": len(ruleset.overrides),
               "subprocessor_specs": sorted(connectors)}
    if as_json:
        return _emit(summary)
    click.echo(f"{rules_dir}: valid — {summary['rules']} rules over {summary['data_classes']} data classes "
               f"(and {summary['processor_data_rules']} over {summary['processor_data_classes']} classes of the "
               "processor's own data), "
               f"{len(summary['jurisdictions'])} jurisdictions, {summary['overrides']} contract override(s), "
               f"{len(connectors)} subprocessor spec(s); digest {ruleset.digest[:12]}")


@rules.command("explain")
@click.argument("account_id")
@click.argument("data_class", required=False)
@click.option("--at", "at_text", metavar="DATE", help="Decide as of this instant (ISO-8601; default now).")
@accounts_option
@ledger_option
@common
def rules_explain(account_id: str, data_class: str | None, at_text: str | None, accounts_file: Path | None,
                  database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Say what happens to ACCOUNT_ID's data (one DATA_CLASS, or all) and why."""
    at = _moment(at_text)
    ruleset = load_ruleset(rules_dir)
    if accounts_file is None:
        raise click.UsageError("no account registry: pass --accounts FILE or set RETENTION_ACCOUNTS_FILE")
    accounts = load_accounts(accounts_file, ruleset)  # with the rules: instructions checked against them too
    if account_id not in accounts:
        raise Failure(f"account {account_id!r} is not in {accounts_file}")
    classes = [data_class] if data_class else list(ruleset.data_classes.data_classes)
    with _open_ledger(database_url) as ledger:
        holds = ledger.resolver_holds()
    decisions = [resolve(ruleset, accounts[account_id], name, at, holds) for name in classes]
    if as_json:
        return _emit({"ok": True, "rules_digest": ruleset.digest, "decisions": [
            {**d.as_dict(), "rule_position": ruleset.rule_positions[d.rule_id]} for d in decisions]})
    account = accounts[account_id]
    election = f"; customer elected {account.election.choice.value} on {account.election.elected_at.to_date_string()}" \
        if account.election else ""
    click.echo(f"{account.id}: {account.state.value}, {account.jurisdiction}{election} — as of {at.isoformat()}")
    for decision in decisions:
        click.echo(explain_text(decision, ruleset))


def explain_text(d: Decision, ruleset: RuleSet) -> str:
    rule = ruleset.rule(d.rule_id)
    action = d.action.value if d.action is rule.action else f"{d.action.value} (rule: {rule.action.value}; customer elected {d.election.value})"
    period = f"{d.retain_for} from {d.anchor.value} — {period_source_text(d.period_source, d.override_id)}"
    if d.anchor.is_account_event:
        if d.anchor_time is None:
            due = f"not yet: the account has no {d.anchor.value}"
        else:
            due = f"{d.due_at.isoformat()} ({'due now' if d.is_due(d.anchor_time) else 'not yet due'})"
    else:
        due = f"records whose {d.anchor.value} is at or before {d.cutoff.isoformat()}"
    lines = [
        f"\n  {d.data_class}",
        f"    rule    {d.rule_id} ({ruleset.rule_positions[d.rule_id]})",
        f"    action  {action}" + ("; isolated until then" if d.isolate else ""),
        f"    period  {period}",
        f"    due     {due}",
        f"    basis   {d.basis.kind}: {d.basis.citation} — {d.basis.summary}",
        f"    holds   {', '.join(d.blocked_by) + ' — nothing is deleted while in force' if d.blocked_by else 'none'}",
    ]
    return "\n".join(lines)


def period_source_text(source: str, override_id: str | None = None) -> str:
    """Where a period comes from, in words: law, the contract, the customer's instruction or our default."""
    if source == "contract":
        return f"the contract (override {override_id})" if override_id else "the contract (quoted in the basis)"
    return {"law": "set by law (statute)",
            "customer's instruction": "the customer's instruction (account registry)",
            "processor's default": "the processor's default (processor policy; counsel to confirm)"}[source]


@rules.command("processor-data")
@click.option("--at", "at_text", metavar="DATE", help="Decide as of this instant (ISO-8601; default now).")
@common
def rules_processor_data(at_text: str | None, rules_dir: Path, as_json: bool) -> None:
    """The rules for the processor's own marketing data (website cookies, newsletter and survey contacts)."""
    from retention.rules.resolver import resolve_processor_data

    at = _moment(at_text)
    ruleset = load_ruleset(rules_dir)
    decisions = [resolve_processor_data(ruleset, name, at) for name in ruleset.processor_data_classes]
    if as_json:
        return _emit({"ok": True, "rules_digest": ruleset.digest, "decisions": [
            {**d.as_dict(), "rule_position": ruleset.rule_positions[d.rule_id]} for d in decisions]})
    click.echo(f"The processor's own data, held as controller — as of {at.isoformat()}. It belongs to no customer "
               "account: no customer's sweep, offboarding or certificate includes it, and systems.yaml has no "
               "location for it.")
    for d in decisions:
        click.echo("\n".join([
            f"\n  {d.data_class}",
            f"    rule    {d.rule_id} ({ruleset.rule_positions[d.rule_id]})",
            f"    action  {d.action.value}",
            f"    period  {d.retain_for} from {d.anchor.value} — {period_source_text(d.period_source)}",
            f"    due     records whose {d.anchor.value} is at or before {d.cutoff.isoformat()}",
            f"    basis   {d.basis.kind}: {d.basis.citation} — {' '.join(d.basis.summary.split())}",
        ]))


# --- legal holds -----------------------------------------------------------------------------------

@main.group()
def hold() -> None:
    """Place, release and list legal holds (they stop deletion of what they cover)."""


@hold.command("place")
@click.option("--account", "account_id", help="Account to hold (omit to hold a data class everywhere).")
@click.option("--data-class", help="Data class to hold (omit to hold all of the account's data).")
@click.option("--reason", required=True, help="Why (no personal data: it is stored, not logged).")
@click.option("--reference", required=True, help="Ticket or matter reference.")
@accounts_option
@ledger_option
@common
def hold_place(account_id: str | None, data_class: str | None, reason: str, reference: str,
               accounts_file: Path | None, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Place a legal hold on an account, a data class, or one data class of one account."""
    ruleset = load_ruleset(rules_dir)
    # A misspelt class or account would hold nothing while looking like protection.
    if data_class and data_class not in ruleset.data_classes.data_classes:
        raise Failure(f"unknown data class {data_class!r}; see {rules_dir}/data_classes.yaml")
    if account_id and accounts_file and account_id not in load_accounts(accounts_file, set(ruleset.jurisdictions.jurisdictions)):
        raise Failure(f"no account {account_id!r} in the account registry {accounts_file}")
    from retention.offboarding.backups import keep_keys_for_new_hold
    from retention.settings import Settings

    with _open_ledger(database_url) as ledger:
        placed = ledger.place_hold(account_id=account_id, data_class=data_class, reason=reason,
                                   reference=reference, placed_by=operator_id())
        keys = keep_keys_for_new_hold(ledger, Settings.from_env(), actor=operator_id())
    if as_json:
        return _emit({"ok": True, "hold": placed.as_dict(), **keys})
    click.echo(f"placed {placed.id} on {_hold_scope(placed)}")
    if keys["backup_keys_kept"]:
        click.echo(f"cancelled the scheduled deletion of the backup key of {', '.join(keys['backup_keys_kept'])}")
    if "backup_keys_not_checked" in keys:
        click.echo(f"warning: backup keys not checked ({keys['backup_keys_not_checked']}); the daily "
                   "backup_expiry run cancels a covered key deletion", err=True)


@hold.command("release")
@click.argument("hold_id")
@click.option("--reason", required=True, help="Why the hold ends.")
@ledger_option
@common
def hold_release(hold_id: str, reason: str, database_url: str | None, rules_dir: Path,
                 as_json: bool) -> None:
    """Release a legal hold; deletion it stopped resumes on the next run."""
    with _open_ledger(database_url) as ledger:
        released = ledger.release_hold(hold_id, released_by=operator_id(), reason=reason)
    if as_json:
        return _emit({"ok": True, "hold": released.as_dict()})
    click.echo(f"released {released.id} ({_hold_scope(released)})")


@hold.command("list")
@click.option("--all", "include_released", is_flag=True, help="Include released holds.")
@ledger_option
@common
def hold_list(include_released: bool, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """List legal holds in force (and released ones with --all)."""
    with _open_ledger(database_url) as ledger:
        holds = ledger.list_holds(include_released=include_released)
    if as_json:
        return _emit({"ok": True, "holds": [h.as_dict() for h in holds]})
    if not holds:
        click.echo("no legal holds" + ("" if include_released else " in force"))
    for h in holds:
        state = f"released {h.released_at.isoformat()}" if h.released_at else "in force"
        click.echo(f"{h.id}  {_hold_scope(h):40}  {state}  since {h.placed_at.isoformat()}  ref {h.reference}")


def _hold_scope(h) -> str:
    return " / ".join(filter(None, [f"account {h.account_id}" if h.account_id else "every account",
                                    f"data class {h.data_class}" if h.data_class else "all data classes"]))


# --- sweep -----------------------------------------------------------------------------------------

@main.command("sweep")
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
    _logs_to_stderr()
    from retention.engine import SweepContext, sweep
    from retention.engine.overdue import describe, record_check
    from retention.engine.report import render
    from retention.ledger import Ledger
    from retention.settings import Settings

    if run_id and acknowledged:
        raise click.UsageError("--acknowledge-mass-deletion goes with a new sweep; a resumed run keeps its plan")
    at = _moment(at_text)
    settings = Settings.from_env(rules_dir=rules_dir, accounts_file=accounts_file, database_url=database_url)
    with Ledger.open(settings.database_url) as opened:
        ctx = SweepContext.load(settings, opened)
        report = sweep(ctx, at, dry_run=dry_run, actor="cli:retention-sweep", run_id=run_id, progress=_progress,
                       acknowledged=acknowledged)
        # The sweep leaves terminated accounts to their offboarding: say which ones nobody has started in time.
        overdue = record_check(ctx, report.run_id, at, actor="cli:retention-sweep")
    document = {**report.as_dict(), "overdue_terminations": [t.as_dict() for t in overdue]}
    if as_json:
        _emit(document)
    else:
        click.echo(render(report))
    if overdue:
        click.echo(f"Warning: {describe(overdue)}", err=True)
    if report.status != "succeeded":
        refused = "".join(f"; mass deletion at {report.mass_deletion_text(m)} (run again with "
                          f"--acknowledge-mass-deletion {m['location']} if the change is meant)" for m in report.refused)
        raise Failure(f"sweep {report.run_id} {report.status}{refused}", document)


@main.command("forecast")
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True, help="How many days ahead.")
@click.option("--at", "at_text", metavar="DATE", help="Start of the forecast (ISO-8601; default now).")
@accounts_option
@ledger_option
@common
def forecast_command(days: int, at_text: str | None, accounts_file: Path | None, database_url: str | None,
                     rules_dir: Path, as_json: bool) -> None:
    """What the daily sweep will delete or anonymize per day, data class and account, and why. Deletes nothing."""
    _logs_to_stderr()
    from retention.engine import SweepContext
    from retention.engine.forecast import as_document, forecast
    from retention.ledger import Ledger
    from retention.settings import Settings

    settings = Settings.from_env(rules_dir=rules_dir, accounts_file=accounts_file, database_url=database_url)
    with Ledger.open(settings.database_url) as opened:
        lines = forecast(SweepContext.load(settings, opened), _moment(at_text), days, _progress)
    if as_json:
        return _emit(as_document(lines, days))
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


@main.command("replay")
@click.option("--since", "since_text", required=True, metavar="DATE",
              help="When the restored backup was taken (ISO-8601); every deletion recorded since is applied again.")
@accounts_option
@ledger_option
@common
def replay_command(since_text: str, accounts_file: Path | None, database_url: str | None, rules_dir: Path,
                   as_json: bool) -> None:
    """After restoring a database from a backup: re-apply the ledger's deletions so nothing comes back."""
    _logs_to_stderr()
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
                        progress=_progress)
    _emit(report.as_dict()) if as_json else click.echo(render(report))
    if report.status != "succeeded":
        raise Failure(f"replay {report.run_id} {report.status}", report.as_dict())


@main.command("offboard")
@click.argument("account_id")
@click.option("--choice", type=click.Choice(["delete", "return"]), required=True, help="The customer's election.")
@click.option("--reference", required=True, help="The ticket of the request.")
@click.option("--effective-date", help="When the contract ends (ISO-8601 with timezone; default now).")
@click.option("--return-recipient", help="For a return: the customer's age public key (age1...).")
@click.option("--return-window-days", type=int, help="Days the customer has to confirm receipt (0..30, default 14).")
@click.option("--subprocessor", "subprocessors", multiple=True, help="A subprocessor holding its data (repeat; default all).")
@click.option("--api-url", envvar="RETENTION_AIRFLOW_API_URL", default="http://localhost:8080", show_default=True,
              help="Airflow's api-server [env RETENTION_AIRFLOW_API_URL].")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="A file holding your Airflow access token (default: $AIRFLOW_API_TOKEN).")
@click.option("--username", help="Sign in to Airflow as this user (the password is prompted) instead of a token.")
@common
def offboard_command(account_id: str, choice: str, reference: str, effective_date: str | None,
                     return_recipient: str | None, return_window_days: int | None, subprocessors: tuple[str, ...],
                     api_url: str, token_file: Path | None, username: str | None, rules_dir: Path,
                     as_json: bool) -> None:
    """Trigger the termination_offboarding DAG through Airflow's REST API, signed in as you: Airflow records you
    as the run's requester, and another user with the approval permission must approve it."""
    from retention.offboarding.request import parse_request

    conf = {"account_id": account_id, "choice": choice, "reference": reference, "effective_date": effective_date,
            "return_recipient": return_recipient, "return_window_days": return_window_days,
            "subprocessors": list(subprocessors) or None}
    parse_request(conf)  # refuse a bad request before Airflow sees it
    api = api_url.rstrip("/")
    token = _airflow_token(api, token_file, username)
    run = _airflow_call("POST", f"{api}/api/v2/dags/termination_offboarding/dagRuns", token=token,
                        body={"logical_date": None, "conf": {k: v for k, v in conf.items() if v is not None}})
    result = {"ok": True, "dag_id": "termination_offboarding", "dag_run_id": run.get("dag_run_id"),
              "requested_by": run.get("triggering_user_name")}
    _emit(result) if as_json else click.echo(f"triggered termination_offboarding run {result['dag_run_id']} as "
                                             f"{result['requested_by']}; it waits for another person's approval "
                                             "under Required Actions")


class AirflowApiError(click.ClickException):
    """Airflow's API cannot be reached or refused the call: one ``Error: ...`` line, exit 2."""

    exit_code = EXIT_USAGE


def _airflow_token(api: str, token_file: Path | None, username: str | None) -> str:
    """The caller's Airflow access token: from --token-file, from a sign-in as --username (password prompted),
    or from $AIRFLOW_API_TOKEN. Never a name the caller types for someone else."""
    if token_file is not None and username is not None:
        raise click.UsageError("give --token-file or --username, not both")
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise AirflowApiError(f"--token-file: cannot read {token_file}: {exc.strerror}") from None
        if not token:
            raise AirflowApiError(f"--token-file: {token_file} is empty")
        return token
    if username is not None:
        password = click.prompt(f"Airflow password for {username}", hide_input=True, err=True)
        answer = _airflow_call("POST", f"{api}/auth/token", body={"username": username, "password": password})
        return answer["access_token"]
    token = os.environ.get("AIRFLOW_API_TOKEN", "").strip()
    if not token:
        raise AirflowApiError("no Airflow credentials: set AIRFLOW_API_TOKEN, or give --token-file or --username")
    return token


def _airflow_call(method: str, url: str, *, body: dict, token: str | None = None) -> dict:
    """One call to Airflow's API; any failure becomes an AirflowApiError naming the status and Airflow's detail."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise AirflowApiError(f"cannot reach Airflow's API at {url}: {exc}") from None
    if response.is_success:
        return response.json()
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = response.text[:200]
    detail = detail if isinstance(detail, str) else json.dumps(detail)
    hint = " (is the DAG deployed, and is --api-url Airflow's api-server?)" if response.status_code == 404 else ""
    raise AirflowApiError(f"Airflow's API answered {response.status_code} to {method} {url}: {detail}{hint}")


@main.command("report")
@click.argument("run_id")
@ledger_option
@common
def report_command(run_id: str, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Show what a run deleted, what it kept and why (read from the ledger)."""
    from retention.engine.report import build_report, render

    with _open_ledger(database_url) as opened:
        if opened.get_run(run_id) is None:
            raise Failure(f"no run {run_id!r} in the ledger")
        report = build_report(opened, run_id)
    if as_json:
        return _emit(report.as_dict())
    click.echo(render(report))


# --- configuration --------------------------------------------------------------------------------

@main.group()
def config() -> None:
    """The product's effective configuration."""


@config.command("show")
@common
def config_show(rules_dir: Path, as_json: bool) -> None:
    """Print the effective settings and the Airflow Connections they name, every secret masked."""
    from retention.settings import Settings, masked_connection

    settings = Settings.from_env(rules_dir=rules_dir)
    conn_ids = sorted({settings.returns_conn_id, settings.backups_conn_id, *_inventory_conn_ids(settings)})
    connections = {conn_id: masked_connection(os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"])
                   if os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") else "(Airflow metadata or secrets backend)"
                   for conn_id in conn_ids}
    document = {"settings": settings.masked(), "connections": connections}
    if as_json:
        return _emit(document)
    for name, value in document["settings"].items():
        click.echo(f"{name:26} {value}")
    click.echo("\nConnections:")
    for conn_id, value in connections.items():
        click.echo(f"  {conn_id:24} {json.dumps(value) if isinstance(value, dict) else value}")


def _inventory_conn_ids(settings) -> list[str]:
    """The Connections systems.yaml and the subprocessor specs name."""
    from retention.rules import load_ruleset
    from retention.rules.inventory import load_inventory
    from retention.subprocessors.tasks import specs

    systems = load_inventory(settings.systems_file, load_ruleset(settings.rules_dir))
    return [loc.conn_id for loc in systems.locations.values()] + [
        spec.conn_id for spec in specs(settings).values() if getattr(spec, "conn_id", None)]


# --- ledger ----------------------------------------------------------------------------------------

@main.group()
def ledger() -> None:
    """The append-only, hash-chained record of everything the product did."""


@ledger.command("verify")
@ledger_option
@common
def ledger_verify(database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Recompute the hash chain, then check it against every published checkpoint (signed outside the ledger
    database); name the first event that was edited, deleted or reordered, and the first checkpoint the
    ledger no longer matches."""
    from retention.ledger.checkpoints import CheckpointError, verify_configured

    with _open_ledger(database_url) as opened:
        result = opened.verify()
        try:
            checkpoints = verify_configured(opened, result)
        except CheckpointError as exc:
            raise Failure(f"ledger checkpoints cannot be checked: {exc}") from exc
    document = {"ok": result.ok and checkpoints.ok, "events_checked": result.events_checked,
                "first_bad_seq": result.first_bad_seq, "first_bad_event_id": result.first_bad_event_id,
                "reason": result.reason, "checkpoints": checkpoints.as_dict()}
    if not result.ok:
        raise Failure(f"ledger verification FAILED: {result.reason}"
                      + ("" if checkpoints.ok else f"\nand the checkpoints disagree: {checkpoints.reason}"), document)
    if not checkpoints.ok:
        raise Failure(f"ledger verification FAILED: the hash chain is whole, but {checkpoints.reason}", document)
    if as_json:
        return _emit(document)
    click.echo(f"ledger intact: {result.events_checked} event(s), hash chain verified")
    click.echo(checkpoints.reason)


@ledger.command("checkpoint")
@click.option("--new-key", is_flag=True,
              help="First create the signing key (RETENTION_CHECKPOINT_KEY_FILE, mode 0600) and add its public "
                   "half to RETENTION_CHECKPOINT_JWKS_FILE; refused if the key file exists.")
@ledger_option
@common
def ledger_checkpoint(new_key: bool, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Sign the chain's last event and publish it outside the ledger database (as the daily DAG does)."""
    from retention.ledger.checkpoints import CheckpointError, create_key, jwks_file, key_file, publish_configured
    from retention.settings import Settings

    settings = Settings.from_env()
    try:
        if new_key:
            created = create_key(key_file(settings), jwks_file(settings))
            click.echo(f"new checkpoint key {created.kid} in {key_file(settings)}; public half in "
                       f"{jwks_file(settings)}", err=as_json)
        with _open_ledger(database_url) as opened:
            checkpoint = publish_configured(opened, settings)
    except CheckpointError as exc:
        raise Failure(str(exc)) from exc
    document = {"ok": True, "checkpoint": checkpoint.body() if checkpoint else None}
    if as_json:
        return _emit(document)
    if checkpoint is None:
        click.echo("the ledger is empty: nothing to checkpoint")
    else:
        click.echo(f"checkpoint of event {checkpoint.seq} ({checkpoint.hash[:16]}…) at {checkpoint.at}, "
                   f"signed by key {checkpoint.kid}")


@ledger.command("migrate")
@ledger_option
@common
def ledger_migrate(database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Bring the ledger schema to the latest version (Alembic)."""
    from retention.ledger import database_url as default_url, migrate

    url = database_url or default_url()
    migrate(url)
    if as_json:
        return _emit({"ok": True})
    click.echo("ledger schema is up to date")


@ledger.command("grant")
@click.option("--owner-url", envvar="RETENTION_LEDGER_OWNER_URL", required=True,
              help="The ledger database as the role that owns its tables (the one that ran `ledger migrate`).")
@click.option("--runtime-role", envvar="RETENTION_LEDGER_RUNTIME_ROLE", required=True,
              help="The role RETENTION_DATABASE_URL connects as: it gets SELECT and INSERT on events, no more.")
@common
def ledger_grant(owner_url: str, runtime_role: str, rules_dir: Path, as_json: bool) -> None:
    """Give the runtime role exactly what the product needs (PostgreSQL); run again after every migrate."""
    from retention.ledger.roles import grant_runtime_role

    granted = grant_runtime_role(owner_url, runtime_role)
    if as_json:
        return _emit({"ok": True, "runtime_role": runtime_role, "privileges": granted})
    for table, privileges in granted.items():
        click.echo(f"{runtime_role} on {table}: {', '.join(privileges)}")


@ledger.command("erase-text")
@click.argument("sha256")
@ledger_option
@common
def ledger_erase_text(sha256: str, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Erase a free text (a reason, a reference, a ticket) that events name by SHA256: the words and their salt
    are gone, the chain still verifies. Recorded as text.erased by cli:<the operating-system user>."""
    with _open_ledger(database_url) as opened:
        opened.erase_text(sha256, erased_by=operator_id())
    if as_json:
        return _emit({"ok": True, "erased": sha256})
    click.echo(f"erased the text {sha256}; the chain keeps only its digest")

# --- certificates ---------------------------------------------------------------------------------

@main.group()
def certificate() -> None:
    """Issue and verify signed deletion certificates; manage the signing keys."""


def _key_file_option(command: Callable) -> Callable:
    return click.option("--key-file", type=click.Path(path_type=Path), envvar="RETENTION_SIGNING_KEY_FILE",
                        help="Ed25519 private key (PEM); default: the Airflow Connection retention_signing_key.")(command)


def _jwks_option(command: Callable) -> Callable:
    return click.option("--jwks", "jwks_source", envvar="RETENTION_JWKS_FILE", metavar="FILE|URL",
                        help="Public keys (JWKS) that may have signed certificates.")(command)


@certificate.command("issue")
@click.argument("run_id")
@click.argument("account_id")
@click.option("--exporter", required=True, help="The data exporter (the customer), as the DPA names it.")
@click.option("--importer", required=True, help="The data importer (us, the processor), as the DPA names it.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Where to write the signed JSON.")
@click.option("--pdf", type=click.Path(path_type=Path), help="Also write the signed PDF here.")
@_key_file_option
@ledger_option
@common
def certificate_issue(run_id: str, account_id: str, exporter: str, importer: str, out: Path, pdf: Path | None,
                      key_file: Path | None, database_url: str | None, rules_dir: Path,
                      as_json: bool) -> None:
    """Sign a certificate for ACCOUNT_ID's data in the finished run RUN_ID."""
    from retention.certificates import SigningKeyError, as_pdf, issue, load_signing_key

    try:
        key = load_signing_key(key_file)
    except SigningKeyError as exc:
        raise Failure(str(exc)) from exc
    with _open_ledger(database_url) as opened:
        document = issue(opened, run_id, account_id, key, exporter=exporter, importer=importer,
                         rules_dir=rules_dir, actor=operator_id())
    out.write_bytes(document)
    if pdf is not None:
        pdf.write_bytes(as_pdf(document, key))
    content = json.loads(document)["certificate"]
    summary = {"ok": True, "certificate_id": content["certificate_id"], "status": content["status"],
               "kid": key.kid, "file": str(out)}
    if as_json:
        return _emit(summary)
    click.echo(f"issued {summary['certificate_id']} ({summary['status']}), signed by key {key.kid}: {out}")


@certificate.command("verify")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@_jwks_option
@click.option("--ledger", "check_ledger", is_flag=True, help="Also check the chain head against the ledger.")
@ledger_option
@common
def certificate_verify(file: Path, jwks_source: str | None, check_ledger: bool, database_url: str | None,
                       rules_dir: Path, as_json: bool) -> None:
    """Check FILE (signed JSON or PDF) offline: canonical form, key id, signature; for a PDF also its PAdES
    signature over the whole file and the attached JSON. With --ledger, the chain head too."""
    from retention.certificates import CertificateInvalid, check_chain_head, verify_file

    if not jwks_source:
        raise Failure("give the public keys: --jwks FILE|URL (or RETENTION_JWKS_FILE)")
    try:
        verified = verify_file(file.read_bytes(), _read_jwks(jwks_source))
        if check_ledger:
            with _open_ledger(database_url) as opened:
                check_chain_head(verified, opened)
    except CertificateInvalid as exc:
        raise Failure(f"{file}: INVALID: {exc}", {"ok": False, "file": str(file), "reason": str(exc)}) from exc
    content = verified.certificate
    document = {"ok": True, "file": str(file),
                "certificate_id": content.get("certificate_id") or content.get("supplement_id"),
                "account_id": content.get("account_id"), "status": content.get("status"), "kid": verified.kid,
                "chain_head_checked": check_ledger}
    if as_json:
        return _emit(document)
    click.echo(f"{file}: valid — {document['certificate_id']} for account {document['account_id']} "
               f"({document['status']}), signed by key {verified.kid}"
               + ("; chain head matches the ledger" if check_ledger else ""))


def _read_jwks(source: str):
    import httpx

    from retention.certificates import KeySet, SigningKeyError

    try:
        if source.startswith(("https://", "http://")):
            response = httpx.get(source, timeout=10.0, follow_redirects=False)
            response.raise_for_status()
            return KeySet.from_jwks(response.json(), source)
        if not Path(source).is_file():
            raise Failure(f"{source}: no such JWKS file")
        return KeySet.read(source)
    except (SigningKeyError, httpx.HTTPError, ValueError) as exc:
        raise Failure(f"cannot read the public keys from {source}: {exc}") from exc


@certificate.command("supplement")
@click.argument("original", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Where to write the signed supplement.")
@_key_file_option
@_jwks_option
@ledger_option
@common
def certificate_supplement(original: Path, out: Path, key_file: Path | None, jwks_source: str | None,
                           database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Sign a supplement to the certificate ORIGINAL (signed JSON) for what completed since it was issued."""
    from retention.certificates import CertificateInvalid, SigningKeyError, issue_supplement, load_signing_key

    if not jwks_source:
        raise Failure("give the public keys: --jwks FILE|URL (or RETENTION_JWKS_FILE)")
    try:
        key = load_signing_key(key_file)
        with _open_ledger(database_url) as opened:
            document = issue_supplement(opened, original.read_bytes(), key, _read_jwks(jwks_source),
                                        actor=operator_id())
    except (SigningKeyError, CertificateInvalid) as exc:
        raise Failure(str(exc)) from exc
    out.write_bytes(document)
    content = json.loads(document)["certificate"]
    summary = {"ok": True, "supplement_id": content["supplement_id"], "resolved": len(content["resolved"]),
               "still_open": len(content["still_open"]), "file": str(out)}
    if as_json:
        return _emit(summary)
    click.echo(f"issued {summary['supplement_id']}: {summary['resolved']} exception(s) resolved, "
               f"{summary['still_open']} still open: {out}")


@certificate.command("rotate-key")
@click.option("--key-file", type=click.Path(path_type=Path), envvar="RETENTION_SIGNING_KEY_FILE", required=True,
              help="Where the current private key lives (replaced: the old private key is not kept).")
@click.option("--jwks", "jwks_file", type=click.Path(path_type=Path), envvar="RETENTION_JWKS_FILE", required=True,
              help="The published public keys; the new one is added, the old ones stay.")
@common
def certificate_rotate_key(key_file: Path, jwks_file: Path, rules_dir: Path, as_json: bool) -> None:
    """Make a new signing key; certificates signed with earlier keys keep verifying."""
    from retention.certificates import rotate

    new = rotate(key_file, jwks_file)
    if as_json:
        return _emit({"ok": True, "kid": new.kid, "key_file": str(key_file), "jwks": str(jwks_file)})
    click.echo(f"new signing key {new.kid} in {key_file}; public keys in {jwks_file}")



if __name__ == "__main__":
    main()
