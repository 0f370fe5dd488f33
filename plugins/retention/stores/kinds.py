"""The store kinds: one entry per kind of place data lives; everything that differs by kind is read here.

A kind is its location model (``retention.rules.inventory``, chosen by the inventory's ``kind:`` tag), its
store class and the client that class takes from an Airflow Connection (both named by import path and loaded
only when a store is opened: DAG files import this module at parse time, so no database or cloud client is
imported here), the Airflow pool its execute tasks run in, and the NIST SP 800-88 Rev. 1 statement a
certificate makes for what was done there. The planner, the engine's tasks, offboarding, certificates and
both DAGs iterate over ``KINDS``: a new kind is one store module, one entry here, its location model in the
inventory, and its tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Generic, NotRequired, TypedDict, TypeVar, get_args

from retention.rules.inventory import LOCATION_MODELS, RedisLocation, S3Location, SqlLocation, StoredLocation
from retention.stores.base import Store

L = TypeVar("L", bound=StoredLocation)


class NistStatement(TypedDict):
    """NIST SP 800-88 Rev. 1 in its own terms, for what was done at one location."""

    category: str  # "clear" at most for a deletion through a store's interface; "none (kept)" ...
    method: str
    physical: NotRequired[str]  # what happens to the storage afterwards, and whose statement that is
    vacuum: NotRequired[str]  # SQL: what was done about the dead row versions, as recorded


class VacuumNote(TypedDict):
    """A run's VACUUM at one location, as the ledger recorded it (``storage.vacuumed`` / ``vacuum_failed``)."""

    status: str  # "vacuumed" | "failed"
    command: str
    tables: list[str]
    at: str


Sanitization = Callable[[str, L, VacuumNote | None], NistStatement]


@dataclass(frozen=True)
class StoreKind(Generic[L]):
    name: str  # the inventory's ``kind:`` tag
    location: type[L]  # its location model in retention.rules.inventory
    store_class: str  # "module:Class", called as Class(location_id, spec, client)
    client: str  # "module:function", called as function(conn_id): the client the store class takes
    pool: str  # the Airflow pool its execute tasks run in (``retention pools sync`` creates it)
    pool_slots: int  # the pool's size: at most this many of its tasks run at once, across DAGs
    pool_description: str
    max_active_tis_per_dag: int  # its execute tasks running at once in one DAG
    sanitization: Sanitization[L]  # (action, location, its VACUUM if any) -> the certificate's statement

    def open(self, location_id: str, spec: L) -> Store:
        """The location's store, its client built from the location's Airflow Connection."""
        factory: Callable[[str, L, object], Store] = _load(self.store_class)
        connect: Callable[[str], object] = _load(self.client)
        return factory(location_id, spec, connect(spec.conn_id))


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


SQL_PHYSICAL = ("deleted row versions stay in the table's data files (and in WAL, replicas and backups) until "
                "VACUUM marks their space reusable and later writes overwrite it")
S3_PHYSICAL = ("the storage is reclaimed by the object storage provider under its own media-sanitization "
               "commitment (the provider's statement, not this product's)")
UNKNOWN: NistStatement = {"category": "unknown", "method": "unknown"}


def _sql_sanitization(action: str, spec: SqlLocation, vacuum: VacuumNote | None) -> NistStatement:
    method = ("identifying columns nulled or replaced by a salted hash (SQL UPDATE)" if action == "anonymize"
              else "logical delete (SQL DELETE, children first)")
    return {"category": "clear", "method": method, "physical": SQL_PHYSICAL, "vacuum": _vacuumed(vacuum)}


def _vacuumed(vacuum: VacuumNote | None) -> str:
    """What was done about the dead row versions at this location, as recorded; nothing more."""
    if vacuum is None:
        return "no VACUUM is recorded for this run (autovacuum reclaims the space later)"
    if vacuum["status"] == "failed":
        return f"VACUUM failed ({vacuum['at']}): autovacuum reclaims the space later"
    return (f"{vacuum['command']} ran on {', '.join(vacuum['tables'])} after verification ({vacuum['at']}): "
            "their space is reusable, not overwritten")


def _s3_sanitization(action: str, spec: S3Location, vacuum: VacuumNote | None) -> NistStatement:
    if action != "delete":  # objects are only ever deleted (the inventory refuses any other action)
        return UNKNOWN
    method = "every object version and delete marker removed" if spec.versioned else "objects removed"
    return {"category": "clear", "method": f"{method} (S3 DeleteObjects)", "physical": S3_PHYSICAL}


REDIS_PHYSICAL = ("UNLINK removes the keys and frees their memory in the background (replicas apply the same "
                  "UNLINK); the memory is not overwritten, and copies in RDB snapshots and AOF files remain until "
                  "the server's next snapshot or AOF rewrite replaces them")


def _redis_sanitization(action: str, spec: RedisLocation, vacuum: VacuumNote | None) -> NistStatement:
    if action != "delete":  # keys are only ever deleted (the inventory refuses any other action)
        return UNKNOWN
    return {"category": "clear", "method": "keys removed (Redis UNLINK)", "physical": REDIS_PHYSICAL}


# Heterogeneous by design: each entry is typed by its own location model (``kind_of`` hands one out typed).
KINDS: dict[str, StoreKind[Any]] = {
    "sql": StoreKind(
        name="sql", location=SqlLocation, store_class="retention.stores.sql:SqlStore",
        client="retention.stores:sql_engine", pool="retention_sql", pool_slots=2,
        pool_description="retention: application database", max_active_tis_per_dag=2,
        sanitization=_sql_sanitization),
    "s3": StoreKind(
        name="s3", location=S3Location, store_class="retention.stores.s3:S3Store",
        client="retention.stores:s3_client", pool="retention_s3", pool_slots=4,
        pool_description="retention: object storage", max_active_tis_per_dag=4,
        sanitization=_s3_sanitization),
    "redis": StoreKind(
        name="redis", location=RedisLocation, store_class="retention.stores.redis:RedisStore",
        client="retention.stores.redis:redis_client", pool="retention_redis", pool_slots=2,
        pool_description="retention: Redis key stores", max_active_tis_per_dag=2,
        sanitization=_redis_sanitization),
}


def kind_of(spec: L) -> StoreKind[L]:
    """The registry entry of a location, checked against the model the entry declares."""
    kind = KINDS.get(spec.kind)
    if kind is None or not isinstance(spec, kind.location):
        raise LookupError(f"no store kind for a {type(spec).__name__} location: register it in retention.stores.kinds")
    return kind


def _check_registry() -> None:
    """Every location model has one entry and every entry names its own model (a new kind adds both)."""
    models = {kind.location for kind in KINDS.values()}
    for name, kind in KINDS.items():
        if kind.name != name or get_args(kind.location.model_fields["kind"].annotation) != (name,):
            raise ValueError(f"store kind {name!r}: its entry's name and its location model's tag must be {name!r}")
    missing = [m.__name__ for m in LOCATION_MODELS if m not in models]
    if missing:
        raise ValueError(f"location models without a store kind: {', '.join(missing)}")


_check_registry()
