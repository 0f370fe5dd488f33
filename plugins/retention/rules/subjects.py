"""Data subjects: who a person is (the identifiers a customer gives), what a request asks, and by when.

Pure: no I/O. The inventory (``systems.yaml``) says where each kind of identifier is kept; the stores match a
``Subject`` through a ``Selector``; ``retention.requests`` orchestrates a request on the engine's task model.

An identifier is personal data. Values are normalized here (an e-mail address is matched case-insensitively,
a phone number in E.164 form; the stored side is compared as it is, so an application must store them
normalized), kept in the clear only in the ledger's erasable store while the request is open,
and enter the hash chain only as keyed hashes (``retention.identifier_hashes``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal, get_args

import pendulum

IdentifierKind = Literal["email", "phone", "visitor_id", "user_id"]
IDENTIFIER_KINDS: tuple[str, ...] = get_args(IdentifierKind)
RequestType = Literal["access", "erasure"]  # rectification is out of scope
REQUEST_TYPES: tuple[str, ...] = get_args(RequestType)
Regime = Literal["gdpr", "ccpa", "fadp"]
REGIMES: tuple[str, ...] = get_args(Regime)

MAX_VALUES = 20  # identifiers of one kind a customer may give in one request
MAX_EXPANDED = 200  # identifiers a request may reach after expansion; beyond it the request stops for staff

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{1,63}$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")  # a visitor (cookie) id, an application user id


def normalize(kind: str, value: str) -> str:
    """``value`` as stored and matched: e-mail trimmed and lower-cased, phone numbers in E.164 (spaces, dots,
    dashes and brackets dropped; "00" read as "+"), tokens trimmed. ValueError names the kind, never the value."""
    if not isinstance(value, str):
        raise ValueError(f"a {kind} identifier must be a string")
    text = value.strip()
    if kind == "email":
        text = text.lower()
        if not _EMAIL.fullmatch(text):
            raise ValueError("an email identifier must look like name@domain.tld")
        return text
    if kind == "phone":
        text = re.sub(r"[\s().-]", "", text)
        if text.startswith("00"):
            text = "+" + text[2:]
        if not _PHONE.fullmatch(text):
            raise ValueError("a phone identifier must be an international number in E.164 form, e.g. +14155550100")
        return text
    if kind in ("visitor_id", "user_id"):
        if not _TOKEN.fullmatch(text):
            raise ValueError(f"a {kind} identifier must be 1 to 128 letters, digits, '_', '.', ':' or '-'")
        return text
    raise ValueError(f"unknown identifier kind {kind!r}; known: {', '.join(IDENTIFIER_KINDS)}")


@dataclass(frozen=True)
class Subject:
    """One person, as the identifiers known for them: kind -> normalized values (sorted, no duplicates)."""

    identifiers: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        for kind, values in self.identifiers.items():
            if kind not in IDENTIFIER_KINDS:
                raise ValueError(f"unknown identifier kind {kind!r}")
            if tuple(sorted(set(values))) != tuple(values):
                raise ValueError("Subject values must be sorted and unique: build it with Subject.of(...)")
        if not self.size:
            raise ValueError("a Subject needs at least one identifier")

    @classmethod
    def of(cls, identifiers: Mapping[Any, Iterable[str]]) -> Subject:
        """Normalize and deduplicate each value; kinds without values are left out."""
        normalized = {kind: tuple(sorted({normalize(kind, v) for v in values}))
                      for kind, values in identifiers.items()}
        return cls({kind: values for kind, values in sorted(normalized.items()) if values})

    @property
    def size(self) -> int:
        return sum(len(values) for values in self.identifiers.values())

    def kinds(self) -> frozenset[str]:
        return frozenset(self.identifiers)

    def values(self, kind: str) -> tuple[str, ...]:
        return self.identifiers.get(kind, ())

    def union(self, other: Subject) -> Subject:
        kinds = self.kinds() | other.kinds()
        return Subject.of({k: (*self.values(k), *other.values(k)) for k in kinds})

    def as_dict(self) -> dict[str, list[str]]:
        return {kind: list(values) for kind, values in self.identifiers.items()}


# GDPR Art. 12(3): "without undue delay and in any event within one month of receipt"; CCPA §1798.130(a)(2): within
# 45 days of receiving it; Switzerland's FADP (Art. 25, and Art. 18 of its ordinance): within 30 days.
_REGIME_OF_JURISDICTION: dict[str, Regime] = {"EEA": "gdpr", "UK": "gdpr", "CH": "fadp", "US-CA": "ccpa"}
_DAYS: dict[str, int] = {"ccpa": 45, "fadp": 30}  # regimes counted in days; GDPR counts a calendar month
DEFAULT_REGIME: Regime = "gdpr"  # the shorter of the two: a request from elsewhere is answered within a month


def regime_of(jurisdiction: str) -> Regime:
    return _REGIME_OF_JURISDICTION.get(jurisdiction, DEFAULT_REGIME)


def deadline(received: date, regime: Regime) -> date:
    """The last day the customer may answer its data subject, from the day it received the request."""
    if regime in _DAYS:
        return received + timedelta(days=_DAYS[regime])
    return pendulum.Date(received.year, received.month, received.day).add(months=1)
