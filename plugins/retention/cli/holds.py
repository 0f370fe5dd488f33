"""`retention hold`: place, release and list legal holds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from retention.cli.base import Failure, accounts_option, common, ledger_option, open_ledger, operator_id
from retention.cli.output import emit

if TYPE_CHECKING:
    from retention.ledger import HoldRecord
from retention.rules import RuleSet, load_ruleset


@click.group()
def hold() -> None:
    """Place, release and list legal holds (they stop deletion of what they cover)."""


@hold.command("place")
@click.option("--account", "account_id", help="Account to hold (omit to hold a data class everywhere).")
@click.option("--data-class", help="Data class to hold (omit to hold all of the account's data).")
@click.option("--reason", required=True, help="Why (no personal data: it is stored, not logged).")
@click.option("--reference", required=True, help="Ticket or matter reference.")
@accounts_option
@ledger_option
@common
def hold_place(account_id: str | None, data_class: str | None, reason: str, reference: str,
               accounts_file: Path | None, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Place a legal hold on an account, a data class, or one data class of one account."""
    ruleset = load_ruleset(rules_dir)
    # A misspelt class or account would hold nothing while looking like protection.
    if data_class and data_class not in ruleset.data_classes.data_classes:
        raise Failure(f"unknown data class {data_class!r}; see {rules_dir}/data_classes.yaml")
    unchecked = _check_registered(account_id, accounts_file, rules_dir, ruleset) if account_id else None
    from retention.offboarding.backups import keep_keys_for_new_hold
    from retention.settings import Settings

    with open_ledger(database_url) as ledger:
        placed = ledger.place_hold(account_id=account_id, data_class=data_class, reason=reason,
                                   reference=reference, placed_by=operator_id())
        keys = keep_keys_for_new_hold(ledger, Settings.from_env(), actor=operator_id())
    if as_json:
        return emit({"ok": True, "hold": placed.as_dict(), **keys,
                     **({"account_not_checked": unchecked} if unchecked else {})})
    click.echo(f"placed {placed.id} on {_hold_scope(placed)}")
    if unchecked:
        click.echo(f"warning: the account was not checked against the registry ({unchecked})", err=True)
    if keys["backup_keys_kept"]:
        click.echo(f"cancelled the scheduled deletion of the backup key of {', '.join(keys['backup_keys_kept'])}")
    if "backup_keys_not_checked" in keys:
        click.echo(f"warning: backup keys not checked ({keys['backup_keys_not_checked']}); the daily "
                   "backup_expiry run cancels a covered key deletion", err=True)


@hold.command("release")
@click.argument("hold_id")
@click.option("--reason", required=True, help="Why the hold ends.")
@ledger_option
@common
def hold_release(hold_id: str, reason: str, database_url: str | None, rules_dir: Path,
                 as_json: bool) -> None:
    """Release a legal hold; deletion it stopped resumes on the next run."""
    with open_ledger(database_url) as ledger:
        released = ledger.release_hold(hold_id, released_by=operator_id(), reason=reason)
    if as_json:
        return emit({"ok": True, "hold": released.as_dict()})
    click.echo(f"released {released.id} ({_hold_scope(released)})")


@hold.command("list")
@click.option("--all", "include_released", is_flag=True, help="Include released holds.")
@ledger_option
@common
def hold_list(include_released: bool, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """List legal holds in force (and released ones with --all)."""
    with open_ledger(database_url) as ledger:
        holds = ledger.list_holds(include_released=include_released)
    if as_json:
        return emit({"ok": True, "holds": [h.as_dict() for h in holds]})
    if not holds:
        click.echo("no legal holds" + ("" if include_released else " in force"))
    for h in holds:
        state = f"released {h.released_at.isoformat()}" if h.released_at else "in force"
        click.echo(f"{h.id}  {_hold_scope(h):40}  {state}  since {h.placed_at.isoformat()}  ref {h.reference}")


def _check_registered(account_id: str, accounts_file: Path | None, rules_dir: Path, ruleset: RuleSet) -> str | None:
    """Refuse a hold on an account the registry does not know (a misspelt id would hold nothing while looking like
    protection); an account whose row the registry refused exists, so it may be held. A registry that cannot be
    read does not stop a hold (holding never deletes, and no run acts without the registry): the returned text
    says why the account was not checked."""
    from retention.cli.rules import RegistryUnreadable, configured_registry

    try:
        registry = configured_registry(rules_dir, accounts_file, ruleset)
    except (click.UsageError, RegistryUnreadable) as exc:
        return exc.format_message()
    if not registry.knows(account_id):
        raise Failure(f"no account {account_id!r} in the account registry ({registry.source})")
    return None


def _hold_scope(h: HoldRecord) -> str:
    return " / ".join(filter(None, [f"account {h.account_id}" if h.account_id else "every account",
                                    f"data class {h.data_class}" if h.data_class else "all data classes"]))
