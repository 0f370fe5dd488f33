"""Backups: per-account encrypted copies, their crypto-erase at termination, and the shared snapshots' expiry.

Two kinds of backup hold an account's data, and a certificate treats them differently:

- per-account copies (``retention.backups.copies``): an export of one account's rows and objects,
  encrypted (AES-256-GCM) under a fresh data key wrapped by the account's own key (AWS KMS in production,
  the local keystore on the embedded stack), written daily by ``write_account_copies``. At termination
  the account's key is scheduled for deletion (a 7 to 30-day window, as AWS KMS enforces); once it is
  destroyed those copies cannot be decrypted by any means the product has: a cryptographic erase, NIST
  SP 800-88 *purge*, claimed only for the copies the ledger recorded as encrypted under that key.
- whole-database snapshots (``retention.backups.snapshots``): every account in the clear, never edited;
  the ones taken before the deletion are recorded with the date the last of them expires under the backup
  rule. They are stated by that date only, and the daily ``backup_expiry`` DAG expires them
  (``expire_snapshots``) and confirms it by supplement.

Legal holds: right before the key is scheduled, destroyed, or a snapshot or copy is expired, the ledger's
``holds_in_force`` is asked; while a hold is in force nothing is destroyed or expired, a scheduled key
deletion is cancelled (so the held data stays readable in the backups), and the ledger says which holds.

The storage work itself lives in ``retention.backups``; the expiry of snapshots and copies past the backup
rule in ``retention.offboarding.expiry``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pendulum

from retention.backups import KmsKeystore, LocalKeystore, clear_copies, last_expiry
from retention.backups import copies as account_copies
from retention.backups.keystore import (
    ABSENT,
    DESTROYED,
    ENABLED,
    PENDING_DELETION,
    KeyDestroyed,
    KeyPendingDeletion,
    KeyState,
    Keystore,
)
from retention.engine.context import SweepContext
from retention.engine.verifier import reclaim
from retention.ledger import Event, Ledger
from retention.ledger.chain import iso_utc
from retention.offboarding.expiry import BACKUP_CLASS, catalog, expire_copies, expire_snapshots
from retention.offboarding.plan import account_of
from retention.offboarding.returns import export_account
from retention.rules import resolve
from retention.settings import Settings
from retention.stores import s3_client

log = logging.getLogger(__name__)
KEY_EVENTS = ("backup.key_deletion_scheduled", "backup.key_deletion_held", "backup.key_destroyed")

COPY_FORMAT = "per-account backup copy: " + account_copies.CONTENT


class CopyWritten(TypedDict):
    """``backup.copy_written``: one encrypted per-account copy, as the ledger records it."""
    account_id: str
    copy_id: str
    keystore: str
    cipher: str
    sha256: str  # of the stored object
    bytes: int
    records: int
    locations: int
    bucket: str
    key: str
    created_at: str


class CopyRef(TypedDict):
    """A copy as a key event names it: the certificate claims the crypto-erase for exactly these."""
    copy_id: str
    sha256: str


class BackupsRecorded(TypedDict):
    """What the offboarding's backups step did, for its task's result."""
    key_destroy_on: str | None
    key_held_by: list[str]
    encrypted_copies: int
    snapshots: int
    last_expiry: str | None


class KeysKept(TypedDict):
    """``keep_keys_for_new_hold``'s answer, as the API and CLI report it."""
    backup_keys_kept: list[str]
    backup_keys_not_checked: NotRequired[str]  # the keystore's error type, when it could not be reached


class DailyCopies(TypedDict):
    copies: int
    accounts: list[str]


# -- where things are -------------------------------------------------------------------------------

def keystore(settings: Settings) -> Keystore:
    """AWS KMS when a KMS Connection is configured, else the embedded stack's local keystore.

    The Connection's id comes from ``Settings.backups_kms_conn_id`` (``RETENTION_BACKUPS_KMS_CONN_ID``): an
    ``aws`` Connection whose credentials (and, for a local endpoint, ``endpoint_url`` extra) reach KMS."""
    conn_id = settings.backups_kms_conn_id
    if conn_id:
        return KmsKeystore(kms_client(conn_id))
    return LocalKeystore(settings.keystore_dir)


