"""Batch sizing: rows per batch, adapted to how long each destructive transaction took."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BatchSizer:
    """Rows per batch, adapted to the measured duration of each destructive transaction.

    After each batch the size is scaled by ``target / duration`` (how far the batch was from the
    target), the factor clamped to [``shrink``, ``grow``] so one noisy measurement cannot swing it far,
    and the size clamped to [``minimum``, ``maximum``]. A batch that took a quarter of the target or
    less is followed by one at most four times larger, predicted to take at most the target: a fast
    database reaches ~0.25 s batches in a few steps. One that took longer than the target is followed
    by a proportionally smaller one (at most down to a quarter per step): a 1 s transaction is
    followed by ~0.25 s ones. Within [0.8, 1.25] of the target the size is left alone rather than
    chase noise, and a short tail batch (fewer than half the rows planned, and fast) teaches nothing.
    """

    target_seconds: float = 0.25
    initial: int = 5_000
    minimum: int = 100
    maximum: int = 1_000_000
    grow: float = 4.0
    shrink: float = 0.25
    size: int = 0
    history: list[tuple[int, int, float]] = field(default_factory=list)  # (planned size, rows, seconds)

    def __post_init__(self) -> None:
        if not (0 < self.minimum <= self.initial <= self.maximum):
            raise ValueError("batch sizes must satisfy 0 < minimum <= initial <= maximum")
        if self.target_seconds <= 0:
            raise ValueError("target_seconds must be positive")
        self.size = self.size or self.initial

    def observe(self, planned: int, rows: int, seconds: float) -> None:
        """Record one destructive transaction over a batch planned at ``planned`` rows."""
        self.history.append((planned, rows, seconds))
        if rows < planned // 2 and seconds < self.target_seconds:
            return  # a short tail batch (or a rerun with nothing left) says little about the rate
        factor = min(self.grow, max(self.shrink, self.target_seconds / max(seconds, 1e-6)))
        if 0.8 <= factor <= 1.25:
            return  # close enough: keep the size steady rather than chase noise
        base = max(1, min(rows, planned))
        self.size = int(min(self.maximum, max(self.minimum, base * factor)))
