"""`retention rules`: validate the rules files, explain what happens to an account's data and why."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from retention.cli.base import Failure, accounts_option, common, ledger_option, moment, open_ledger
from retention.cli.output import emit
from retention.rules import Account, Decision, RuleSet, load_ruleset, resolve

if TYPE_CHECKING:
    from retention.registry import Registry


@click.group()
def rules() -> None:
    """Validate and explain the retention rules."""


@rules.command("validate")
@common
def rules_validate(rules_dir: Path, as_json: bool) -> None:
    """Check every rules file; list every problem with file:line:column and field."""
    from retention.registry.config import load_config
    from retention.settings import Settings
    from retention.subprocessors.tasks import specs

    ruleset = load_ruleset(rules_dir)
    settings = Settings.from_env(rules_dir=rules_dir)
    connectors = specs(settings)  # retention_rules/subprocessors/*.yaml
    # registry.yaml's form only: reading the accounts is a run's job (it needs the application's database).
    registry = load_config(settings.registry_path).source.label if settings.registry_path.is_file() else None
    jurisdictions = sorted(ruleset.jurisdictions.jurisdictions)
    summary = {"ok": True, "rules_dir": str(rules_dir), "digest": ruleset.digest, "rules": len(ruleset.rules),
               "data_classes": len(ruleset.data_classes.data_classes),
               "processor_data_rules": len(ruleset.processor_rules),
               "processor_data_classes": len(ruleset.processor_data_classes),
               "jurisdictions": jurisdictions, "overrides": len(ruleset.overrides),
               "subprocessor_specs": sorted(connectors), "registry_source": registry}
    if as_json:
        return emit(summary)
    click.echo(f"{rules_dir}: valid — {summary['rules']} rules over {summary['data_classes']} data classes "
               f"(and {summary['processor_data_rules']} over {summary['processor_data_classes']} classes of the "
               "processor's own data), "
               f"{len(jurisdictions)} jurisdictions, {summary['overrides']} contract override(s), "
               f"{len(connectors)} subprocessor spec(s); digest {ruleset.digest[:12]}"
               + (f"; account registry from {registry}" if registry else ""))


@rules.command("explain")
@click.argument("account_id")
@click.argument("data_class", required=False)
@click.option("--at", "at_text", metavar="DATE", help="Decide as of this instant (ISO-8601; default now).")
@accounts_option
@ledger_option
@common
def rules_explain(account_id: str, data_class: str | None, at_text: str | None, accounts_file: Path | None,
                  database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Say what happens to ACCOUNT_ID's data (one DATA_CLASS, or all) and why."""
    at = moment(at_text)
    ruleset = load_ruleset(rules_dir)
    registry = configured_registry(rules_dir, accounts_file, ruleset)  # instructions checked against the rules
    account = registered(registry, account_id)
    classes = [data_class] if data_class else list(ruleset.data_classes.data_classes)
    with open_ledger(database_url) as ledger:
        holds = ledger.resolver_holds()
    decisions = [resolve(ruleset, account, name, at, holds) for name in classes]
    if as_json:
        return emit({"ok": True, "rules_digest": ruleset.digest, "decisions": [
            {**d.as_dict(), "rule_position": ruleset.rule_positions[d.rule_id]} for d in decisions]})
    election = f"; customer elected {account.election.choice.value} on {account.election.elected_at.to_date_string()}" \
        if account.election else ""
    click.echo(f"{account.id}: {account.state.value}, {account.jurisdiction}{election} — as of {at.isoformat()}")
    for decision in decisions:
        click.echo(explain_text(decision, ruleset))


class RegistryUnreadable(Failure):
    """The configured registry's source did not answer (its database or endpoint): exit 1."""


def configured_registry(rules_dir: Path, accounts_file: Path | None, ruleset: RuleSet) -> Registry:
    """The account registry as a run reads it: ``--accounts`` (or RETENTION_ACCOUNTS_FILE), else the source
    registry.yaml names. No registry configured is a usage error; one that cannot be read, a failure."""
    from retention.registry import load_registry
    from retention.rules import RulesError
    from retention.settings import Settings

    settings = Settings.from_env(rules_dir=rules_dir, accounts_file=accounts_file)
    if settings.accounts_file is None and not settings.registry_path.is_file():
        raise click.UsageError(f"no account registry: pass --accounts FILE, set RETENTION_ACCOUNTS_FILE, or name a "
                               f"source in {settings.registry_path}")
    try:
        return load_registry(settings, ruleset)
    except (RulesError, ValueError, click.ClickException):
        raise
    except Exception as exc:  # the application's database or endpoint: say which, not what it answered
        raise RegistryUnreadable(f"the account registry ({settings.registry_path}) could not be read: "
                      f"{type(exc).__name__}") from exc


