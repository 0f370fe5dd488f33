"""What every `retention` command shares: exit codes, the options every command takes, failures as one line (or
the JSON document under --json), the ledger option and the top-level group that names an unopenable ledger.

Exit codes: 0 ok, 1 invalid input or failed check (``Failure``), 2 usage error or a setting that cannot be used.
"""

from __future__ import annotations

import functools
import getpass
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pendulum

from retention.cli.output import emit
from retention.rules import ResolutionError, RulesError, parse_utc

if TYPE_CHECKING:
    from retention.ledger import Ledger

EXIT_INVALID, EXIT_USAGE = 1, 2
PG_CONNECT_TIMEOUT_SECONDS = "10"  # a database server that does not answer ends the command, not hangs it


class Failure(click.ClickException):
    """Invalid input or a failed check: exit 1 with a message (or the JSON document under --json)."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, document: dict[str, Any] | None = None):
        super().__init__(message)
        self.document = document or {"ok": False, "error": message}


def common(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes, so scripts can rely on them everywhere."""

    @click.option("--rules-dir", type=click.Path(path_type=Path), envvar="RETENTION_RULES_DIR",
                  default="retention_rules", show_default=True, help="Folder of the rules files.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
    @functools.wraps(command)
    def wrapper(*args: Any, as_json: bool, **kwargs: Any) -> Any:
        try:
            return _as_failure(command, *args, as_json=as_json, **kwargs)
        except Failure as exc:
            if as_json:
                emit(exc.document)
                sys.exit(exc.exit_code)
            raise

    return wrapper


def _as_failure(command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
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

    def invoke(self, ctx: click.Context) -> Any:
        # Set for libpq, which reads it from the environment for every connection the command makes (ledger and
        # stores); only a default: the caller's own PGCONNECT_TIMEOUT wins, and it is removed again afterwards.
        preset = "PGCONNECT_TIMEOUT" in os.environ
        os.environ.setdefault("PGCONNECT_TIMEOUT", PG_CONNECT_TIMEOUT_SECONDS)
        try:
            return super().invoke(ctx)
        except Exception as exc:
            failure = _unopenable_ledger(exc, ctx)
            if failure is None:
                raise
            raise failure from None
        finally:
            if not preset:
                os.environ.pop("PGCONNECT_TIMEOUT", None)


def _unopenable_ledger(exc: Exception, ctx: click.Context) -> SettingError | None:
    """A SettingError if ``exc`` was raised while opening the ledger (connecting, choosing the driver, parsing
    the URL, checking its schema), else None. Decided by where it was raised, so a store's database error
    later in a sweep is never blamed on the ledger setting."""
    if isinstance(exc, click.ClickException):
        return None
    from sqlalchemy import exc as sa_exc

    from retention.ledger import Ledger, LedgerSchemaError, create_ledger_engine, database_url, migrate
    from retention.masking import mask_url

    opening = {inspect.getattr_static(Ledger, "open").__func__.__code__, migrate.__code__,
               create_ledger_engine.__code__, database_url.__code__}
    frames, tb = set(), exc.__traceback__
    while tb is not None:
        frames.add(tb.tb_frame.f_code)
        tb = tb.tb_next
    if not frames & opening or not isinstance(
            exc, (sa_exc.SQLAlchemyError, ImportError, OSError, LedgerSchemaError)):
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


def accounts_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--accounts", "accounts_file", type=click.Path(path_type=Path),
                        envvar="RETENTION_ACCOUNTS_FILE", help="Account registry file (accounts.yaml).")(command)


def operator_id() -> str:
    """Who acts through the CLI: the operating-system account running it, as ``cli:<user>``. Never a typed name.
    The CLI writes to the ledger with the ledger's own database credentials, so whoever runs it is already trusted
    as a database writer; staff without them act through the API and the operator page, as their Airflow user."""
    return f"cli:{getpass.getuser()}"


def ledger_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--database-url", envvar="RETENTION_DATABASE_URL", default=None,
                        callback=_remember_ledger_setting,
                        help="Ledger database (default: SQLite under $RETENTION_HOME, ./var).")(command)


def open_ledger(database_url: str | None) -> Ledger:
    from retention.ledger import Ledger  # the rules commands must work without a ledger import cost

    return Ledger.open(database_url)


def moment(value: str | None) -> pendulum.DateTime:
    """The instant --at names, or now."""
    if value is None:
        return pendulum.now("UTC")
    try:
        return parse_utc(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--at") from exc
