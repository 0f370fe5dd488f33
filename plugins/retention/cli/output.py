"""What a command writes: JSON documents on standard output, logs and progress bars on standard error."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import click


def emit(document: dict[str, Any]) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True, default=str))


def logs_to_stderr() -> None:
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
    if factory is not None and getattr(factory, "io", False) is None:  # Airflow's writes to sys.stdout if given
        factory.io = sys.__stderr__
    if sys.stderr.isatty():
        logging.getLogger("retention").setLevel(logging.WARNING)


def progress(locations: list[str], label: str) -> Iterable[str]:
    """On a terminal, a bar per phase on standard error naming the location in hand; elsewhere nothing."""
    return _bar(locations, label) if sys.stderr.isatty() else locations


def _bar(locations: list[str], label: str) -> Iterator[str]:
    with click.progressbar(locations, label=f"{label:<12}", file=sys.stderr, show_pos=True,
                           item_show_func=lambda location: location) as bar:
        yield from bar
