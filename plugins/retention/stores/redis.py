"""Keys of one account in Redis, by pattern: list them with SCAN, delete them with UNLINK, verify by scanning again.

Selection
    A key matches a Selector when it matches the location's ``key_pattern`` with the account id filled in
    (``presence:{account_id}:*`` -> ``presence:acme:*``). The inventory refuses a pattern whose glob could reach
    another account's keys (a glob before the account id, or no separator after it). With a cutoff, a key
    matches when the key segment named by ``timestamp`` (the key split on ":") dates it at or before the
    cutoff; a segment coarser than a second ("%Y-%m-%d") names a whole period, and the key matches only once
    all of that period is at or before the cutoff. A key whose segment does not parse never matches (what
    cannot be dated is never deleted); ``verify`` counts it and reports it as ``Retained("undated_key")``.
    A subject selector (a data subject request) matches no key: a key names an account, not a person.

Listing
    Always SCAN with MATCH and COUNT, never KEYS (which blocks the server while it walks every key). The
    account's keys are sorted, so a batch is a key range (after, upper] like the other stores' batches; the
    cursors are the keys' bytes in hex (hex keeps the keys' byte order, and no key reaches a log or the
    ledger as text).

TTL
    A key with a TTL is present until Redis expires it: it is counted, deleted and verified like any other
    (a TTL is not a deletion). A key that expires between SCAN and UNLINK is not an error: UNLINK's reply is
    what this run removed, and only that is counted. Nothing here sets, changes or removes a TTL.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TypedDict

from redis import Redis

from retention.rules.inventory import RedisLocation
from retention.stores.base import (
    Due,
    DueSeries,
    Histogram,
    Outcome,
    PendingBatch,
    Residue,
    Retained,
    Selector,
    Tally,
    due_by_account,
    first_due,
    series_by_account,
)
from retention.stores.keydates import KeyClock

log = logging.getLogger(__name__)

BATCH_SIZE = 1_000  # keys per batch: one UNLINK round trip
SCAN_COUNT = 1_000  # SCAN's COUNT hint: keys the server looks at per call
SEPARATOR = ":"

Text = str | dict[str, str] | None  # UTF-8 text, or {"base64": ...} for other bytes (``_text``)
Value = Text | dict[str, Text] | list[Text] | list[tuple[Text, float]]  # an exported key's value, by its type


class ExportedKey(TypedDict):
    """One line of ``keys.jsonl``."""

    key: Text
    type: str
    value: Value
    ttl_ms: int | None  # None: no TTL


def redis_client(conn_id: str) -> Redis:
    """A redis-py client from an Airflow Connection of type redis, one per Connection definition and process."""
    from airflow.sdk import BaseHook

    return _client_for(conn_id, BaseHook.get_connection(conn_id).get_uri())


@cache
def _client_for(conn_id: str, definition: str) -> Redis:
    from airflow.providers.redis.hooks.redis import RedisHook

    client: Redis = RedisHook(redis_conn_id=conn_id).get_conn()  # type: ignore[no-untyped-call]  # untyped hook
    return client


class RedisStore:
    """The Store protocol over one Redis location (``systems.yaml`` kind: redis)."""

    def __init__(self, location_id: str, spec: RedisLocation, client: Redis, *, batch_size: int = BATCH_SIZE,
                 scan_count: int = SCAN_COUNT) -> None:
        if batch_size < 1 or scan_count < 1:
            raise ValueError(f"Redis location {location_id}: batch_size and scan_count must be positive")
        self.location_id = location_id
        self.spec = spec
        self.client = client
        self.batch_size = batch_size
        self.scan_count = scan_count
        where = f"Redis location {location_id}"
        self._clock = KeyClock(spec.timestamp, where, separator=SEPARATOR) if spec.timestamp is not None else None

    # -- the Store protocol --------------------------------------------------------------------

    def count(self, selector: Selector, after: str | None = None, upper: str | None = None, *,
              pending_anonymize: bool = False) -> int:
        self._only_deletes(pending_anonymize)
        return len(self._matching(selector, after, upper))

    def tally(self, accounts: Collection[str], due: Collection[Due] = ()) -> dict[str, Tally]:
        """Per account: its keys and those its ``Due`` matches, from ONE SCAN of the pattern with ``*`` for the
        account id, each key attributed to the one account whose pattern it matches (``KeyOwners``)."""
        asked = set(accounts)
        wanted = {account: item.selector for account, item in
                  due_by_account(f"Redis location {self.location_id}", asked, due, "keys", anonymizes=False).items()}
        owners = KeyOwners(self.spec.key_pattern)
        totals: dict[str, int] = {}
        dues: dict[str, int] = {}
        found = self.client.scan_iter(match=owners.every_account, count=self.scan_count)
        for key in {_raw(key) for key in found}:  # SCAN may return a key twice while the keyspace is rehashed
            owner = owners.account(key)
            if owner is None or owner not in asked:
                continue
            totals[owner] = totals.get(owner, 0) + 1
            selector = wanted.get(owner)
            if selector is not None and self._due(key, selector):
                dues[owner] = dues.get(owner, 0) + 1
        return {account: Tally(total, dues.get(account, 0)) for account, total in totals.items()}

    def histogram(self, series: Collection[DueSeries]) -> Histogram:
        """Per account, at which cutoff of its series its keys fall due, from ONE SCAN attributed as ``tally``
        attributes it, each key dated as ``count`` dates it (an undated key is due at none)."""
        where = f"Redis location {self.location_id}"
        by_account = series_by_account(where, series)
        for item in by_account.values():
            self._only_deletes(item.pending_anonymize)
        owners = KeyOwners(self.spec.key_pattern)
        found: Histogram = {}
        scanned = self.client.scan_iter(match=owners.every_account, count=self.scan_count)
        for key in {_raw(key) for key in scanned}:  # SCAN may return a key twice while the keyspace is rehashed
            owner = owners.account(key)
            wanted = by_account.get(owner) if owner is not None else None
            if owner is None or wanted is None:
                continue
            if wanted.anchor is None or wanted.cutoffs is None:
                first: int | None = 0  # all of the account's keys
            else:
                dated = self._dated(key, wanted.anchor)
                first = first_due(wanted.cutoffs, dated) if dated is not None else None
            if first is not None:
                per_cutoff = found.setdefault(owner, {})
                per_cutoff[first] = per_cutoff.get(first, 0) + 1
        return found

    def batches(self, selector: Selector, after: str | None = None, *,
                pending_anonymize: bool = False) -> Iterator[PendingBatch]:
        self._only_deletes(pending_anonymize)
        keys = self._matching(selector, after, None)
        previous = after
        for start in range(0, len(keys), self.batch_size):
            chunk = tuple(keys[start:start + self.batch_size])
            upper = chunk[-1].hex()
            yield PendingBatch(previous, upper, len(chunk), items=(self.location_id, chunk))
            previous = upper

    def delete(self, batch: PendingBatch) -> Outcome:
        keys = self._keys_of(batch)
        if batch.recheck is not None:
            batch.recheck()  # the engine's legal-hold check, right before the keys go: a hold stops it here
        removed = self.client.unlink(*keys)  # one round trip; counts only what was still there to remove
        log.info("location %s: %d of %d keys removed (the rest had expired)", self.location_id, removed, len(keys))
        return Outcome(affected=int(removed))

    def anonymize(self, batch: PendingBatch) -> Outcome:
        raise ValueError(f"Redis location {self.location_id}: keys cannot be anonymized in place; use delete")

    def isolate(self, batch: PendingBatch) -> Outcome:
        raise ValueError(f"Redis location {self.location_id}: isolation is for SQL tables (systems.yaml isolate_to)")

    def verify(self, selector: Selector, *, pending_anonymize: bool = False) -> Residue:
        self._only_deletes(pending_anonymize)
        remaining = len(self._matching(selector, None, None))
        undated = len(self._undated(selector))
        retained = (Retained("undated_key", undated),) if undated else ()
        return Residue(remaining + undated, retained)

    def export(self, selector: Selector, sink: Path | str) -> int:
        """Write each matching key as one JSON line of ``sink/keys.jsonl``: its type, value and remaining TTL
        in milliseconds (None: no TTL). A key that expired since the scan is not written. Returns the count."""
        destination = Path(sink)
        destination.mkdir(parents=True, exist_ok=True)
        partial = destination / "keys.jsonl.partial"
        written = 0
        with partial.open("w", encoding="utf-8") as out:
            for key in self._matching(selector, None, None):
                record = self._record(key)
                if record is not None:
                    out.write(json.dumps(record, sort_keys=True) + "\n")
                    written += 1
        partial.rename(destination / "keys.jsonl")
        log.info("location %s: exported %d keys", self.location_id, written)
        return written

    def _only_deletes(self, pending_anonymize: bool) -> None:
        if pending_anonymize:
            raise ValueError(f"Redis location {self.location_id}: keys cannot be anonymized in place; use delete")

    # -- selection -----------------------------------------------------------------------------

    def _pattern(self, account_id: str) -> str:
        return self.spec.match(account_id)

    def _scan(self, account_id: str) -> list[bytes]:
        found = self.client.scan_iter(match=self._pattern(account_id), count=self.scan_count)
        return sorted({_raw(key) for key in found})  # SCAN may return a key twice while the keyspace is rehashed

    def _matching(self, selector: Selector, after: str | None, upper: str | None) -> list[bytes]:
        if selector.subject is not None:
            return []  # a key names no data subject (RedisLocation has no subjects:): a subject selects none
        low = bytes.fromhex(after) if after is not None else None
        high = bytes.fromhex(upper) if upper is not None else None
        return [key for key in self._scan(selector.account_id)
                if (low is None or key > low) and (high is None or key <= high) and self._due(key, selector)]

    def _due(self, key: bytes, selector: Selector) -> bool:
        if selector.cutoff is None:
            return True  # all of the account's keys
        dated = self._dated(key, selector.anchor)
        return dated is not None and dated <= selector.cutoff

    def _undated(self, selector: Selector) -> list[bytes]:
        if selector.cutoff is None:
            return []
        return [key for key in self._scan(selector.account_id) if self._dated(key, selector.anchor) is None]

    def _dated(self, key: bytes, anchor: str | None) -> datetime | None:
        """The latest instant the key's time segment can stand for; None if it has none that parses."""
        if self._clock is None or anchor != "created_at":
            raise ValueError(f"Redis location {self.location_id}: its keys carry no {anchor} "
                             "(systems.yaml timestamp names the key segment that dates a key)")
        return self._clock.latest(key.decode("utf-8", "replace"))

    def _keys_of(self, batch: PendingBatch) -> tuple[bytes, ...]:
        location, keys = batch.items
        if location != self.location_id:
            raise ValueError(f"Redis location {self.location_id}: the batch was listed for {location}")
        return tuple(keys)

    # -- export --------------------------------------------------------------------------------

    def _record(self, key: bytes) -> ExportedKey | None:
        kind = _raw(self.client.type(key)).decode()
        if kind == "none":
            return None  # expired or deleted since the scan
        read = VALUE_READERS.get(kind)
        if read is None:
            raise ValueError(f"Redis location {self.location_id}: a key of type {kind} cannot be exported "
                             f"({', '.join(VALUE_READERS)} can)")
        ttl = int(self.client.pttl(key))
        value = read(self.client, key)
        if ttl == -2:
            return None  # expired while it was read
        return ExportedKey(key=_text(key), type=kind, value=value, ttl_ms=ttl if ttl >= 0 else None)


