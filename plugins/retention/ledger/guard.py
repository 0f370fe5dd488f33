"""Refuse text that looks like personal data before it can enter the ledger.

The ledger may hold account ids, data class names, counts, hashes and staff ids only. A hash-chained
event can never be erased, so an email address or phone number that slipped in would be kept
forever. The patterns are deliberately tight: ISO timestamps, uuids, sha256 hex, ISO durations and
ids like ``acct_1001`` must pass. Error messages name where the value was, never the value.
"""

from __future__ import annotations

import re
from typing import Any

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# Each phone shape stands alone: no letter, digit or underscore may touch it (so it is not part of
# an id or a hex string), and it must contain separators or a leading "+", so bare digit runs
# (counts, unix timestamps) pass.
_B, _E = r"(?<![\w+])", r"(?![\w])"
_PHONES = (
    # +1 415 555 0100, +14155550100, +44 (0)20 7946 0958
    re.compile(_B + r"\+\d[\d ().-]{6,18}\d" + _E),
    # (415) 555-0100, (020) 7946 0958
    re.compile(_B + r"\(\d{2,5}\)[ .-]?\d{2,4}(?:[ .-]?\d{2,4}){1,2}" + _E),
    # 415-555-0100, 415.555.0100, 415 555 0100
    re.compile(r"(?<![\w.-])\d{3}([ .-])\d{3}\1\d{4}(?![\w.-])"),
    # national trunk prefix with spaces: 020 7946 0958, 06 12 34 56 78
    re.compile(_B + r"0\d{1,4}(?: \d{2,4}){2,4}" + _E),
)


class PersonalDataError(ValueError):
    """Text bound for the ledger looks like an email address or a phone number."""


def looks_personal(text: str) -> str | None:
    """What ``text`` looks like ("an email address" / "a phone number"), or None."""
    if _EMAIL.search(text):
        return "an email address"
    for pattern in _PHONES:
        for match in pattern.finditer(text):
            digits = sum(c.isdigit() for c in match.group())
            if 7 <= digits <= 15:
                return "a phone number"
    return None


def refuse_personal_data(value: Any, where: str) -> None:
    """Raise PersonalDataError if any string in ``value`` (keys included, any depth) looks personal."""
    if isinstance(value, str):
        found = looks_personal(value)
        if found:
            raise PersonalDataError(f"{where} looks like {found}; the ledger must not hold personal "
                                    "data (use account ids, data class names, counts, hashes)")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_personal_data(key, f"a key of {where}")
            refuse_personal_data(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            refuse_personal_data(item, f"{where}[{i}]")
