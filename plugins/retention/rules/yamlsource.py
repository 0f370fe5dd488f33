"""Read a YAML file into plain Python values while remembering where every key and value stands.

Validation messages must name file, line and column, so the loader keeps a map from each field path
(``("rules", 3, "retain_for")``) to its position. It is also stricter than YAML 1.1 in two ways that
matter for compliance files: a duplicated key is an error instead of silently overwriting, and only
``true``/``false`` are booleans and dates stay strings (``NO`` is Norway, not False; a timestamp
without a timezone must be refused by the schema, not guessed by the parser).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from retention.rules.errors import Issue

Path_ = tuple[str | int, ...]


class _StrictLoader(yaml.SafeLoader):
    pass


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), list("tf"))


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class SourceMap:
    file: str
    keys: dict[Path_, Position] = field(default_factory=dict)
    values: dict[Path_, Position] = field(default_factory=dict)

    def locate(self, loc: Path_, *, at_key: bool = False) -> tuple[Path_, Position]:
        """Map a validation location (which may carry schema tags) to the closest real position."""
        path: Path_ = ()
        for part in loc:
            if path + (part,) in self.values:
                path = path + (part,)
        if at_key and path in self.keys:
            return path, self.keys[path]
        return path, self.values.get(path, Position(1, 1))

    def issue(self, loc: Path_, message: str, hint: str = "", *, at_key: bool = False,
              field_path: str | None = None) -> Issue:
        path, pos = self.locate(loc, at_key=at_key)
        return Issue(self.file, pos.line, pos.column, field_path or format_path(loc), message, hint)


def format_path(loc: Path_) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(document)"


def _position(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _build(node: yaml.Node, path: Path_, smap: SourceMap, loader: _StrictLoader, problems: list[Issue]) -> Any:
    smap.values[path] = _position(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                problems.append(Issue(smap.file, *_pos_tuple(key_node), format_path(path),
                                      "a key must be a plain value"))
                continue
            if key in result:
                problems.append(Issue(
                    smap.file, *_pos_tuple(key_node), format_path(path + (key,)),
                    f"duplicate key {key!r} (first at line {smap.keys[path + (key,)].line})",
                    "YAML would silently keep only the last one; remove or rename one of them",
                ))
                continue
            smap.keys[path + (key,)] = _position(key_node)
            result[key] = _build(value_node, path + (key,), smap, loader, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), smap, loader, problems) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _pos_tuple(node: yaml.Node) -> tuple[int, int]:
    pos = _position(node)
    return pos.line, pos.column


def load_yaml(path: Path, display_name: str | None = None) -> tuple[Any, SourceMap, list[Issue]]:
    """Parse one file. Returns (data, source map, problems); data is None when it does not parse."""
    name = display_name or str(path)
    smap = SourceMap(name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, smap, [Issue(name, 1, 1, "(file)", f"cannot be read: {exc.strerror}")]
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, smap, [Issue(name, line, column, "(syntax)", f"YAML syntax error: {exc.problem or exc}")]
    finally:
        loader.dispose()
    if root is None:
        return None, smap, [Issue(name, 1, 1, "(document)", "file is empty")]
    problems: list[Issue] = []
    data = _build(root, (), smap, _StrictLoader(""), problems)
    return data, smap, problems
