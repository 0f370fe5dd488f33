"""Loading spec files: the schema, then the checks; every problem of every file at once, as RulesError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retention.rules.errors import Issue, RulesError
from retention.rules.loader import load_model
from retention.subprocessors.spec.checks import check, check_hosted
from retention.subprocessors.spec.connector import ConnectorSpec


def load_spec(path: Path | str, *, subprocessors: set[str] | None = None,
              data_classes: set[str] | None = None, inventory: Any = None) -> ConnectorSpec:
    """One spec file, validated and checked (placeholders, aiming, references; with ``inventory``, the
    systems.yaml it must agree with, a hosted spec's tenancy); RulesError otherwise."""
    spec, smap = load_model(Path(path), ConnectorSpec)
    issues = check(spec, smap, subprocessors=subprocessors, data_classes=data_classes)
    if inventory is not None:
        issues += [smap.issue(("hosted",), message, "systems.yaml and the spec must describe the same tenancy",
                              at_key=True, field_path="hosted") for message in check_hosted(spec, inventory)]
    if issues:
        raise RulesError(issues)
    return spec


def load_specs(directory: Path | str, *, subprocessors: set[str] | None = None,
               data_classes: set[str] | None = None, inventory: Any = None) -> dict[str, ConnectorSpec]:
    """Every ``*.yaml`` under the directory, keyed by subprocessor; all problems of all files at once."""
    specs: dict[str, ConnectorSpec] = {}
    issues: list[Issue] = []
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            spec = load_spec(path, subprocessors=subprocessors, data_classes=data_classes, inventory=inventory)
        except RulesError as exc:
            issues += exc.issues
            continue
        if spec.subprocessor in specs:
            issues.append(Issue(str(path), 1, 1, "subprocessor", f"a second spec for {spec.subprocessor!r}"))
        specs[spec.subprocessor] = spec
    if issues:
        raise RulesError(issues)
    return specs


