"""The package's layers (docs/architecture.md): a module imports only from its own layer or the layers below.

Read from the source with ``ast``, every import counted, those inside functions too (a deferred import is
still a dependency); only imports under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "retention"

# Bottom to top. A unit is a subpackage or a top-level module of retention.
LAYERS: list[set[str]] = [
    {"ids", "masking", "failfast", "signing_keys", "links", "permissions"},
    {"settings", "rules", "identifier_hashes"},
    {"ledger", "stores", "backups", "registry"},
    {"engine", "subprocessors"},
    {"certificates"},
    {"offboarding", "requests"},
    {"api", "cli", "dagkit", "demo", "demo_people", "demo_outcome", "demo_requests", "embedded", "triggered"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def runtime_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import of retention.* that runs (not under ``if TYPE_CHECKING:``)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped.update(id(child) for statement in node.body for child in ast.walk(statement))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, module) for line, module in found if module.split(".")[0] == "retention"]


def modules() -> list[Path]:
    """Every module of the package but its own __init__ and the ledger's Alembic migrations."""
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts and p != PACKAGE / "__init__.py"]


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(p) for p in modules()}
    assert units <= set(RANK), f"give these a layer in LAYERS: {sorted(units - set(RANK))}"


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = []
    for path in modules():
        unit = unit_of(path)
        for line, module in runtime_imports(ast.parse(path.read_text(), str(path))):
            target = module.split(".")[1] if module.count(".") else None
            if target is None or target == unit:
                continue
            if RANK.get(target, -1) > RANK[unit]:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} ({unit}, layer {RANK[unit]}) imports {module} "
                              f"(layer {RANK[target]})")
    assert not upward, "imports running up the layers:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path) -> None:
    """The scan is not vacuous: a rules module importing the engine is reported."""
    tree = ast.parse("from retention.engine.planner import plan_sweep\n")
    assert runtime_imports(tree) == [(1, "retention.engine.planner")]
    assert RANK["engine"] > RANK["rules"]
    guarded = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from retention.engine import x\n")
    assert runtime_imports(guarded) == []
