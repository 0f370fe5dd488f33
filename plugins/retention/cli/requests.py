"""`retention request`: file, run, show and list data subject requests, and erase the identifiers of closed ones.

Identifiers are personal data: ``file`` takes them and never prints them back; every other command shows only
counts per kind (the ledger holds them as keyed hashes, and in clear only while the request needs them)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from retention.cli.base import Failure, accounts_option, common, ledger_option, operator_id
from retention.cli.output import emit, logs_to_stderr
from retention.rules.subjects import REGIMES

if TYPE_CHECKING:
    from retention.ledger.models import SubjectRequestRow
    from retention.settings import Settings


@click.group("request")
def request() -> None:
    """Data subject requests: find, export or erase one person's data in one customer account."""


@request.command("file")
@click.option("--account", "account_id", required=True, help="The customer account the person's data is in.")
@click.option("--type", "request_type", type=click.Choice(["access", "erasure"]), required=True)
@click.option("--email", "emails", multiple=True, help="An e-mail address of the person (repeat).")
@click.option("--phone", "phones", multiple=True, help="A phone number, international form (repeat).")
@click.option("--visitor-id", "visitor_ids", multiple=True, help="A visitor (cookie) id (repeat).")
@click.option("--user-id", "user_ids", multiple=True, help="An application user id (repeat).")
@click.option("--reference", required=True, help="The customer's reference (ticket) for the request.")
@click.option("--received-on", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="The day the customer received the request (YYYY-MM-DD): its legal deadline counts from it.")
@click.option("--regime", type=click.Choice(REGIMES), help="Default: from the account's jurisdiction.")
@click.option("--recipient", help="For access: the customer's age public key (age1...) the package is encrypted to.")
@accounts_option
@ledger_option
@common
def request_file(account_id: str, request_type: str, emails: tuple[str, ...], phones: tuple[str, ...],
                 visitor_ids: tuple[str, ...], user_ids: tuple[str, ...], reference: str, received_on: Any,
                 regime: str | None, recipient: str | None, accounts_file: Path | None, database_url: str | None,
                 rules_dir: Path, as_json: bool) -> None:
    """File a request on the customer's instruction; prints its id and legal deadline (never the identifiers)."""
    from retention.ledger import Ledger
    from retention.registry import load_registry
    from retention.requests.filing import file_request
    from retention.requests.request import parse_subject_request
    from retention.rules import load_ruleset

    given = (("email", emails), ("phone", phones), ("visitor_id", visitor_ids), ("user_id", user_ids))
    identifiers = {kind: list(values) for kind, values in given if values}
    spec = parse_subject_request({"account_id": account_id, "request_type": request_type, "identifiers": identifiers,
                                  "reference": reference, "received_on": _day(received_on), "regime": regime,
                                  "recipient": recipient}, where="--")
    settings = _settings(rules_dir, accounts_file, database_url)
    with Ledger.open(settings.database_url) as ledger:
        registry = load_registry(settings, load_ruleset(settings.rules_dir), spec.account_id)  # its entry alone
        request_id = file_request(ledger, settings, registry, spec, filed_by=operator_id())
        row = ledger.subject_request(request_id)
    if as_json:
        return emit({"ok": True, "request": _summary(row)})
    click.echo(f"filed {row.request_type} request {row.id} for {row.account_id} ({spec.subject.size} identifier(s), "
               f"{row.regime.upper()}): answer the data subject by {_when(row.deadline_at)}")
    click.echo(f"next: retention request run {row.id}")


@request.command("run")
@click.argument("request_id")
@click.option("--subprocessor", "subprocessors", multiple=True,
              help="Ask only this subprocessor (repeat; default every spec).")
@click.option("--no-subprocessors", is_flag=True,
              help="Ask no subprocessor (only when none holds the account's data: the result says none was asked).")
@click.option("--recipient", help="For access: the customer's age public key (age1...) the package is encrypted to "
                                  "(default: the one the request was filed with).")