def kms_client(conn_id: str) -> Any:  # boto3's clients are untyped
    """A boto3 KMS client from an Airflow ``aws`` Connection (credentials never leave Airflow's secrets)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=conn_id, client_type="kms").get_conn()


# -- per-account copies ------------------------------------------------------------------------------

def copy_account(ctx: SweepContext, account_id: str, settings: Settings, now: datetime, *, actor: str,
                 store: Keystore | None = None, client: Any = None) -> CopyWritten:
    """Write one encrypted copy of the account (every location of the inventory) and record
    ``backup.copy_written``: copy id, keystore, the stored object's sha256 and size, record counts."""
    store = store or keystore(settings)
    locations = sorted(ctx.inventory.locations)

    def export(root: Path) -> dict[str, int]:
        records, _ = export_account(ctx, account_id, locations, root, package_id=root.name, now=now,
                                    format=COPY_FORMAT)
        return records

    copy = account_copies.write_copy(export, account_id, keystore=store,
                                     client=client or s3_client(settings.backups_conn_id),
                                     bucket=settings.backups_bucket, now=now)
    written: CopyWritten = {
        "account_id": account_id, "copy_id": copy.copy_id, "keystore": copy.keystore, "cipher": account_copies.CIPHER,
        "sha256": copy.sha256, "bytes": copy.size, "records": sum(copy.records.values()),
        "locations": len(copy.records), "bucket": settings.backups_bucket, "key": copy.key,
        "created_at": iso_utc(copy.created_at)}
    ctx.ledger.append("backup.copy_written", dict(written), actor=actor)
    return written


def write_account_copies(ctx: SweepContext, settings: Settings, now: datetime, *, actor: str,
                         accounts: list[str] | None = None, store: Keystore | None = None,
                         client: Any = None) -> list[CopyWritten]:
    """A copy of each account of the registry (or of ``accounts``) whose key may still encrypt: an account
    whose key is scheduled for deletion or destroyed (offboarded) gets no new copy, ever."""
    store = store or keystore(settings)
    # The ledger, not only the keystore, says whose key is gone: once KMS has destroyed a key its alias is gone
    # too, and a fresh process would read "absent" and create a new key for an offboarded account.
    latest: dict[str, str] = {}
    for e in ctx.ledger.events_of_kind(*KEY_EVENTS):
        latest[e.payload["account_id"]] = e.kind
    ended = {a for a, kind in latest.items() if kind != "backup.key_deletion_held"}
    written: list[CopyWritten] = []
    failed: list[str] = []
    for account_id in sorted(accounts if accounts is not None else ctx.accounts):
        if account_id in ended or store.state(account_id).state not in (ENABLED, ABSENT):
            continue
        try:
            written.append(copy_account(ctx, account_id, settings, now, actor=actor, store=store, client=client))
        except (KeyPendingDeletion, KeyDestroyed):  # scheduled between the check and the copy: no copy
            continue
        except Exception as exc:  # one account's failure must not leave the others without today's copy
            log.warning("backup copy of account %s failed: %s", account_id, type(exc).__name__)
            failed.append(account_id)
    if failed:
        raise account_copies.CopyError(f"no backup copy today for account(s) {', '.join(failed)}; "
                                       f"{len(written)} written")
    return written


def copies_of(ledger: Ledger, account_id: str) -> list[dict[str, Any]]:
    """The account's copies that still exist, oldest first (payloads of ``backup.copy_written``): an expired
    copy was deleted like any object, so no crypto-erase may be claimed for it."""
    expired = {e.payload["copy_id"] for e in ledger.events_of_kind("backup.copy_expired")
               if e.payload["account_id"] == account_id}
    return [e.payload for e in ledger.events_of_kind("backup.copy_written")
            if e.payload["account_id"] == account_id and e.payload["copy_id"] not in expired]


