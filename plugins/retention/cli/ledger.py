"""`retention ledger`: verify, checkpoint, migrate and grant the ledger; erase a free text it names."""

from __future__ import annotations

from pathlib import Path

import click

from retention.cli.base import Failure, common, ledger_option, open_ledger, operator_id
from retention.cli.output import emit


@click.group()
def ledger() -> None:
    """The append-only, hash-chained record of everything the product did."""


@ledger.command("verify")
@ledger_option
@common
def ledger_verify(database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Recompute the hash chain, then check it against every published checkpoint (signed outside the ledger
    database); name the first event that was edited, deleted or reordered, and the first checkpoint the
    ledger no longer matches."""
    from retention.ledger.checkpoints import CheckpointError, verify_configured

    with open_ledger(database_url) as opened:
        result = opened.verify()
        try:
            checkpoints = verify_configured(opened, result)
        except CheckpointError as exc:
            raise Failure(f"ledger checkpoints cannot be checked: {exc}") from exc
    document = {"ok": result.ok and checkpoints.ok, "events_checked": result.events_checked,
                "first_bad_seq": result.first_bad_seq, "first_bad_event_id": result.first_bad_event_id,
                "reason": result.reason, "checkpoints": checkpoints.as_dict()}
    if not result.ok:
        raise Failure(f"ledger verification FAILED: {result.reason}"
                      + ("" if checkpoints.ok else f"\nand the checkpoints disagree: {checkpoints.reason}"), document)
    if not checkpoints.ok:
        raise Failure(f"ledger verification FAILED: the hash chain is whole, but {checkpoints.reason}", document)
    if as_json:
        return emit(document)
    click.echo(f"ledger intact: {result.events_checked} event(s), hash chain verified")
    click.echo(checkpoints.reason)


@ledger.command("checkpoint")
@click.option("--new-key", is_flag=True,
              help="First create the signing key (RETENTION_CHECKPOINT_KEY_FILE, mode 0600) and add its public "
                   "half to RETENTION_CHECKPOINT_JWKS_FILE; refused if the key file exists.")
@ledger_option
@common
def ledger_checkpoint(new_key: bool, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Sign the chain's last event and publish it outside the ledger database (as the daily DAG does)."""
    from retention.ledger.checkpoints import CheckpointError, create_key, jwks_file, key_file, publish_configured
    from retention.settings import Settings

    settings = Settings.from_env()
    try:
        if new_key:
            created = create_key(key_file(settings), jwks_file(settings))
            click.echo(f"new checkpoint key {created.kid} in {key_file(settings)}; public half in "
                       f"{jwks_file(settings)}", err=as_json)
        with open_ledger(database_url) as opened:
            checkpoint = publish_configured(opened, settings)
    except CheckpointError as exc:
        raise Failure(str(exc)) from exc
    document = {"ok": True, "checkpoint": checkpoint.body() if checkpoint else None}
    if as_json:
        return emit(document)
    if checkpoint is None:
        click.echo("the ledger is empty: nothing to checkpoint")
    else:
        click.echo(f"checkpoint of event {checkpoint.seq} ({checkpoint.hash[:16]}…) at {checkpoint.at}, "
                   f"signed by key {checkpoint.kid}")


@ledger.command("migrate")
@ledger_option
@common
def ledger_migrate(database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Bring the ledger schema to the latest version (Alembic)."""
    from retention.ledger import database_url as default_url
    from retention.ledger import migrate

    url = database_url or default_url()
    migrate(url)
    if as_json:
        return emit({"ok": True})
    click.echo("ledger schema is up to date")


@ledger.command("grant")
@click.option("--owner-url", envvar="RETENTION_LEDGER_OWNER_URL", required=True,
              help="The ledger database as the role that owns its tables (the one that ran `ledger migrate`).")
@click.option("--runtime-role", envvar="RETENTION_LEDGER_RUNTIME_ROLE", required=True,
              help="The role RETENTION_DATABASE_URL connects as: it gets SELECT and INSERT on events, no more.")
@common
def ledger_grant(owner_url: str, runtime_role: str, rules_dir: Path, as_json: bool) -> None:
    """Give the runtime role exactly what the product needs (PostgreSQL); run again after every migrate."""
    from retention.ledger.roles import grant_runtime_role

    granted = grant_runtime_role(owner_url, runtime_role)
    if as_json:
        return emit({"ok": True, "runtime_role": runtime_role, "privileges": granted})
    for table, privileges in granted.items():
        click.echo(f"{runtime_role} on {table}: {', '.join(privileges)}")


@ledger.command("erase-text")
@click.argument("sha256")
@ledger_option
@common
def ledger_erase_text(sha256: str, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Erase a free text (a reason, a reference, a ticket) that events name by SHA256: the words and their salt
    are gone, the chain still verifies. Recorded as text.erased by cli:<the operating-system user>."""
    with open_ledger(database_url) as opened:
        opened.erase_text(sha256, erased_by=operator_id())
    if as_json:
        return emit({"ok": True, "erased": sha256})
    click.echo(f"erased the text {sha256}; the chain keeps only its digest")
