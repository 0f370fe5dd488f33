"""Checks across the rules files: references resolve, rules neither overlap nor leave gaps.

A gap (a data class x account state x jurisdiction with no rule) would leave the engine without a
decision, and an overlap would make the decision depend on file order; both are refused.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import TYPE_CHECKING, TypeVar

from retention.rules.durations import IsoDuration
from retention.rules.errors import Issue
from retention.rules.model import (
    AccountState,
    Action,
    DataClassesFile,
    JurisdictionsFile,
    OverrideBounds,
    OverridesFile,
    Rule,
    RulesFile,
)
from retention.rules.yamlsource import Path_, SourceMap

if TYPE_CHECKING:  # the loader builds a RuleSet after running these checks, so it imports this module
    from retention.rules.loader import RuleSet

M = TypeVar("M")
Parsed = tuple[M, SourceMap]  # a validated file and where each of its fields stands


def check(data_classes: Parsed[DataClassesFile], jurisdictions: Parsed[JurisdictionsFile], rules: Parsed[RulesFile],
          overrides: Parsed[OverridesFile]) -> list[Issue]:
    classes, classes_map = data_classes
    juris, _ = jurisdictions
    rules_file, rules_map = rules
    overrides_file, overrides_map = overrides
    return [
        *_check_data_classes(classes, classes_map),
        *_check_rule_references(rules_file, rules_map, classes, juris),
        *_check_coverage(rules_file, rules_map, classes, classes_map, juris),
        *_check_processor_rules(rules_file, rules_map, classes, classes_map),
        *_check_overrides(overrides_file, overrides_map, rules_file, classes),
    ]


def _unknown(kind: str, value: str, known: list[str]) -> tuple[str, str]:
    close = difflib.get_close_matches(value, known, n=1)
    hint = (f"did you mean {close[0]!r}? " if close else "") + f"known: {', '.join(sorted(known))}"
    return f"unknown {kind} {value!r}", hint


def _check_data_classes(classes: DataClassesFile, smap: SourceMap) -> list[Issue]:
    issues: list[Issue] = []
    sections = (("data_classes", classes.data_classes), ("processor_data", classes.processor_data))
    for section, members in sections:
        for name, dc in members.items():
            if dc.ccpa_category and dc.ccpa_category not in classes.ccpa_categories:
                issues.append(smap.issue((section, name, "ccpa_category"),
                                         *_unknown("CCPA category", dc.ccpa_category, list(classes.ccpa_categories))))
            for i, sub in enumerate(dc.subprocessors):
                if sub not in classes.subprocessors:
                    issues.append(smap.issue((section, name, "subprocessors", i),
                                             *_unknown("subprocessor", sub, list(classes.subprocessors))))
    for name, dc in classes.data_classes.items():
        if dc.is_processor_data:
            issues.append(smap.issue(("data_classes", name, "owner"), "the processor's own data is filed among "
                                     "customers' accounts' data, where sweeps, offboardings and certificates would "
                                     "treat it as a customer's", f"move {name} under processor_data:"))
    for name, dc in classes.processor_data.items():
        if not dc.is_processor_data:
            issues.append(smap.issue(("processor_data", name, "owner"), "a processor_data class must say it is the "
                                     "processor's own", "add 'owner: processor', or move it under data_classes: if "
                                     "it is held for a customer's account"))
        if name in classes.data_classes:
            issues.append(smap.issue(("processor_data", name), f"{name!r} is also a customer account's data class",
                                     "one name, one owner: rename one of them", at_key=True))
    return issues


def _check_rule_references(rules_file: RulesFile, smap: SourceMap, classes: DataClassesFile,
                           juris: JurisdictionsFile) -> list[Issue]:
    issues: list[Issue] = []
    first_index: dict[str, int] = {}
    for i, rule in enumerate(rules_file.rules):
        at: Path_ = ("rules", i)
        if rule.id in first_index:
            issues.append(smap.issue(at + ("id",), f"duplicate rule id {rule.id!r} (first at line "
                                     f"{smap.values[('rules', first_index[rule.id])].line})",
                                     "rule ids must be unique"))
        first_index.setdefault(rule.id, i)
        data_class = classes.data_classes.get(rule.data_class)
        if data_class is None and rule.data_class in classes.processor_data:
            issues.append(smap.issue(at + ("data_class",), f"{rule.data_class!r} is the processor's own data, which "
                                     "belongs to no customer account and has no account state",
                                     "write its rule under processor_data_rules: (no account_states)"))
        elif data_class is None:
            issues.append(smap.issue(at + ("data_class",),
                                     *_unknown("data class", rule.data_class, list(classes.data_classes))))
        elif not rule.anchor.is_account_event and rule.anchor.value not in data_class.record_timestamps:
            issues.append(smap.issue(at + ("anchor",), f"records of {rule.data_class!r} have no {rule.anchor.value!r}",
                                     f"use one of {', '.join(data_class.record_timestamps)}, terminated_at or "
                                     "contract_end"))
        for j, code in enumerate(rule.jurisdictions or []):
            if code not in juris.jurisdictions:
                issues.append(smap.issue(at + ("jurisdictions", j),
                                         *_unknown("jurisdiction", code, list(juris.jurisdictions))))
        issues += _check_rule_semantics(rule, at, smap)
    return issues


def _check_rule_semantics(rule: Rule, at: Path_, smap: SourceMap) -> list[Issue]:
    issues: list[Issue] = []
    if rule.action is Action.RETURN_THEN_DELETE and set(rule.account_states) != {AccountState.TERMINATED}:
        issues.append(smap.issue(at + ("action",), "return_then_delete applies only to terminated accounts",
                                 "limit account_states to [terminated]; the customer elects return or delete at "
                                 "termination (DPA 7(b))"))
    if rule.action is Action.RETAIN_ISOLATED and rule.basis.kind != "statute":
        issues.append(smap.issue(at + ("basis", "kind"), "retain_isolated needs a statutory basis",
                                 "DPA 7(b) allows keeping data only where law requires it: cite the law, "
                                 "kind: statute"))
    bounds = rule.override_bounds
    if bounds is not None:
        if bounds.min.nominal_seconds > bounds.max.nominal_seconds:
            issues.append(smap.issue(at + ("override_bounds",), f"min {bounds.min} is longer than max {bounds.max}"))
        elif not bounds.min.nominal_seconds <= rule.retain_for.nominal_seconds <= bounds.max.nominal_seconds:
            issues.append(smap.issue(at + ("retain_for",), f"{rule.retain_for} lies outside override_bounds "
                                     f"[{bounds.min}, {bounds.max}]", "the default period must itself be allowed"))
    return issues


def _check_coverage(rules_file: RulesFile, smap: SourceMap, classes: DataClassesFile, classes_map: SourceMap,
                    juris: JurisdictionsFile) -> list[Issue]:
    issues: list[Issue] = []
    reported: set[tuple[int, int]] = set()
    indexed = list(enumerate(rules_file.rules))
    for name in classes.data_classes:
        missing: list[str] = []
        for state in AccountState:
            for code in juris.jurisdictions:
                matching = [(i, r) for i, r in indexed
                            if r.data_class == name and state in r.account_states
                            and (r.jurisdictions is None or code in r.jurisdictions)]
                specific = [m for m in matching if m[1].jurisdictions is not None]
                tier = specific or matching
                if not tier:
                    missing.append(f"{state.value}/{code}")
                for (i, a), (j, b) in combinations(tier, 2):
                    if (i, j) not in reported:
                        reported.add((i, j))
                        issues.append(_overlap(smap, i, a, j, b, state.value, code))
        if missing:
            issues.append(classes_map.issue(
                ("data_classes", name), f"no rule decides {len(missing)} account state/jurisdiction case(s): "
                + ", ".join(missing), f"add a rule in rules.yaml with data_class: {name} covering them",
                at_key=True))
    return issues


def _check_processor_rules(rules_file: RulesFile, smap: SourceMap, classes: DataClassesFile,
                           classes_map: SourceMap) -> list[Issue]:
    """The processor's own data: exactly one rule per class, on a timestamp its records have."""
    issues: list[Issue] = []
    account_rule_ids = {rule.id for rule in rules_file.rules}
    deciding: dict[str, int] = {}
    for i, rule in enumerate(rules_file.processor_data_rules):
        at: Path_ = ("processor_data_rules", i)
        if rule.id in account_rule_ids or any(r.id == rule.id for r in rules_file.processor_data_rules[:i]):
            issues.append(smap.issue(at + ("id",), f"duplicate rule id {rule.id!r}", "rule ids must be unique"))
        data_class = classes.processor_data.get(rule.data_class)
        if data_class is None:
            if rule.data_class in classes.data_classes:
                issues.append(smap.issue(at + ("data_class",), f"{rule.data_class!r} is a customer account's data "
                                         "class, not the processor's own", "write its rules under rules:"))
            else:
                issues.append(smap.issue(at + ("data_class",), *_unknown("processor data class", rule.data_class,
                                                                         list(classes.processor_data))))
            continue
        if rule.anchor.value not in data_class.record_timestamps:
            issues.append(smap.issue(at + ("anchor",), f"records of {rule.data_class!r} have no {rule.anchor.value!r}",
                                     f"use one of {', '.join(data_class.record_timestamps)}"))
        if rule.data_class in deciding:
            issues.append(smap.issue(at, f"a second rule for {rule.data_class} (first at line "
                                     f"{smap.values[('processor_data_rules', deciding[rule.data_class])].line})",
                                     "exactly one rule decides each processor data class",
                                     field_path=f"processor_data_rules[{i}]"))
        deciding.setdefault(rule.data_class, i)
    for name in classes.processor_data:
        if name not in deciding:
            issues.append(classes_map.issue(("processor_data", name),
                                            f"no rule decides the processor data class {name!r}",
                                            f"add a rule under processor_data_rules: with data_class: {name}",
                                            at_key=True))
    return issues