def registered(registry: Registry, account_id: str) -> Account:
    """The account, or a failure saying it is not in the registry or its row was refused (and why)."""
    if account_id in registry.accounts:
        return registry.accounts[account_id]
    refused = [r for r in registry.rejected if r.account_id == account_id]
    if refused:
        raise Failure(f"account {account_id!r}: its row in {registry.source} was refused ("
                      + ", ".join(f"{r.reason} ({r.field})" for r in refused) + "); nothing of it is decided "
                      "until the row is fixed")
    raise Failure(f"account {account_id!r} is not in {registry.source}")


def explain_text(d: Decision, ruleset: RuleSet) -> str:
    rule = ruleset.rule(d.rule_id)
    action = d.action.value
    if d.action is not rule.action and d.election is not None:  # the customer's election changed the rule's action
        action += f" (rule: {rule.action.value}; customer elected {d.election.value})"
    period = f"{d.retain_for} from {d.anchor.value} — {period_source_text(d.period_source, d.override_id)}"
    if d.anchor.is_account_event:
        if d.anchor_time is None or d.due_at is None:
            due = f"not yet: the account has no {d.anchor.value}"
        else:
            due = f"{d.due_at.isoformat()} ({'due now' if d.is_due(d.anchor_time) else 'not yet due'})"
    else:
        due = f"records whose {d.anchor.value} is at or before {d.cutoff.isoformat()}"
    lines = [
        f"\n  {d.data_class}",
        f"    rule    {d.rule_id} ({ruleset.rule_positions[d.rule_id]})",
        f"    action  {action}" + ("; isolated until then" if d.isolate else ""),
        f"    period  {period}",
        f"    due     {due}",
        f"    basis   {d.basis.kind}: {d.basis.citation} — {d.basis.summary}",
        f"    holds   {', '.join(d.blocked_by) + ' — nothing is deleted while in force' if d.blocked_by else 'none'}",
    ]
    return "\n".join(lines)


def period_source_text(source: str, override_id: str | None = None) -> str:
    """Where a period comes from, in words: law, the contract, the customer's instruction or our default."""
    if source == "contract":
        return f"the contract (override {override_id})" if override_id else "the contract (quoted in the basis)"
    return {"law": "set by law (statute)",
            "customer's instruction": "the customer's instruction (account registry)",
            "processor's default": "the processor's default (processor policy; counsel to confirm)"}[source]


@rules.command("processor-data")
@click.option("--at", "at_text", metavar="DATE", help="Decide as of this instant (ISO-8601; default now).")
@common
def rules_processor_data(at_text: str | None, rules_dir: Path, as_json: bool) -> None:
    """The rules for the processor's own marketing data (website cookies, newsletter and survey contacts)."""
    from retention.rules.resolver import resolve_processor_data

    at = moment(at_text)
    ruleset = load_ruleset(rules_dir)
    decisions = [resolve_processor_data(ruleset, name, at) for name in ruleset.processor_data_classes]
    if as_json:
        return emit({"ok": True, "rules_digest": ruleset.digest, "decisions": [
            {**d.as_dict(), "rule_position": ruleset.rule_positions[d.rule_id]} for d in decisions]})
    click.echo(f"The processor's own data, held as controller — as of {at.isoformat()}. It belongs to no customer "
               "account: no customer's sweep, offboarding or certificate includes it, and systems.yaml has no "
               "location for it.")
    for d in decisions:
        click.echo("\n".join([
            f"\n  {d.data_class}",
            f"    rule    {d.rule_id} ({ruleset.rule_positions[d.rule_id]})",
            f"    action  {d.action.value}",
            f"    period  {d.retain_for} from {d.anchor.value} — {period_source_text(d.period_source)}",
            f"    due     records whose {d.anchor.value} is at or before {d.cutoff.isoformat()}",
            f"    basis   {d.basis.kind}: {d.basis.citation} — {' '.join(d.basis.summary.split())}",
        ]))
