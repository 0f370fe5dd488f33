"""The shapes a structured ledger field may take, defined once: the API, DAG params, the CLI and the ledger
all check against these.

A field with a strict shape cannot carry a sentence, so it cannot carry a name, an address or a note
about a person. Each pattern is also given as text (``^...$``, no flags) for JSON Schema (Airflow
Params) and pydantic ``Field(pattern=...)``; Python checks use ``fullmatch`` (``$`` alone would
accept a trailing newline). Errors name the field and the rule, never the value.
"""

from __future__ import annotations

import re
from datetime import date

# A tracker's ticket or case: Jira / Linear keys (PRIV-4411, ENG-123), prefixed ones (6S-PRIV-4411),
# ServiceNow / Salesforce numbers (INC0012345, 00012345) and GitHub issues (#123). Upper-case letters and digits
# in parts joined by single '-' or '_', at least one digit (a word alone, such as a name, is not a ticket), at
# most TICKET_MAX characters. No look-arounds: pydantic-core's regular expressions have none.
TICKET_REFERENCE = r"^#?(?:[A-Z0-9]+[-_])*[A-Z]*[0-9][A-Z0-9]*(?:[-_][A-Z0-9]+)*$"
TICKET_MAX = 40
TICKET_REFERENCE_RULE = ("a ticket reference like PRIV-4411, 6S-PRIV-4411, INC0012345 or #123 (upper-case letters, "
                         f"digits, single '-' or '_' between parts, at least one digit, at most {TICKET_MAX} "
                         "characters)")
ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
SHA256_HEX = r"^[0-9a-f]{64}$"
# Who acted, as the code names staff and processes: ``api:<Airflow user id>`` (the operator API's staff_id),
# ``airflow:<dag id>``, or a bare id such as ``counsel.1``. No spaces, no '@': never a name or an address.
STAFF_ID = r"^(?:[a-z][a-z0-9_-]{0,15}:)?[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
STAFF_ID_RULE = ("a staff id like api:42, airflow:termination_offboarding or counsel.1 (an optional lowercase "
                 "source and ':', then letters, digits, '_', '.' or '-'; no spaces, no '@')")

_TICKET, _DATE, _SHA256, _STAFF = (re.compile(p) for p in (TICKET_REFERENCE, ISO_DATE, SHA256_HEX, STAFF_ID))


class FieldError(ValueError):
    """A structured field does not have its shape. The message names the field, never the value."""


def _checked(pattern: re.Pattern[str], value: object, field: str, rule: str, max_len: int = 200) -> str:
    if not isinstance(value, str):
        raise FieldError(f"{field}: is {type(value).__name__}, not a string; it must be {rule}")
    if len(value) > max_len or pattern.fullmatch(value) is None:
        raise FieldError(f"{field}: is not {rule}")
    return value


def check_ticket_reference(value: object, field: str = "ticket_reference") -> str:
    return _checked(_TICKET, value, field, TICKET_REFERENCE_RULE, TICKET_MAX)


def check_sha256(value: object, field: str) -> str:
    return _checked(_SHA256, value, field, "a sha256 hex digest (64 lowercase hex characters)")


def check_staff_id(value: object, field: str) -> str:
    return _checked(_STAFF, value, field, STAFF_ID_RULE)


def check_iso_date(value: object, field: str, *, not_after: date | None = None) -> str:
    """An ISO calendar date (YYYY-MM-DD) that exists, and, with ``not_after``, is not later than it."""
    text = _checked(_DATE, value, field, "an ISO date (YYYY-MM-DD)")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise FieldError(f"{field}: is not a calendar date (YYYY-MM-DD)") from None
    if not_after is not None and day > not_after:
        raise FieldError(f"{field}: is later than {not_after.isoformat()}")
    return text