def _overlap(smap: SourceMap, i: int, a: Rule, j: int, b: Rule, state: str, code: str) -> Issue:
    verdict = "with a different outcome" if a.outcome() != b.outcome() else "(a duplicate)"
    return smap.issue(
        ("rules", j), f"rule {b.id!r} overlaps rule {a.id!r} (line {smap.values[('rules', i)].line}) "
        f"for {a.data_class} / {state} / {code} {verdict}",
        "narrow account_states or jurisdictions so exactly one rule decides each case",
        field_path=f"rules[{j}]")


def _check_overrides(overrides_file: OverridesFile, smap: SourceMap, rules_file: RulesFile,
                     classes: DataClassesFile) -> list[Issue]:
    issues: list[Issue] = []
    seen: dict[tuple[str, str], str] = {}
    for i, override in enumerate(overrides_file.overrides):
        at: Path_ = ("overrides", i)
        if override.data_class not in classes.data_classes:
            issues.append(smap.issue(at + ("data_class",),
                                     *_unknown("data class", override.data_class, list(classes.data_classes))))
            continue
        key = (override.account_id, override.data_class)
        if key in seen:
            issues.append(smap.issue(at, f"a second override for {key[0]} / {key[1]} (first: {seen[key]!r})",
                                     "one override per account and data class", field_path=f"overrides[{i}]"))
        seen.setdefault(key, override.id)
        bounded = _bounded_rules(rules_file.rules, override.data_class)
        if not bounded:
            issues.append(smap.issue(at + ("data_class",), f"no rule for {override.data_class!r} allows overrides",
                                     "add override_bounds to the rule whose period the contract may change"))
        for rule, bounds in bounded:
            low, high = bounds.min, bounds.max
            if not low.nominal_seconds <= override.retain_for.nominal_seconds <= high.nominal_seconds:
                issues.append(smap.issue(at + ("retain_for",), f"{override.retain_for} is outside rule {rule.id!r}'s "
                                         f"bounds [{low}, {high}]",
                                         "a contract may only move the period within the rule's bounds"))
    return issues