@accounts_option
@ledger_option
@common
def request_run(request_id: str, subprocessors: tuple[str, ...], no_subprocessors: bool, recipient: str | None,
                accounts_file: Path | None, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Carry a request out as the subject_request DAG does: expand, preview, delete (or export), verify, ask the
    subprocessors, close, certify. A request that needs a second person's approval stops after its preview."""
    logs_to_stderr()
    from retention.engine import SweepContext
    from retention.ledger import Ledger
    from retention.requests.runner import run_request

    if subprocessors and no_subprocessors:
        raise click.UsageError("give --subprocessor or --no-subprocessors, not both")
    settings = _settings(rules_dir, accounts_file, database_url)
    chosen = [] if no_subprocessors else list(subprocessors) or None
    with Ledger.open(settings.database_url) as ledger:
        account_id = ledger.subject_request(request_id).account_id  # a request reads its account's entry alone
        done = run_request(SweepContext.load(settings, ledger, account_id=account_id), settings, request_id,
                           subprocessors=chosen, recipient=recipient, actor=operator_id())
    if as_json:
        emit({"ok": done["status"] not in ("failed",), **done})
    else:
        click.echo(render_run(done, settings))
    if done["status"] == "failed":
        raise Failure(f"subject request {request_id} failed: see `retention request show {request_id}`",
                      {"ok": False, **done})


@request.command("show")
@click.argument("request_id")
@ledger_option
@common
def request_show(request_id: str, database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Where a request stands: its deadline, status, what its preview found and how it closed (no identifier)."""
    from retention.ledger import Ledger

    with Ledger.open(_settings(rules_dir, None, database_url).database_url) as ledger:
        row = ledger.subject_request(request_id)
        preview = ledger.run_events(row.run_id, "subject.previewed") if row.run_id else []
        tasks = ledger.tasks(row.run_id) if row.run_id else []
    document = {**_summary(row), "preview": preview[-1].payload if preview else None,
                "tasks": [{"location": t.location, "action": t.action, "status": t.status, "found": t.total_count,
                           "affected": t.affected_count, "why_kept": t.skip_reason} for t in tasks]}
    if as_json:
        return emit({"ok": True, "request": document})
    click.echo(_headline(row))
    for t in document["tasks"]:
        why = f"  ({t['why_kept']})" if t["why_kept"] else ""
        click.echo(f"  {t['location']:20} {t['action']:9} {t['status']:9} found {t['found'] or 0:>6,}  "
                   f"affected {t['affected']:>6,}{why}")


@request.command("list")
@click.option("--account", "account_id", help="Only this account's requests.")
@click.option("--open", "open_only", is_flag=True, help="Only requests not closed yet.")
@ledger_option
@common
def request_list(account_id: str | None, open_only: bool, database_url: str | None, rules_dir: Path,
                 as_json: bool) -> None:
    """Requests, newest first: id, account, type, status and legal deadline."""
    from retention.ledger import Ledger

    with Ledger.open(_settings(rules_dir, None, database_url).database_url) as ledger:
        rows = ledger.subject_requests(account_id=account_id, open_only=open_only)
    if as_json:
        return emit({"ok": True, "requests": [_summary(row) for row in rows]})
    if not rows:
        click.echo("no subject requests" + (" open" if open_only else ""))
    for row in rows:
        click.echo(_headline(row))


@request.command("erase-identifiers")
@ledger_option
@common
def request_erase_identifiers(database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Erase now the identifiers of every request closed longer ago than RETENTION_SUBJECT_APPEAL_DAYS (their keyed
    hashes stay in the ledger), as the daily housekeeping does."""
    import pendulum

    from retention.ledger import Ledger
    from retention.requests.housekeeping import erase_closed_identifiers

    settings = _settings(rules_dir, None, database_url)
    with Ledger.open(settings.database_url) as ledger:
        erased = erase_closed_identifiers(ledger, settings, pendulum.now("UTC"), actor=operator_id())
    if as_json:
        return emit({"ok": True, "erased": erased})
    click.echo(f"erased the identifiers of {len(erased)} request(s) closed more than {settings.subject_appeal_days} "
               f"day(s) ago" + "".join(f"\n  {request_id}" for request_id in erased))


def render_run(done: dict[str, Any], settings: Settings) -> str:
    """What a run did, in plain words: found, deleted, anonymized, kept and why, subprocessors, the outcome."""
    preview, expansion = done["preview"], done["expansion"]
    lines = [f"{preview['request_type']} request {done['request_id']} of {preview['account_id']} (deadline "
             f"{preview['deadline_at'][:10]})",
             f"identifiers: {expansion['given']} given, {expansion['expanded']} after expansion"
             + (" (expansion bounded: a person must check it)" if expansion["bounded"] else ""),
             f"found {preview['total']:,} record(s) of this person"]
    executed = done.get("executed", {})
    for line in preview["locations"]:
        if not line["matched"]:
            continue
        action = line["action"]
        if action == "keep":
            what = f"kept {line['matched']:,}: {line['basis']}"
        elif action == "export":
            what = f"{line['matched']:,} to export"
        else:
            verb = "deleted" if action == "delete" else "anonymized"
            what = f"{verb} {executed.get(line['location'], 0):,} of {line['matched']:,}"
        lines.append(f"  {line['location']:20} {what}")
    for provider in preview["at_subprocessors"]:
        outcome = done.get("subprocessors", {}).get(provider["subprocessor"])
        found = "not searchable by person" if provider["matched"] is None else f"{provider['matched']:,} found"
        lines.append(f"  {provider['subprocessor']:20} {provider['scope']}: {found}"
                     + (f", {outcome}" if outcome else ""))
    if not preview["at_subprocessors"]:
        lines.append("  no subprocessor was asked")
    if done["needs_approval"]:
        lines.append(f"needs a second person's approval ({preview['total']:,} records; RETENTION_SUBJECT_APPROVAL_"
                     f"RECORDS is {settings.subject_approval_records:,}): trigger the subject_request DAG with "
                     f'{{"request_id": "{done["request_id"]}"}} and have another person approve it under Required '
                     "Actions; nothing was deleted")
        return "\n".join(lines)
    lines.append(f"request {done['request_id']} {done['status'].replace('_', ' ')}")
    certificate = done.get("certificate")
    if certificate:
        lines.append(f"certificate {certificate['certificate_id']}: {certificate['pdf']}")
    package = done.get("package")
    if package:
        lines.append(f"package {package['package_id']}: {package['files']} file(s), {package['records']:,} record(s),"
                     f" link expires {package['expires_at']}")
    return "\n".join(lines)


def _settings(rules_dir: Path, accounts_file: Path | None, database_url: str | None) -> Settings:
    from retention.settings import Settings

    return Settings.from_env(rules_dir=rules_dir, accounts_file=accounts_file, database_url=database_url)


def _day(value: Any) -> str:
    return (value.date() if hasattr(value, "date") else date.fromisoformat(str(value))).isoformat()


def _when(moment: Any) -> str:
    return f"{moment.strftime('%Y-%m-%d %H:%M')} UTC"


def _summary(row: SubjectRequestRow) -> dict[str, Any]:
    identifiers = (row.identifiers or {}).get("expanded") or (row.identifiers or {}).get("given")
    return {"request_id": row.id, "account_id": row.account_id, "request_type": row.request_type,
            "regime": row.regime, "status": row.status, "received_at": row.received_at.isoformat(),
            "deadline_at": row.deadline_at.isoformat(), "filed_by": row.filed_by, "filed_at": row.filed_at.isoformat(),
            "run_id": row.run_id, "closed_at": row.closed_at.isoformat() if row.closed_at else None,
            "identifiers": {kind: len(values) for kind, values in identifiers.items()} if identifiers else None,
            "identifiers_erased_at": row.identifiers_erased_at.isoformat() if row.identifiers_erased_at else None}


def _headline(row: SubjectRequestRow) -> str:
    erased = " (identifiers erased)" if row.identifiers is None else ""
    return (f"{row.id}  {row.account_id:10} {row.request_type:8} {row.status:17} deadline {_when(row.deadline_at)}"
            f"{erased}")
