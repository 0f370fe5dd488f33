"""Turn pydantic validation errors into Issues that point at file:line:column with a useful hint."""

from __future__ import annotations

import difflib
import types
import typing

from pydantic import BaseModel, ValidationError

from retention.rules.errors import Issue
from retention.rules.yamlsource import Path_, SourceMap, format_path


def issues_from(exc: ValidationError, model: type[BaseModel], smap: SourceMap) -> list[Issue]:
    issues: list[Issue] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        kind = error["type"]
        message = error["msg"].removeprefix("Value error, ")
        message, _, hint = message.partition("\nhint: ")  # a validator's own hint, after its message
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            message = f"unknown key {loc[-1]!r}"
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + f"allowed keys: {', '.join(allowed)}"
        elif kind == "missing":
            message = f"required field {loc[-1]!r} is missing"
            hint = f"add '{loc[-1]}:' here"
        issues.append(smap.issue(loc, message, hint, at_key=kind == "extra_forbidden",
                                 field_path=format_path(_clean(loc, smap))))
    return issues


def _clean(loc: Path_, smap: SourceMap) -> Path_:
    """Drop pydantic's schema tags (union members, ``function-after[...]``) from a location.

    A part is real if the YAML has it at that path; the last part may be absent (a missing field).
    """
    path: Path_ = ()
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if path + (part,) in smap.values or (last and not _is_tag(part)):
            path += (part,)
    return path


def _is_tag(part: object) -> bool:
    return isinstance(part, str) and (any(ch in part for ch in "[]()") or part in {"str", "int", "bool", "IsoDuration"})


def _allowed_keys(model: type[BaseModel], loc: Path_) -> list[str]:
    current: object = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    current = _unwrap_model(current)
    return list(current.model_fields) if current else []


def _step(annotation: object, part: object) -> object | None:
    models = [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    for model in models:
        if isinstance(part, str) and part in model.model_fields:
            return model.model_fields[part].annotation
    for model in models:  # a discriminated union's tag, e.g. "s3" for kind: Literal["s3"]
        if any(part in typing.get_args(f.annotation) for f in model.model_fields.values()
               if typing.get_origin(f.annotation) is typing.Literal):
            return model
    for arg in _members(annotation):
        origin = typing.get_origin(arg)
        if origin is list and isinstance(part, int):
            item: object = typing.get_args(arg)[0]
            return item
        if origin is dict:
            value: object = typing.get_args(arg)[1]
            return value
    return None


def _members(annotation: object) -> tuple[object, ...]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return tuple(m for arg in typing.get_args(annotation) for m in _members(arg))
    return (annotation,)


def _unwrap_model(annotation: object) -> type[BaseModel] | None:
    for arg in _members(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