def _string(client: Redis, key: bytes) -> Text:
    return _text(client.get(key))


def _hash(client: Redis, key: bytes) -> dict[str, Text]:
    return {_plain(field): _text(item) for field, item in client.hgetall(key).items()}


def _list(client: Redis, key: bytes) -> list[Text]:
    return [_text(item) for item in client.lrange(key, 0, -1)]


def _set(client: Redis, key: bytes) -> list[Text]:
    return sorted((_text(item) for item in client.smembers(key)), key=json.dumps)  # a set has no order of its own


def _zset(client: Redis, key: bytes) -> list[tuple[Text, float]]:
    return [_scored(pair) for pair in client.zrange(key, 0, -1, withscores=True)]


# How a key's value is read for export, by its Redis type (TYPE's answer); a type not here is refused.
VALUE_READERS: dict[str, Callable[[Redis, bytes], Value]] = {
    "string": _string,
    "hash": _hash,
    "list": _list,
    "set": _set,
    "zset": _zset,
}


class KeyOwners:
    """Which account's pattern a key matches, for a pattern ``before{account_id}after``.

    The inventory allows only literal text before the id, and after it a character no account id holds (or
    nothing); so the id is the run of account id characters after ``before``, and the key is that account's
    when the rest matches ``after`` under Redis's glob rules (``*``, ``?``, ``[...]``/``[^...]`` with ranges,
    ``\\`` escapes), read here as a regular expression."""

    def __init__(self, pattern: str) -> None:
        before, _, after = pattern.partition("{account_id}")
        self.every_account = f"{before}*{after}"  # the SCAN MATCH that finds every account's keys
        self._key = re.compile(re.escape(before.encode()) + rb"([A-Za-z0-9_.-]+)" + glob_regex(after.encode()),
                               re.DOTALL)

    def account(self, key: bytes) -> str | None:
        found = self._key.fullmatch(key)
        return found.group(1).decode("ascii") if found else None


