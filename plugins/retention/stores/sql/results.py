"""What a SQL location reports: outcomes of destructive batches and residues of verification."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from retention.stores.base import Outcome, Residue


@dataclass(frozen=True)
class SqlOutcome(Outcome):
    """``affected`` counts rows of the location's table; ``children`` the rows removed from each child
    table first (``{table: rows}``), which are not records of this location and so not in ``affected``."""

    children: Mapping[str, int] = field(default_factory=dict, hash=False)
    seconds: float = field(default=0.0, compare=False)  # duration of the transaction

    @property
    def child_rows(self) -> int:
        return sum(self.children.values())


@dataclass(frozen=True)
class SqlResidue(Residue):
    """``remaining`` rows of the location's table still matching; ``children`` rows still pointing at them."""

    children: Mapping[str, int] = field(default_factory=dict, hash=False)