def _bounded_rules(rules: Iterable[Rule], data_class: str) -> list[tuple[Rule, OverrideBounds]]:
    """The rules of ``data_class`` that let a contract or a customer's instruction move the period, with
    their bounds."""
    return [(rule, rule.override_bounds) for rule in rules
            if rule.data_class == data_class and rule.override_bounds is not None]


def check_instructions(at: Path_, instructions: Mapping[str, IsoDuration], smap: SourceMap,
                       ruleset: RuleSet) -> list[Issue]:
    """A customer's instructions for one account (the account registry): each names a data class of a
    customer's account whose rule lets the period move, and lies within that rule's bounds."""
    return [smap.issue(at + (name,), message, hint, at_key=unknown)
            for name, unknown, message, hint in instruction_problems(instructions, ruleset)]


def instruction_problems(instructions: Mapping[str, IsoDuration],
                         ruleset: RuleSet) -> list[tuple[str, bool, str, str]]:
    """(data class, is the class unknown, message, hint) for every instruction the rules do not allow."""
    problems: list[tuple[str, bool, str, str]] = []
    classes = ruleset.data_classes.data_classes
    for name, period in instructions.items():
        if name not in classes:
            problems.append((name, True, *_unknown("data class", name, list(classes))))
            continue
        bounded = _bounded_rules(ruleset.rules, name)
        if not bounded:
            problems.append((name, False, f"no rule for {name!r} allows an instruction to change its period",
                             "its periods are set by law or fixed by the processor; remove the instruction "
                             "or add override_bounds to the rule"))
        for rule, bounds in bounded:
            low, high = bounds.min, bounds.max
            if not low.nominal_seconds <= period.nominal_seconds <= high.nominal_seconds:
                problems.append((name, False, f"{period} is outside rule {rule.id!r}'s bounds [{low}, {high}]",
                                 "an instruction may only move the period within the rule's bounds"))
    return problems
