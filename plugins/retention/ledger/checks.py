"""Checks of what callers hand the ledger to write: every value is checked before a transaction begins.

Names, ids and kinds enter the chain, so they are short, never blank and free of personal data; free text
(a reason, a reference) is kept erasable outside the chain, so it need only be a storable string.
"""

from __future__ import annotations

import re

from retention.ledger.fields import check_staff_id
from retention.ledger.guard import refuse_personal_data
from retention.ledger.models import NAME, TEXT

_KIND = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
SHA256 = re.compile(r"[0-9a-f]{64}")
FIELD = re.compile(r"[a-z][a-z0-9_]{0,40}")


def check_text(value: object, field: str, max_len: int = NAME) -> str:
    """A non-empty string of at most ``max_len`` characters with no personal data in it."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be a non-empty string")
    if len(value) > max_len:
        raise ValueError(f"{field} is {len(value)} characters long; at most {max_len} are allowed")
    refuse_personal_data(value, field)
    return value


def check_staff(value: object, field: str) -> str:
    """Who acted, as a staff id (``retention.ledger.fields``): it enters the chain, so never a typed name."""
    return check_staff_id(check_text(value, field), field)


def check_optional_text(value: object, field: str) -> str | None:
    return None if value is None else check_text(value, field)


def check_free_text(value: object, field: str) -> str:
    """A free text bound for ``erasable_texts``: any words (that is why it is kept erasable), but a string,
    not blank, not longer than the column, and storable (PostgreSQL refuses NUL)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be a non-empty string")
    if len(value) > TEXT:
        raise ValueError(f"{field} is {len(value)} characters long; at most {TEXT} are allowed")
    if "\x00" in value:
        raise ValueError(f"{field} contains a NUL character")
    return value


def check_kind(value: object, field: str = "kind") -> str:
    """A short dotted lowercase name: an event's kind, a run's kind, a kept text's purpose."""
    if not isinstance(value, str) or len(value) > 64 or not _KIND.fullmatch(value):
        raise ValueError(f"{field} {value!r} must be a short dotted lowercase name like 'hold.placed'")
    return value
