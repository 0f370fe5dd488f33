"""Splitting one location's work between several workers: shards of the account hash.

A shard takes an account when the sha256 of its id, as a number, modulo the shard count is the shard's index:
stable across processes, machines and Python versions (Python's ``hash`` of a str is salted per process), so
every worker of a run, and a retried one, agrees on who takes which account, and every account is taken by
exactly one shard of a count.

How many shards a location gets follows from the plan: one per ``records_per_shard`` records it estimated due
there (``RETENTION_SHARD_RECORDS``), at least one, and at most the slots of its kind's Airflow pool (more
shards than slots would only queue).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

from retention.rules.inventory import LocationSpec
from retention.stores.kinds import kind_of

DEFAULT_SHARD_RECORDS = 1_000_000


class ShardDict(TypedDict):
    """A shard as XCom carries it."""

    index: int
    count: int


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the accounts whose id hashes to ``index`` modulo ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"a shard is 0 <= index < count with count >= 1, got index {self.index} "
                             f"of count {self.count}")

    def takes(self, account_id: str) -> bool:
        return account_hash(account_id) % self.count == self.index

    def as_dict(self) -> ShardDict:
        return {"index": self.index, "count": self.count}

    @classmethod
    def of(cls, data: ShardDict) -> Shard:
        return cls(int(data["index"]), int(data["count"]))


def account_hash(account_id: str) -> int:
    """The account id's sha256 as a number (its first 8 bytes, big-endian: plenty for any shard count)."""
    return int.from_bytes(hashlib.sha256(account_id.encode("utf-8")).digest()[:8], "big")


def shard_count(spec: LocationSpec, estimated_due: int, records_per_shard: int = DEFAULT_SHARD_RECORDS) -> int:
    """Shards for a location with ``estimated_due`` records planned: one per ``records_per_shard``, from 1 to
    its kind's pool slots."""
    if records_per_shard < 1:
        raise ValueError(f"records per shard must be at least 1, got {records_per_shard}")
    wanted = math.ceil(max(0, estimated_due) / records_per_shard)
    return max(1, min(kind_of(spec).pool_slots, wanted))


def shards(spec: LocationSpec, estimated_due: int, records_per_shard: int = DEFAULT_SHARD_RECORDS) -> list[Shard]:
    """Every shard of a location, given what the plan estimated due there."""
    count = shard_count(spec, estimated_due, records_per_shard)
    return [Shard(index, count) for index in range(count)]


def plan_shards(locations: Mapping[str, LocationSpec], due_by_location: Mapping[str, int],
                records_per_shard: int = DEFAULT_SHARD_RECORDS) -> dict[str, list[Shard]]:
    """Per location with work planned (``Plan.due_by_location``): its shards."""
    return {location_id: shards(locations[location_id], due, records_per_shard)
            for location_id, due in due_by_location.items()}