def restore_account(ledger: Ledger, settings: Settings, account_id: str, destination: Path, *,
                    copy_id: str | None = None, store: Keystore | None = None,
                    client: Any = None) -> account_copies.Manifest:
    """Decrypt one of the account's copies (the latest, or ``copy_id``) into ``destination``; returns its
    manifest. Refused (``KeystoreError``) once the account's key is scheduled for deletion or destroyed."""
    found = [c for c in copies_of(ledger, account_id) if copy_id in (None, c["copy_id"])]
    if not found:
        raise LookupError(f"no backup copy {copy_id or ''} of account {account_id} in the ledger".replace("  ", " "))
    chosen = found[-1]
    return account_copies.restore_copy(client or s3_client(settings.backups_conn_id), chosen["bucket"],
                                       chosen["key"], destination, keystore=store or keystore(settings),
                                       account_id=account_id, sha256=chosen["sha256"])


# -- the offboarding's backups step ------------------------------------------------------------------

def record_backups(ctx: SweepContext, run_id: str, settings: Settings, now: datetime, *, actor: str,
                   store: Keystore | None = None) -> BackupsRecorded:
    """After the run's deletions were verified: VACUUM the tables they touched, schedule the account's key for
    deletion (unless a hold is in force), and record which snapshots still hold the account's data."""
    account = ctx.accounts[account_of(ctx.ledger, run_id)]
    now = pendulum.instance(now)
    store = store or keystore(settings)
    reclaim(ctx, run_id, actor=actor)
    written = _copy_refs(ctx.ledger, account.id)
    held = ctx.ledger.holds_in_force(account.id)  # right before scheduling: "stop now", whatever placed_at says
    if held:  # destroying the key would destroy the held data in every copy
        key = store.state(account.id)
        ctx.ledger.append("backup.key_deletion_held", {"account_id": account.id, "holds": held, "stage": "schedule",
                                                       "copies": len(written)}, actor=actor, run_id=run_id)
    else:
        key = store.schedule_deletion(account.id, window_days=settings.key_deletion_window_days, at=now)
        if key.state == PENDING_DELETION and not _scheduled_on(ctx.ledger, account.id, key.scheduled_date):
            _record_scheduled(ctx.ledger, store, account.id, key, written, actor=actor, run_id=run_id)
    copies = clear_copies(catalog(settings), up_to=now)
    decision = resolve(ctx.ruleset, account, BACKUP_CLASS, now)
    expires = last_expiry(copies, decision.retain_for)
    last = iso_utc(expires) if expires else None
    ctx.ledger.append("backup.copies_recorded", {
        "account_id": account.id, "source": settings.backups_source, "snapshots": [c.id for c in copies],
        "last_expiry": last, "policy": f"{decision.rule_id}: {decision.retain_for} after the snapshot is taken"},
        actor=actor, run_id=run_id)
    return {"key_destroy_on": iso_utc(key.deletion_date) if key.deletion_date else None, "key_held_by": held,
            "encrypted_copies": len(written), "snapshots": len(copies), "last_expiry": last}


def _copy_refs(ledger: Ledger, account_id: str) -> list[CopyRef]:
    return [{"copy_id": c["copy_id"], "sha256": c["sha256"]} for c in copies_of(ledger, account_id)]


def _record_scheduled(ledger: Ledger, store: Keystore, account_id: str, key: KeyState, written: list[CopyRef], *,
                      actor: str, run_id: str | None = None) -> None:
    payload: dict[str, Any] = {"account_id": account_id, "keystore": store.kind,
                               "deletion_date": iso_utc(key.scheduled_date), "copies": written}
    key_id = store.scheduled_key_id(account_id) if isinstance(store, KmsKeystore) else None
    if key_id:  # KMS: once the key is destroyed its alias is gone; only its id tells destroyed from absent
        payload["key_id"] = key_id
    ledger.append("backup.key_deletion_scheduled", payload, actor=actor, run_id=run_id)


