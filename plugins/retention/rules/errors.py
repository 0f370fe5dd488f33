"""Validation problems a person can act on: what, where (file:line:column and field path), what to do."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Issue:
    file: str
    line: int
    column: int
    field: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.field}: {self.message}"
        return f"{text}\n    hint: {self.hint}" if self.hint else text

    def as_dict(self) -> dict[str, str | int]:
        return asdict(self)


class RulesError(Exception):
    """A rule set (or accounts file) that must not be used: every problem found, not just the first."""

    def __init__(self, issues: list[Issue]):
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.column, i.field))
        super().__init__(
            f"{len(self.issues)} problem(s); nothing was run:\n" + "\n".join(map(str, self.issues))
        )
