"""What every run works from: the rules, the inventory, the account registry, the ledger and the stores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from retention.ledger import Ledger
from retention.registry import Registry, load_registry
from retention.rules import Account, RuleSet, load_ruleset
from retention.rules.inventory import LocationSpec, SystemsFile, load_inventory
from retention.settings import Settings
from retention.stores import Store, open_store


@dataclass(frozen=True)
class MassDeletionPolicy:
    """When a plan counts as a mass deletion of a location (settings: RETENTION_MASS_DELETION_*)."""

    share: float = 0.5  # more than this share of the location's records due in one run
    min_records: int = 1000  # locations with fewer records are not checked

    def applies(self, due: int, total: int) -> bool:
        return total >= self.min_records and total > 0 and due > self.share * total


@dataclass
class SweepContext:
    ruleset: RuleSet
    inventory: SystemsFile
    accounts: dict[str, Account]
    ledger: Ledger
    open_store: Callable[[str, LocationSpec], Store] = field(default=open_store)
    mass_deletion: MassDeletionPolicy = field(default_factory=MassDeletionPolicy)
    registry: Registry | None = None  # where ``accounts`` came from (None: handed in by a test or a bench)

    @classmethod
    def load(cls, settings: Settings, ledger: Ledger, *, account_id: str | None = None, **kwargs: Any) -> SweepContext:
        """The rules, the inventory and the registry the settings name. With ``account_id`` (a data subject request's
        steps), only that account's registry entry is read: ``accounts`` holds it alone, or nothing when its row is
        missing or refused."""
        ruleset = load_ruleset(settings.rules_dir)
        inventory = load_inventory(settings.systems_file, ruleset)
        registry = load_registry(settings, ruleset, account_id)  # customers' instructions checked against the rules
        kwargs.setdefault("mass_deletion", MassDeletionPolicy(settings.mass_deletion_share,
                                                              settings.mass_deletion_min_records))
        return cls(ruleset, inventory, registry.accounts, ledger, registry=registry, **kwargs)

    def store(self, location_id: str) -> Store:
        return self.open_store(location_id, self.inventory.locations[location_id])

    def record_registry(self, run_id: str, *, actor: str, session: Session | None = None,
                        account_id: str | None = None) -> None:
        """Keep in the run which registry it acted on (``registry.snapshot``: count, digest, refused rows; with
        ``account_id``, as an offboarding gives, that account's own entry digest too)."""
        if self.registry is not None:
            self.ledger.append("registry.snapshot", self.registry.snapshot(account_id), actor=actor, run_id=run_id,
                               session=session)

    def record_account_entry(self, run_id: str, account_id: str, *, actor: str, session: Session | None = None) -> None:
        """Keep in a data subject request's run the registry entry of the one account it acts on: a
        ``registry.snapshot`` scoped to that account (``Registry.only``), whether this context read the whole
        registry or that entry alone, so every request's run records the same thing."""
        if self.registry is not None:
            entry = self.registry.only(account_id)
            self.ledger.append("registry.snapshot", entry.snapshot(account_id), actor=actor, run_id=run_id,
                               session=session)