def _scheduled_on(ledger: Ledger, account_id: str, deletion_date: datetime) -> bool:
    return any(e.payload["account_id"] == account_id and e.payload["deletion_date"] == iso_utc(deletion_date)
               for e in ledger.events_of_kind("backup.key_deletion_scheduled"))


# -- the daily backup_expiry run ----------------------------------------------------------------------

def confirm_backups(ctx: SweepContext, settings: Settings, now: datetime, *, actor: str,
                    store: Keystore | None = None) -> list[str]:
    """Destroy the keys whose window passed (not while held), expire snapshots and copies past the backup
    rule (not while held), and confirm expired snapshots; returns the accounts whose backup line changed."""
    changed = _confirm_keys(ctx, settings, now, actor=actor, store=store or keystore(settings))
    expire_snapshots(ctx, settings, now, actor=actor)
    expire_copies(ctx, settings, now, actor=actor)
    snapshots = catalog(settings)
    for recorded_copies in _awaiting_expiry(ctx):
        p = recorded_copies.payload
        if p["snapshots"] and not any(snapshots.exists(s) for s in p["snapshots"]):
            ctx.ledger.append("backup.copies_expired", {"account_id": p["account_id"], "source": p["source"],
                                                        "snapshots": len(p["snapshots"])}, actor=actor)
            changed.add(p["account_id"])
    return sorted(changed)


def _confirm_keys(ctx: SweepContext, settings: Settings, now: datetime, *, actor: str, store: Keystore) -> set[str]:
    """For each account whose key an offboarding scheduled for deletion, or kept under a hold: keep it while a
    hold is in force (cancelling a scheduled deletion), schedule it once the hold is released, destroy it when
    its window has passed. A key is recorded destroyed by what the keystore says afterwards, so a crash between
    the destruction and the ledger append is reconciled by the next run."""
    changed: set[str] = set()
    latest: dict[str, Event] = {}
    scheduled: dict[str, dict[str, Any]] = {}
    for e in ctx.ledger.events_of_kind(*KEY_EVENTS):
        latest[e.payload["account_id"]] = e
        if e.kind == "backup.key_deletion_scheduled":
            scheduled[e.payload["account_id"]] = e.payload
    for account_id, last in sorted(latest.items()):
        if last.kind == "backup.key_destroyed":
            continue
        p = scheduled.get(account_id)
        if p and p.get("key_id") and isinstance(store, KmsKeystore):
            store.remember(account_id, p["key_id"], datetime.fromisoformat(p["deletion_date"]))
        state = store.state(account_id)
        if state.state != DESTROYED:
            held = ctx.ledger.holds_in_force(account_id)  # right before scheduling or destroying
            if held:
                if _keep_held_key(ctx.ledger, store, account_id, held, stage="destroy" if p else "schedule",
                                  actor=actor):
                    changed.add(account_id)
                continue
            if state.state == ENABLED:  # a hold kept or cancelled the deletion and is released: schedule it now
                key = store.schedule_deletion(account_id, window_days=settings.key_deletion_window_days, at=now)
                _record_scheduled(ctx.ledger, store, account_id, key, _copy_refs(ctx.ledger, account_id), actor=actor)
                changed.add(account_id)
                continue
            if state.state != PENDING_DELETION:  # absent: there never was a key to destroy
                continue
            state = store.destroy_if_due(account_id, now) or state
        if state.state == DESTROYED:
            at = state.destroyed_at or min(state.scheduled_date, pendulum.instance(now))  # KMS does not say when
            ctx.ledger.append("backup.key_destroyed", {
                "account_id": account_id, "destroyed_at": iso_utc(at),
                "keystore": p["keystore"] if p else store.kind,
                "copies": len(p["copies"]) if p else 0}, actor=actor)
            changed.add(account_id)
    return changed


