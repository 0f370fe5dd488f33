"""Reading provider answers: dotted paths into JSON, error codes, and the digests that stand for ids in events."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pendulum

from retention.rules.durations import IsoDuration


def get(value: Any, path: str | None) -> Any:
    """``a.b.0.c`` of a JSON value; None where the path leads nowhere."""
    if not path:
        return value
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def json_of(response: httpx.Response) -> Any:
    """The JSON body, or None (empty, or not JSON)."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def code_in(code: Any, codes: list[str | int]) -> bool:
    return code is not None and str(code) in {str(c) for c in codes}


def chunks(ids: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def digest(values: list[str]) -> str:
    """What an event carries instead of ids: a sha256 of them, sorted."""
    return hashlib.sha256("\n".join(sorted(values)).encode()).hexdigest()


def after(at: datetime, duration: IsoDuration) -> datetime:
    """``at`` plus a calendar duration (P15D, P1M)."""
    return duration.after(pendulum.instance(at))
