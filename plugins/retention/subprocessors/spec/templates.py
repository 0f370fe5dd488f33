"""The ``{name}`` placeholders of a request template, and where in the request each template sits (for
issues naming file:line:field)."""

from __future__ import annotations

import re
import string
from typing import Any

from retention.subprocessors.spec.request import Request

Loc = tuple[str | int, ...]  # a path into the YAML: ("resources", "leads", "find", "request")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def names(text: str) -> set[str]:
    """Placeholder names of a template; only bare ``{name}`` is allowed (ValueError otherwise)."""
    found = set()
    for _, field_name, format_spec, conversion in string.Formatter().parse(text):
        if field_name is None:
            continue
        if format_spec or conversion or not _NAME.match(field_name):
            raise ValueError(f"{{{field_name}}} is not a plain placeholder")
        found.add(field_name)
    return found


def names_or_none(text: str) -> set[str]:
    try:
        return names(text)
    except ValueError:
        return set()  # reported where the template is checked


def names_in(templates: dict[str, str]) -> set[str]:
    """Every placeholder of a mapping's templates (a ``match``, a fan-out's ``headers``)."""
    return {name for template in templates.values() for name in names_or_none(template)}


def placeholders(request: Request) -> set[str]:
    return {name for _, text in templates(request) for name in names_or_none(text)}


def templates(request: Request) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = [(("path",), request.path)]
    found += [(("query", k), str(v)) for k, v in request.query.items()]
    found += [(("headers", k), v) for k, v in request.headers.items()]
    found += [(("form", k), v) for k, v in (request.form or {}).items()]
    found += _strings(request.body, ("body",))
    return found


def keys(request: Request) -> list[tuple[Loc, str]]:
    """Every parameter name a request sends (query, form, JSON body keys at any depth)."""
    found: list[tuple[Loc, str]] = [(("query", k), k) for k in request.query]
    found += [(("form", k), k) for k in (request.form or {})]
    return found + _body_keys(request.body, ("body",))


def _strings(value: Any, at: Loc) -> list[tuple[Loc, str]]:
    if isinstance(value, str):
        return [(at, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, at + (k,))]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, at + (i,))]
    return []


def _body_keys(value: Any, at: Loc) -> list[tuple[Loc, str]]:
    if isinstance(value, dict):
        own: list[tuple[Loc, str]] = [(at + (k,), k) for k in value]
        return own + [s for k, v in value.items() for s in _body_keys(v, at + (k,))]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _body_keys(v, at + (i,))]
    return []


def dotted(at: Loc) -> str:
    return ".".join(str(p) for p in at)
