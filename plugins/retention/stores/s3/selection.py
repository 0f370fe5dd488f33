"""Which listed records a selector takes: one account's prefix, entries grouped by key, a verdict per key.

With a subject, a key is the subject's when one of the location's subject key segments (``subjects:``, the key
split on "/") is one of the subject's values of that kind; every other key is left out of the groups altogether
(not counted, retained, young or undated: it is not the subject's record). A location keeping none of the
subject's kinds selects no key."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Final, Literal, NamedTuple

from retention.rules.inventory import S3Location
from retention.rules.subjects import Subject
from retention.stores.base import Selector
from retention.stores.keydates import KeyClock
from retention.stores.s3.listing import Entry

Verdict = Literal["due", "young", "undated"]
DUE: Final = "due"
YOUNG: Final = "young"
UNDATED: Final = "undated"


class Group(NamedTuple):
    """One key: its entries in listing order (every version and marker) and what the selector says of it."""

    key: str
    entries: list[Entry]
    verdict: Verdict


class Selection:
    """Applies selectors to one location's listings: the account's prefix and each key's verdict."""

    def __init__(self, location_id: str, spec: S3Location, clock: KeyClock | None) -> None:
        self._location_id = location_id
        self._spec = spec
        self._clock = clock

    def prefix(self, selector: Selector) -> str:
        account = selector.account_id
        if not account or "/" in account or any(ord(c) < 32 for c in account):
            # With no "/" in account ids, one account's prefix can never lie inside another's.
            raise ValueError(f"S3 location {self._location_id}: account id {account!r} cannot name an S3 "
                             "prefix (it must be non-empty, without '/' or control characters)")
        return self._spec.prefix(account)

    def is_subjects(self, subject: Subject, key: str) -> bool:
        """Whether one of the key's subject segments holds one of the subject's values of its kind."""
        parts = key.split("/")
        return any(segment.key_segment < len(parts) and parts[segment.key_segment] in subject.values(kind)
                   for kind, segment in self._spec.subjects.items())

    def subject_values(self, key: str) -> dict[str, str]:
        """kind -> the key's segment for each subject kind the location keeps (segments the key lacks: left out)."""
        parts = key.split("/")
        return {kind: parts[segment.key_segment] for kind, segment in self._spec.subjects.items()
                if segment.key_segment < len(parts) and parts[segment.key_segment]}

    def verdict(self, selector: Selector, key: str, entries: list[Entry]) -> Verdict:
        if selector.cutoff is None:
            return DUE
        dated = self.dated(key, entries)
        if dated is None:
            return UNDATED
        return DUE if dated <= selector.cutoff else YOUNG

    def dated(self, key: str, entries: list[Entry]) -> datetime | None:
        """The instant a cutoff is compared with: the newest entry's LastModified, or the latest instant the
        key's time segment can stand for (None: the segment does not parse)."""
        if self._clock is None:
            return max(e.last_modified for e in entries)
        return self._clock.latest(key)

    def groups(self, selector: Selector, pages: Iterable[list[Entry]]) -> Iterator[Group]:
        """One Group per key, in key order; a key's versions may span pages."""
        for group in self.groups_and_page_ends(selector, pages):
            if group is not None:
                yield group

    def groups_and_page_ends(self, selector: Selector, pages: Iterable[list[Entry]]) -> Iterator[Group | None]:
        """As ``groups``, with a None after the keys completed by each page (where a listing page ended)."""
        key: str | None = None
        group: list[Entry] = []
        subject = selector.subject
        for page in pages:
            for entry in page:
                if subject is not None and not self.is_subjects(subject, entry.key):
                    continue  # another person's object, or one that names nobody: not this selector's
                if self._spec.versioned:
                    if entry.key != key:
                        if key is not None and group:
                            yield Group(key, group, self.verdict(selector, key, group))
                        key, group = entry.key, []
                    group.append(entry)
                else:  # one entry per key: no need to see the next one first
                    yield Group(entry.key, [entry], self.verdict(selector, entry.key, [entry]))
            yield None
        if key is not None and group:
            yield Group(key, group, self.verdict(selector, key, group))
