"""`make demo`: the product end to end on embedded defaults, as far as it exists today.

Validates the shipped rules, places a legal hold, explains what happens to every demo customer's data
and why, and verifies the ledger. Everything it writes lives under $RETENTION_HOME (var/demo).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pendulum

from retention.ledger import Ledger, database_url
from retention.rules import RulesError, load_accounts, load_ruleset, resolve

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "retention_rules"
ACCOUNTS_FILE = REPO / "demo" / "accounts.yaml"


def main() -> int:
    home = Path(os.environ.setdefault("RETENTION_HOME", str(REPO / "var" / "demo")))
    home.mkdir(parents=True, exist_ok=True)
    (home / "ledger.db").unlink(missing_ok=True)  # each demo run starts from an empty ledger
    now = pendulum.now("UTC").start_of("second")

    section("1. Rules")
    try:
        ruleset = load_ruleset(RULES_DIR)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    accounts = load_accounts(ACCOUNTS_FILE, set(ruleset.jurisdictions.jurisdictions))
    print(f"{RULES_DIR.relative_to(REPO)}/ is valid: {len(ruleset.rules)} rules, "
          f"{len(ruleset.data_classes.data_classes)} data classes, {len(ruleset.jurisdictions.jurisdictions)} "
          f"jurisdictions, {len(ruleset.overrides)} contract override(s). Digest {ruleset.digest[:12]}.")

    section("2. A legal hold")
    with Ledger.open() as ledger:
        held = ledger.place_hold(account_id="acct_3003", data_class=None, reason="Demo: litigation hold",
                                 reference="LEGAL-0042", placed_by="demo.counsel")
        holds = ledger.resolver_holds()
    print(f"Placed {held.id} on every data class of acct_3003 (reference LEGAL-0042).")

    section(f"3. What happens to each customer's data, as of {now.to_datetime_string()} UTC")
    for account in accounts.values():
        election = f", elected {account.election.choice.value}" if account.election else ""
        print(f"\n{account.id}  {account.state.value}, {account.jurisdiction}{election}")
        print(f"  {'data class':18} {'action':19} {'period':26} {'deletes data from before':26} rule")
        for data_class in ruleset.data_classes.data_classes:
            print("  " + row(resolve(ruleset, account, data_class, now, holds)))

    section("4. Ledger")
    with Ledger.open() as ledger:
        result = ledger.verify()
    print(f"{result.events_checked} event(s), hash chain {'intact' if result.ok else 'BROKEN: ' + result.reason}.")
    print(f"\nResults: ledger at {database_url()}")
    print("Explain one decision in full:  .venv/bin/retention rules explain acct_4004 billing_records "
          "--accounts demo/accounts.yaml")
    return 0 if result.ok else 1


def row(decision) -> str:
    period = f"{decision.retain_for} from {decision.anchor.value}"
    if decision.blocked_by:
        when = "nothing: held " + ",".join(decision.blocked_by)
    elif decision.anchor.is_account_event:
        when = "all of it (due now)" if decision.is_due(decision.anchor_time) else \
            f"nothing until {decision.due_at.to_date_string()}" if decision.due_at else "nothing yet"
    else:
        when = decision.cutoff.to_datetime_string()
    action = decision.action.value + (" *" if decision.override_id else "")
    return f"{decision.data_class:18} {action:19} {period:26} {when:26} {decision.rule_id}"


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 76 - len(title)))


if __name__ == "__main__":
    sys.exit(main())
