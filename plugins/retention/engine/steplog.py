"""One structured line per engine step, in logfmt: ``step=task.done run_id=… location=… affected=12``.

Greppable in Airflow's task logs and parseable by any log pipeline. Only ids, counts, states and dates
go in: the stores never hand record contents or object keys to the engine, and a value that is not a
plain token is quoted, so a field can never forge another.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retention.ledger.models import PlannedTask

log = logging.getLogger("retention.engine")
_TOKEN = re.compile(r"[A-Za-z0-9_.:/@+-]+")


def log_step(name: str, **fields: str | int | bool | None) -> None:
    log.info(logfmt(step=name, **fields))


def logfmt(**fields: str | int | bool | None) -> str:
    return " ".join(f"{key}={_value(value)}" for key, value in fields.items())


def _value(value: str | int | bool | None) -> str:
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return text if _TOKEN.fullmatch(text) else json.dumps(text)


def log_task(name: str, task: PlannedTask, **counts: int | str | None) -> None:
    """A step of one planned task: which run, location, account and data class, and its counts."""
    log_step(name, run_id=task.run_id, task_id=task.id, location=task.location, account_id=task.account_id,
             data_class=task.data_class, action=task.action, **counts)


Progress = Callable[[list[str], str], Iterable[str]]  # (locations, label) -> the same locations, as they are done


def quietly(items: list[str], label: str) -> list[str]:
    """No progress display (the DAG, the API): the step lines above say what happened."""
    return items