def glob_regex(pattern: bytes) -> bytes:
    """A Redis MATCH pattern as a regular expression over bytes (what ``stringmatchlen`` in Redis's util.c
    accepts: an unclosed ``[`` class ends with the pattern; ``[]`` matches nothing, ``[^]`` any byte)."""
    out: list[bytes] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == ord("*"):
            out.append(b".*")
        elif c == ord("?"):
            out.append(b".")
        elif c == ord("["):
            i += 1
            negate = i < len(pattern) and pattern[i] == ord("^")
            i += negate
            members: list[bytes] = []
            while i < len(pattern) and pattern[i] != ord("]"):
                if pattern[i] == ord("\\") and i + 1 < len(pattern):
                    i += 1
                    members.append(_byte(pattern[i]))
                elif i + 2 < len(pattern) and pattern[i + 1] == ord("-"):
                    low, high = sorted((pattern[i], pattern[i + 2]))
                    members.append(_byte(low) + b"-" + _byte(high))
                    i += 2
                else:
                    members.append(_byte(pattern[i]))
                i += 1
            if members:
                out.append(b"[" + (b"^" if negate else b"") + b"".join(members) + b"]")
            else:
                out.append(b"." if negate else b"(?!)")
        else:
            if c == ord("\\") and i + 1 < len(pattern):
                i += 1
            out.append(_byte(pattern[i]))
        i += 1
    return b"".join(out)


def _byte(value: int) -> bytes:
    return b"\\x%02x" % value


def _raw(data: bytes | str) -> bytes:
    """What Redis holds: bytes (a client made with decode_responses=True hands out text; back to its bytes)."""
    return data if isinstance(data, bytes) else data.encode("utf-8")


def _text(data: bytes | str | None) -> Text:
    """UTF-8 text as it is; other bytes as ``{"base64": ...}`` so nothing is lost or mangled."""
    if data is None:
        return None
    raw = _raw(data)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}


def _plain(data: bytes | str) -> str:
    """A hash field as a JSON object key: UTF-8 text, or ``base64:`` and its base64."""
    raw = _raw(data)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode("ascii")


def _scored(pair: object) -> tuple[Text, float]:
    """A sorted-set member and its score (ZRANGE WITHSCORES answers pairs)."""
    if not isinstance(pair, tuple) or len(pair) != 2:
        raise TypeError("ZRANGE WITHSCORES answered something other than (member, score) pairs")
    member, score = pair
    return _text(member), float(score)
