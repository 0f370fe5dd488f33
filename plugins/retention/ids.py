"""What an account id may be, in one place: the registry, offboarding requests, DAG params and stores use it.

An account id selects one customer's rows (``WHERE account_id = :id``), names its S3 prefix and its data
key, and fills subprocessor paths (``/v1/accounts/{account_id}/contacts``). So it is never empty (which
matched orphan rows, or every row once a driver turned it into NULL), never ``.`` or ``..`` (which a URL or
a file path resolves to the parent: ``/v1/accounts/../contacts`` is ``/v1/contacts``), and never starts
with a dot (no hidden file, no relative segment). Letters, digits, ``_``, ``-`` and ``.`` after the first
character; at most 64 characters. No ``:``, ``/`` or spaces: the id also names a file and a key alias.
"""

from __future__ import annotations

import re
from typing import TypeGuard

# As text for JSON Schema (Airflow Params) and pydantic ``Field(pattern=...)``; ``^`` and ``$`` with no
# flags mean the same in Python, Rust (pydantic-core) and ECMA-262 (JSON Schema) regular expressions.
ACCOUNT_ID = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"
ACCOUNT_ID_PATTERN = re.compile(ACCOUNT_ID)
ACCOUNT_ID_RULE = "1 to 64 letters, digits, '_', '-' or '.', not starting with '.'"


def is_account_id(value: object) -> TypeGuard[str]:
    # fullmatch: Python's ``$`` also matches before a trailing newline, which must not pass.
    return isinstance(value, str) and ACCOUNT_ID_PATTERN.fullmatch(value) is not None


def check_account_id(value: object, field: str = "account_id") -> str:
    """``value`` when it is an account id; else ValueError naming ``field`` (the value is not echoed
    whole: it may be anything a caller passed, e.g. an e-mail address)."""
    if is_account_id(value):
        return value
    if not isinstance(value, str):
        problem = f"is {type(value).__name__}, not a string"
    elif value in ("", ".", ".."):
        problem = f"is {value!r}"
    else:
        problem = "is not an account id"
    raise ValueError(f"{field}: {problem}; an account id is {ACCOUNT_ID_RULE}")
