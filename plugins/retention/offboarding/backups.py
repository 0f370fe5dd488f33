"""Backups at termination. Two ways a backup stops holding an account's data:

- cryptographic erase: copies encrypted with the account's own data key become unreadable when the key
  is destroyed. Scheduled here (a 7 to 30-day window, as AWS KMS enforces); the certificate dates the
  line when the key is really destroyed, which the daily ``backup_expiry`` DAG confirms.
- expiry: whole-database snapshots hold every account in the clear and are never edited; the ones taken
  before the deletion are recorded, with the date the last of them expires under the backup rule.
"""

from __future__ import annotations

from datetime import datetime

from retention.backups import LocalKeystore, SnapshotCatalog, clear_copies, last_expiry
from retention.engine.planner import SweepContext
from retention.ledger.chain import iso_utc
from retention.offboarding.plan import account_of
from retention.rules import resolve
from retention.settings import Settings
from retention.stores import s3_client

BACKUP_CLASS = "backups"  # the data class whose rule sets the snapshots' retention


def keystore(settings: Settings) -> LocalKeystore:
    return LocalKeystore(settings.keystore_dir)


def catalog(settings: Settings) -> SnapshotCatalog:
    return SnapshotCatalog(s3_client(settings.backups_conn_id), settings.backups_bucket, settings.backups_prefix,
                           settings.backups_source)


def record_backups(ctx: SweepContext, run_id: str, settings: Settings, now: datetime, *, actor: str) -> dict:
    account = ctx.accounts[account_of(ctx.ledger, run_id)]
    held = holds_on(ctx.ledger.resolver_holds(), account.id, now)
    if held:  # destroying the key would destroy the held data in every backup
        key = keystore(settings).state(account.id)
        ctx.ledger.append("backup.key_deletion_held", {"account_id": account.id, "holds": held},
                          actor=actor, run_id=run_id)
    else:
        key = keystore(settings).schedule_deletion(account.id, window_days=settings.key_deletion_window_days, at=now)
        if key.state != "absent":  # no key: no copy was encrypted for this account, nothing to destroy or claim
            ctx.ledger.append("backup.key_deletion_scheduled", {
                "account_id": account.id, "keystore": "local", "deletion_date": iso_utc(key.deletion_date)},
                actor=actor, run_id=run_id)
    copies = clear_copies(catalog(settings), up_to=now)
    decision = resolve(ctx.ruleset, account, BACKUP_CLASS, now)
    expires = last_expiry(copies, decision.retain_for)
    recorded = {"account_id": account.id, "source": settings.backups_source, "snapshots": [c.id for c in copies],
                "last_expiry": iso_utc(expires) if expires else None,
                "policy": f"{decision.rule_id}: {decision.retain_for} after the snapshot is taken"}
    ctx.ledger.append("backup.copies_recorded", recorded, actor=actor, run_id=run_id)
    return {"key_destroy_on": iso_utc(key.deletion_date) if key.deletion_date else None, "key_held_by": held,
            "snapshots": len(copies), "last_expiry": recorded["last_expiry"]}


def confirm_backups(ctx: SweepContext, settings: Settings, now: datetime, *, actor: str) -> list[str]:
    """Destroy the keys whose window passed and confirm expired snapshots; returns the accounts that changed.

    A key is recorded destroyed by what the keystore says afterwards, so a crash between the destruction
    and the ledger append is reconciled by the next run."""
    changed = []
    holds, store = ctx.ledger.resolver_holds(), keystore(settings)
    store.destroy_due(now, keep=frozenset(a for a in ctx.accounts if holds_on(holds, a, now)))
    recorded = {e.payload["account_id"] for e in ctx.ledger.events_of_kind("backup.key_destroyed")}
    scheduled = {e.payload["account_id"] for e in ctx.ledger.events_of_kind("backup.key_deletion_scheduled")}
    for account_id in sorted(scheduled - recorded):
        state = store.state(account_id)
        if state.state == "destroyed":  # KMS does not say when: it destroys on the deletion date
            destroyed_at = iso_utc(state.destroyed_at or state.deletion_date)
            ctx.ledger.append("backup.key_destroyed", {"account_id": account_id, "destroyed_at": destroyed_at},
                              actor=actor)
            changed.append(account_id)
    snapshots = catalog(settings)
    for recorded_copies in _awaiting_expiry(ctx):
        p = recorded_copies.payload
        if p["snapshots"] and not any(snapshots.exists(s) for s in p["snapshots"]):
            ctx.ledger.append("backup.copies_expired", {"account_id": p["account_id"], "source": p["source"],
                                                        "snapshots": len(p["snapshots"])}, actor=actor)
            changed.append(p["account_id"])
    return sorted(set(changed))


def holds_on(holds: list, account_id: str, now: datetime) -> list[str]:
    """Legal holds in force on any data of the account: its backups hold every data class."""
    return sorted(h.id for h in holds if h.applies(account_id, h.data_class, now))


def _awaiting_expiry(ctx: SweepContext) -> list:
    recorded, expired = {}, set()
    for e in ctx.ledger.events_of_kind("backup.copies_recorded", "backup.copies_expired"):
        if e.kind == "backup.copies_recorded":
            recorded[(e.payload["account_id"], e.payload["source"])] = e
        else:
            expired.add((e.payload["account_id"], e.payload["source"]))
    return [e for key, e in recorded.items() if key not in expired]
