"""Per-account counts over one S3 location in ONE listing pass over its root (the key template's text
before ``{account_id}``, e.g. ``tenants/``), instead of one or two listings per account.

Each key is attributed to the account whose prefix it lies under: the template is ``root{account_id}rest/``
and account ids hold no "/", so the first "/" after the root ends the account id and ``rest``'s text before
its first "/"; no key lies under two accounts' prefixes. Keys under no asked account's prefix are listed but
not counted. Each key is then counted exactly as ``S3Store.count`` counts it: every version and delete marker
on a versioned bucket, dated by its newest entry's LastModified or by its key segment, with the verdict of
``Selection.verdict`` under the account's own ``Due``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from retention.rules.inventory import S3Location
from retention.stores.base import (
    Due,
    DueSeries,
    Histogram,
    Selector,
    Tally,
    due_by_account,
    first_due,
    series_by_account,
)
from retention.stores.s3.listing import Entry
from retention.stores.s3.selection import DUE, Selection


@dataclass(frozen=True)
class Attribution:
    """Which account's prefix a key of the location lies under, read from the key template."""

    root: str  # the template's text before {account_id}
    rest: str  # the template's text after it (ends with "/")

    @classmethod
    def of(cls, spec: S3Location) -> Attribution:
        root, _, rest = spec.key_template.partition("{account_id}")
        return cls(root, rest)

    @property
    def _before_slash(self) -> int:
        """Characters of ``rest`` before its first "/" (between the account id and the first "/" after it)."""
        return self.rest.index("/")

    def account(self, key: str) -> str | None:
        """The account whose prefix ``key`` lies under, or None when it lies under no account's."""
        if not key.startswith(self.root):
            return None
        tail = key[len(self.root):]
        end = tail.find("/")
        if end < 0:
            return None
        account = tail[:max(0, end - self._before_slash)]
        return account if account and tail.startswith(account + self.rest) else None


def tally_entries(location_id: str, spec: S3Location, selection: Selection, pages: Iterable[list[Entry]],
                  accounts: Collection[str], due: Collection[Due]) -> dict[str, Tally]:
    """Totals and due counts of the asked accounts from the pages of one listing of the location's root."""
    asked = set(accounts)
    wanted = {account: item.selector for account, item in
              due_by_account(f"S3 location {location_id}", asked, due, "objects", anonymizes=False).items()}
    for account in asked:
        selection.prefix(Selector(account))  # refuse an id that cannot name a prefix, as count does
    attribution = Attribution.of(spec)
    totals: dict[str, int] = {}
    dues: dict[str, int] = {}
    everything = Selector("all")  # no cutoff: every key is DUE, so each group comes whole and unjudged
    for group in selection.groups(everything, pages):
        owner = attribution.account(group.key)
        if owner is None or owner not in asked:
            continue
        totals[owner] = totals.get(owner, 0) + len(group.entries)
        selector = wanted.get(owner)
        if selector is not None and selection.verdict(selector, group.key, group.entries) == DUE:
            dues[owner] = dues.get(owner, 0) + len(group.entries)
    return {account: Tally(total, dues.get(account, 0)) for account, total in totals.items()}


def histogram_entries(location_id: str, spec: S3Location, selection: Selection, pages: Iterable[list[Entry]],
                      series: Collection[DueSeries]) -> Histogram:
    """When each asked account's records fall due along its series, from the pages of one listing of the
    location's root: each key attributed and dated as ``tally_entries`` and ``count`` do (every version and
    marker counted), at the first cutoff at or after its date; an undated key is due at none."""
    where = f"S3 location {location_id}"
    by_account = series_by_account(where, series)
    for item in by_account.values():
        if item.pending_anonymize:
            raise ValueError(f"{where}: objects cannot be anonymized in place; use delete")
        selection.prefix(Selector(item.account_id))  # refuse an id that cannot name a prefix, as count does
    attribution = Attribution.of(spec)
    found: Histogram = {}
    for group in selection.groups(Selector("all"), pages):  # no cutoff: each group comes whole and unjudged
        owner = attribution.account(group.key)
        wanted = by_account.get(owner) if owner is not None else None
        if owner is None or wanted is None:
            continue
        if wanted.cutoffs is None:
            first: int | None = 0  # all of the account's records
        else:
            dated = selection.dated(group.key, group.entries)
            first = first_due(wanted.cutoffs, dated) if dated is not None else None
        if first is not None:
            per_cutoff = found.setdefault(owner, {})
            per_cutoff[first] = per_cutoff.get(first, 0) + len(group.entries)
    return found
