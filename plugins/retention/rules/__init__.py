"""Rules as code: load and validate ``retention_rules/``, resolve a Decision. Pure, no I/O but the files."""

from retention.rules.accounts import Account, load_accounts, parse_utc
from retention.rules.errors import Issue, RulesError
from retention.rules.loader import RuleSet, load_ruleset
from retention.rules.model import AccountState, Action, Anchor, Election
from retention.rules.resolver import Decision, LegalHold, ResolutionError, resolve

__all__ = [
    "Account", "AccountState", "Action", "Anchor", "Decision", "Election", "Issue", "LegalHold",
    "ResolutionError", "RuleSet", "RulesError", "load_accounts", "load_ruleset", "parse_utc", "resolve",
]
