"""Load ``retention_rules/`` into a validated RuleSet, or refuse it whole with every problem listed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from retention.rules import consistency
from retention.rules.errors import Issue, RulesError
from retention.rules.model import (
    DataClass,
    DataClassesFile,
    JurisdictionsFile,
    Override,
    OverridesFile,
    ProcessorDataRule,
    Rule,
    RulesFile,
)
from retention.rules.schema_errors import issues_from
from retention.rules.yamlsource import Position, SourceMap, load_yaml

FILES = ("data_classes.yaml", "jurisdictions.yaml", "rules.yaml", "overrides.yaml")  # read by load_ruleset, digested

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RuleSet:
    """Everything the resolver needs, validated and cross-checked."""

    directory: Path
    data_classes: DataClassesFile
    jurisdictions: JurisdictionsFile
    rules: tuple[Rule, ...]  # customers' accounts' data: what sweeps, offboardings and certificates act on
    overrides: tuple[Override, ...]
    rule_positions: dict[str, str]  # rule id -> "rules.yaml:LINE", for explanations (processor rules too)
    digest: str  # sha256 over the files, recorded with every run so a decision can be reproduced

    # The processor's own (controller) marketing data: kept apart, so no customer's plan or certificate meets it.
    processor_data_classes: dict[str, DataClass] = field(default_factory=dict)
    processor_rules: tuple[ProcessorDataRule, ...] = ()

    def rule(self, rule_id: str) -> Rule:
        return next(r for r in self.rules if r.id == rule_id)


def load_ruleset(directory: Path | str) -> RuleSet:
    directory = Path(directory)
    issues: list[Issue] = []

    def read(filename: str, model: type[M]) -> tuple[M, SourceMap] | None:
        return _load_file(directory / filename, _display(directory / filename), model, issues)

    # Every file is read, even after one fails, so the error lists every problem at once.
    data_classes = read("data_classes.yaml", DataClassesFile)
    jurisdictions = read("jurisdictions.yaml", JurisdictionsFile)
    rules = read("rules.yaml", RulesFile)
    overrides = read("overrides.yaml", OverridesFile)
    if data_classes is None or jurisdictions is None or rules is None or overrides is None:
        raise RulesError(issues)  # a file that did not load has added its issues
    issues += consistency.check(data_classes, jurisdictions, rules, overrides)
    if issues:
        raise RulesError(issues)
    rules_file, rules_map = rules
    return RuleSet(
        directory=directory,
        data_classes=data_classes[0],
        jurisdictions=jurisdictions[0],
        rules=tuple(rules_file.rules),
        overrides=tuple(overrides[0].overrides),
        rule_positions={
            **{rule.id: f"{rules_map.file}:{rules_map.values.get(('rules', i), Position(1, 1)).line}"
               for i, rule in enumerate(rules_file.rules)},
            **{rule.id: f"{rules_map.file}:{rules_map.values.get(('processor_data_rules', i), Position(1, 1)).line}"
               for i, rule in enumerate(rules_file.processor_data_rules)},
        },
        digest=_digest(directory),
        processor_data_classes=dict(data_classes[0].processor_data),
        processor_rules=tuple(rules_file.processor_data_rules),
    )


def load_model(path: Path, model: type[M]) -> tuple[M, SourceMap]:
    """Load one YAML file against a schema; raise RulesError naming file:line:field on any problem."""
    issues: list[Issue] = []
    result = _load_file(path, _display(path), model, issues)
    if result is None or issues:
        raise RulesError(issues)
    return result


def _load_file(path: Path, name: str, model: type[M], issues: list[Issue]) -> tuple[M, SourceMap] | None:
    if not path.is_file():
        issues.append(Issue(name, 1, 1, "(file)", "file not found", f"create {path.name}; see README 'Rules format'"))
        return None
    data, smap, problems = load_yaml(path, name)
    issues += problems
    if data is None or problems:
        return None
    try:
        return model.model_validate(data), smap
    except ValidationError as exc:
        issues += _dedupe(issues_from(exc, model, smap))
        return None


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen: dict[tuple[int, int, str], Issue] = {}
    for issue in issues:
        seen.setdefault((issue.line, issue.column, issue.field), issue)
    return list(seen.values())


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _digest(directory: Path) -> str:
    sha = hashlib.sha256()
    for filename in FILES:
        sha.update(filename.encode() + b"\0" + (directory / filename).read_bytes() + b"\0")
    return sha.hexdigest()