def _keep_held_key(ledger: Ledger, store: Keystore, account_id: str, held: list[str], *, stage: str,
                   actor: str) -> bool:
    """Cancel the key's scheduled deletion (the held data stays readable in the account's copies) and say so
    once per set of holds; True when that was recorded now."""
    store.cancel_deletion(account_id)
    if _last_held(ledger, account_id) == held:
        return False
    ledger.append("backup.key_deletion_held", {"account_id": account_id, "holds": held, "stage": stage,
                                               "copies": len(copies_of(ledger, account_id))}, actor=actor)
    return True


def protect_held_keys(ledger: Ledger, settings: Settings, *, actor: str, store: Keystore | None = None) -> list[str]:
    """Called as a hold is placed: cancel the scheduled deletion of every key the holds in force now cover.
    AWS KMS destroys a key by itself when its window ends, so the daily run alone could come a day too late
    for a hold placed on the window's last day. Returns the accounts whose key it kept."""
    pending: dict[str, dict[str, Any] | None] = {}
    for e in ledger.events_of_kind(*KEY_EVENTS):
        pending[e.payload["account_id"]] = e.payload if e.kind == "backup.key_deletion_scheduled" else None
    kept: list[str] = []
    for account_id, scheduled in sorted(pending.items()):
        if not scheduled:
            continue
        held = ledger.holds_in_force(account_id)
        if not held:
            continue
        store = store or keystore(settings)
        if scheduled.get("key_id") and isinstance(store, KmsKeystore):
            store.remember(account_id, scheduled["key_id"], datetime.fromisoformat(scheduled["deletion_date"]))
        if store.state(account_id).state == PENDING_DELETION:
            _keep_held_key(ledger, store, account_id, held, stage="destroy", actor=actor)
            kept.append(account_id)
    return kept


def keep_keys_for_new_hold(ledger: Ledger, settings: Settings, *, actor: str) -> KeysKept:
    """``protect_held_keys`` for the hold just placed, as the API and CLI report it. The hold stands even if the
    keystore cannot be reached (the daily run retries); the answer then says the keys were not checked."""
    try:
        return {"backup_keys_kept": protect_held_keys(ledger, settings, actor=actor)}
    except Exception as exc:  # noqa: BLE001 - any keystore failure; the hold itself is recorded already
        log.warning("backup keys not checked after placing a hold: %s", type(exc).__name__)
        return {"backup_keys_kept": [], "backup_keys_not_checked": type(exc).__name__}


def _last_held(ledger: Ledger, account_id: str) -> list[str] | None:
    """The holds the last key event of the account named; None when that event was not a hold."""
    last: list[str] | None = None
    for e in ledger.events_of_kind("backup.key_deletion_held", "backup.key_deletion_scheduled"):
        if e.payload["account_id"] == account_id:
            last = e.payload.get("holds") if e.kind == "backup.key_deletion_held" else None
    return last


def _awaiting_expiry(ctx: SweepContext) -> list[Event]:
    """The ``backup.copies_recorded`` events whose snapshots are not yet confirmed expired."""
    recorded: dict[tuple[str, str], Event] = {}
    expired: set[tuple[str, str]] = set()
    for e in ctx.ledger.events_of_kind("backup.copies_recorded", "backup.copies_expired"):
        if e.kind == "backup.copies_recorded":
            recorded[(e.payload["account_id"], e.payload["source"])] = e
        else:
            expired.add((e.payload["account_id"], e.payload["source"]))
    return [e for key, e in recorded.items() if key not in expired]


def daily_copies(*, actor: str, now: datetime | None = None) -> DailyCopies:
    """The backup_expiry DAG's first task: today's encrypted copy of every account whose key may still encrypt."""
    from retention.engine.tasks import context

    with context() as ctx:
        written = write_account_copies(ctx, Settings.from_env(), now or pendulum.now("UTC"), actor=actor)
    return {"copies": len(written), "accounts": [w["account_id"] for w in written]}
