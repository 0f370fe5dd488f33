"""`retention customer-credential`: issue, list and revoke the credentials of the customer API, as the operator
running the CLI (``operator_id``). A credential is issued only for an account the registry knows."""

from __future__ import annotations

from pathlib import Path

import click

from retention.cli.base import Failure, accounts_option, common, ledger_option, open_ledger, operator_id
from retention.cli.output import emit


@click.group("customer-credential")
def customer_credential() -> None:
    """Issue, list and revoke customer API credentials (one account each)."""


@customer_credential.command("issue")
@click.option("--account", "account_id", required=True, help="The account the credential acts for, and only it.")
@accounts_option
@ledger_option
@common
def credential_issue(account_id: str, accounts_file: Path | None, database_url: str | None, rules_dir: Path,
                     as_json: bool) -> None:
    """Issue a credential; its token is printed once and kept nowhere (the ledger keeps its digest)."""
    from retention.cli.rules import configured_registry
    from retention.rules import load_ruleset

    registry = configured_registry(rules_dir, accounts_file, load_ruleset(rules_dir))
    if not registry.knows(account_id):
        raise Failure(f"no account {account_id!r} in the account registry ({registry.source})")
    with open_ledger(database_url) as ledger:
        credential_id, token = ledger.issue_credential(account_id, issued_by=operator_id())
    if as_json:
        return emit({"ok": True, "credential_id": credential_id, "account_id": account_id, "token": token})
    click.echo(f"issued {credential_id} for account {account_id}")
    click.echo(f"token (shown only once; send it as 'Authorization: Bearer <token>'): {token}")


@customer_credential.command("list")
@click.option("--account", "account_id", help="Only this account's credentials.")
@ledger_option
@common
def credential_list(account_id: str | None, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """List credentials, newest first, revoked ones included (never a secret)."""
    with open_ledger(database_url) as ledger:
        found = ledger.credentials(account_id)
    if as_json:
        return emit({"ok": True, "credentials": [c.as_dict() for c in found]})
    if not found:
        click.echo("no customer credentials")
    for c in found:
        state = f"revoked {c.revoked_at.isoformat()} by {c.revoked_by}" if c.revoked_at else "in use"
        click.echo(f"{c.id}  account {c.account_id}  issued {c.issued_at.isoformat()} by {c.issued_by}  {state}")


@customer_credential.command("revoke")
@click.argument("credential_id")
@ledger_option
@common
def credential_revoke(credential_id: str, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Revoke a credential: its next call to the customer API answers 401."""
    with open_ledger(database_url) as ledger:
        revoked = ledger.revoke_credential(credential_id, revoked_by=operator_id())
    if as_json:
        return emit({"ok": True, "credential": revoked.as_dict()})
    click.echo(f"revoked {revoked.id} (account {revoked.account_id})")
