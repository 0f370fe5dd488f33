"""Expiry of backups past the backup rule: whole-database snapshots and per-account copies are deleted, every
version, once the ``backups`` data class's period has ended for every account they hold; never while a legal
hold is in force (asked right before each deletion), and the ledger says which holds kept what.

Recorded as ``backup.snapshot_expired`` / ``backup.snapshot_expiry_held`` and ``backup.copy_expired`` /
``backup.copy_expiry_held``. While the account registry has refused rows nothing expires
(``backup.expiry_refused``, once per distinct set of refused rows): a refused account's backup period is unknown,
and a snapshot holds every account, so expiring without it could end a copy its period still keeps.

The daily backup_expiry run (``retention.offboarding.backups.confirm_backups``) calls both; only ``*.dump`` keys
of the snapshot catalog's prefix and the copies the ledger recorded are ever deleted, and each deletion is
verified by listing again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pendulum

from retention.backups import SnapshotCatalog
from retention.backups.snapshots import SUFFIX as SNAPSHOT_SUFFIX
from retention.engine.context import SweepContext
from retention.ledger import Ledger
from retention.ledger.chain import iso_utc
from retention.rules import resolve
from retention.rules.durations import IsoDuration
from retention.settings import Settings
from retention.stores import s3_client

BACKUP_CLASS = "backups"  # the data class whose rule sets how long snapshots and copies are kept
REFUSED = "backup.expiry_refused"

log = logging.getLogger(__name__)


def catalog(settings: Settings) -> SnapshotCatalog:
    """The snapshots of the backed-up database (``Settings.backups_*``; the Connection holds the credentials)."""
    return SnapshotCatalog(s3_client(settings.backups_conn_id), settings.backups_bucket, settings.backups_prefix,
                           settings.backups_source)


def registry_incomplete(ctx: SweepContext, what: str, *, actor: str) -> bool:
    """Whether the registry refused rows, so ``what`` (snapshots, copies) must not expire now; said in the log each
    time and in the ledger once per distinct set of refused rows."""
    if ctx.registry is None or not ctx.registry.rejected:
        return False
    refused = [r.as_dict() for r in ctx.registry.rejected]
    log.warning("backup expiry of %s refused: the account registry (%s) refused %d row(s), whose backup periods "
                "are unknown; nothing expires until they are fixed", what, ctx.registry.source, len(refused))
    earlier = [e.payload["rejected"] for e in ctx.ledger.events_of_kind(REFUSED) if e.payload["what"] == what]
    if not earlier or earlier[-1] != refused:
        ctx.ledger.append(REFUSED, {"what": what, "reason": "registry_rows_refused", "source": ctx.registry.source,
                                    "rejected": refused}, actor=actor)
    return True


def _longest_retention(ctx: SweepContext, account_ids: Iterable[str], now: datetime) -> list[IsoDuration]:
    """The backup rules' periods for these accounts: a shared snapshot is kept until the longest ends."""
    at = pendulum.instance(now)  # the resolver works in pendulum
    return [resolve(ctx.ruleset, ctx.accounts[a], BACKUP_CLASS, at).retain_for for a in account_ids
            if a in ctx.accounts]


def _holds_on_everyone(ledger: Ledger, account_ids: Iterable[str]) -> list[str]:
    """A shared snapshot holds every account: the holds in force on any of them (and on accounts only a hold names)."""
    named = {h.account_id for h in ledger.list_holds() if h.account_id}
    return sorted({hold for a in sorted(set(account_ids) | named) for hold in ledger.holds_in_force(a)})


def expire_snapshots(ctx: SweepContext, settings: Settings, now: datetime, *, actor: str,
                     snapshot_catalog: SnapshotCatalog | None = None) -> list[str]:
    """Delete (every version) the snapshots whose backup period ended for every account, unless a hold is in
    force; recorded as ``backup.snapshot_expired`` or ``backup.snapshot_expiry_held``. Only ``*.dump`` keys of
    the catalog's prefix are ever deleted. Returns the snapshots deleted."""
    if registry_incomplete(ctx, "snapshots", actor=actor):
        return []
    snapshots = snapshot_catalog or catalog(settings)
    periods = _longest_retention(ctx, ctx.accounts, now)
    if not periods:
        return []
    deleted: list[str] = []
    for snapshot in snapshots.list():
        if not snapshot.id.endswith(SNAPSHOT_SUFFIX):
            continue  # another tool's object: not ours to delete
        taken = pendulum.instance(snapshot.taken_at)
        if max(period.after(taken) for period in periods) > now:
            continue
        held = _holds_on_everyone(ctx.ledger, ctx.accounts)  # right before expiring
        if held:
            if _last_snapshot_hold(ctx.ledger, snapshot.id) != held:
                ctx.ledger.append("backup.snapshot_expiry_held", {"source": snapshots.source, "snapshot": snapshot.id,
                                                                  "holds": held}, actor=actor)
            continue
        versions = snapshots.delete(snapshot.id)
        ctx.ledger.append("backup.snapshot_expired", {"source": snapshots.source, "snapshot": snapshot.id,
                                                      "taken_at": iso_utc(snapshot.taken_at), "versions": versions},
                          actor=actor)
        deleted.append(snapshot.id)
    return deleted


def _last_snapshot_hold(ledger: Ledger, snapshot_id: str) -> list[str] | None:
    held: list[list[str]] = [e.payload["holds"] for e in ledger.events_of_kind("backup.snapshot_expiry_held")
            if e.payload["snapshot"] == snapshot_id]
    return held[-1] if held else None


def expire_copies(ctx: SweepContext, settings: Settings, now: datetime, *, actor: str,
                  client: Any = None) -> list[str]:
    """Delete (every version) the per-account copies past the account's backup rule, unless a hold is in force
    on the account; recorded as ``backup.copy_expired`` / ``backup.copy_expiry_held``. Returns the copy ids."""
    if registry_incomplete(ctx, "copies", actor=actor):
        return []
    expired = {e.payload["copy_id"] for e in ctx.ledger.events_of_kind("backup.copy_expired")}
    pending = [e.payload for e in ctx.ledger.events_of_kind("backup.copy_written")
               if e.payload["copy_id"] not in expired]
    client = client or (s3_client(settings.backups_conn_id) if pending else None)
    deleted: list[str] = []
    for copy in pending:
        periods = _longest_retention(ctx, [copy["account_id"]], now)
        created = pendulum.instance(datetime.fromisoformat(copy["created_at"]))  # as iso_utc wrote it
        if not periods or periods[0].after(created) > now:
            continue
        held = ctx.ledger.holds_in_force(copy["account_id"])  # right before expiring
        if held:
            if not any(e.payload["copy_id"] == copy["copy_id"] and e.payload["holds"] == held
                       for e in ctx.ledger.events_of_kind("backup.copy_expiry_held")):
                ctx.ledger.append("backup.copy_expiry_held", {"account_id": copy["account_id"],
                                                              "copy_id": copy["copy_id"], "holds": held}, actor=actor)
            continue
        versions = _delete_every_version(client, copy["bucket"], copy["key"])
        ctx.ledger.append("backup.copy_expired", {"account_id": copy["account_id"], "copy_id": copy["copy_id"],
                                                  "versions": versions}, actor=actor)
        deleted.append(copy["copy_id"])
    return deleted


def _delete_every_version(client: Any, bucket: str, key: str) -> int:
    def versions() -> list[str]:
        pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key)
        return [v["VersionId"] for page in pages for v in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]
                if v["Key"] == key]

    found = versions()
    for version_id in found:
        client.delete_object(Bucket=bucket, Key=key, **({} if version_id == "null" else {"VersionId": version_id}))
    if versions():  # verified by listing again, never by the calls' answers
        raise RuntimeError(f"a backup copy is still in bucket {bucket} after deletion")
    return len(found)
