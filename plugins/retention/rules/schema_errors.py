"""Turn pydantic validation errors into Issues that point at file:line:column with a useful hint."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable

from pydantic import BaseModel, Tag, ValidationError

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
                                 field_path=format_path(_clean(loc, smap, _walk(model, loc)[1]))))
    return issues


def _clean(loc: Path_, smap: SourceMap, tags: set[int]) -> Path_:
    """Drop pydantic's schema tags (union members, ``function-after[...]``) from a location.

    ``tags``: the positions the model says are a union's tag. One followed by the member's keys is dropped,
    even where the YAML has a key of the same name (``recorded`` is both a find's tag and its key); a last one
    stays, naming the member whose own validator refused the value (``source.sql``). Any other part is real
    if the YAML has it at that path; the last part may be absent (a missing field).
    """
    path: Path_ = ()
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if i in tags and not last:
            continue  # the member's keys follow
        if path + (part,) in smap.values or (last and not _is_tag(part)):
            path += (part,)
    return path


def _is_tag(part: object) -> bool:
    return isinstance(part, str) and (any(ch in part for ch in "[]()") or part in {"str", "int", "bool", "IsoDuration"})


def _allowed_keys(model: type[BaseModel], loc: Path_) -> list[str]:
    current, _ = _walk(model, loc)
    found = _unwrap_model(current) if current is not None else None
    return list(found.model_fields) if found else []


def _walk(model: type[BaseModel], loc: Path_) -> tuple[object | None, set[int]]:
    """Follow ``loc`` from ``model``: the annotation it ends at (None where a part leads nowhere known) and the
    positions of the parts that were a union's tag."""
    current: object = model
    tags: set[int] = set()
    for i, part in enumerate(loc):
        for resolve, names_a_tag in _RESOLVERS:
            found = resolve(current, part)
            if found is not None:
                current = found
                if names_a_tag:
                    tags.add(i)
                break
        else:
            return None, tags
    return current, tags


def _models(annotation: object) -> list[type[BaseModel]]:
    return [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]


def _callable_tag(annotation: object, part: object) -> object | None:
    """A union discriminated by a callable (``Discriminator(...)``): the member marked with that ``Tag``
    ("listed" for ``Annotated[ListedFind, Tag("listed")]``)."""
    return _tags(annotation).get(part) if isinstance(part, str) else None


def _literal_tag(annotation: object, part: object) -> object | None:
    """A union of models discriminated by a field's value: the member whose ``Literal`` field holds the tag
    ("s3" for ``kind: Literal["s3"]``). Not for a single model, whose location names its fields."""
    models = _models(annotation)
    if len(models) < 2:
        return None
    for model in models:
        if any(part in typing.get_args(f.annotation) for f in model.model_fields.values()
               if typing.get_origin(f.annotation) is typing.Literal):
            return model
    return None


def _field(annotation: object, part: object) -> object | None:
    """A model's field, by name."""
    for model in _models(annotation):
        if isinstance(part, str) and part in model.model_fields:
            return model.model_fields[part].annotation
    return None


def _item(annotation: object, part: object) -> object | None:
    """A list's item (by index) or a dict's value (by key)."""
    for arg in _members(annotation):
        origin = typing.get_origin(arg)
        if origin is list and isinstance(part, int):
            item: object = typing.get_args(arg)[0]
            return item
        if origin is dict:
            value: object = typing.get_args(arg)[1]
            return value
    return None


# What one part of a location can name, tried in this order, and whether it is a union's tag (not in the YAML).
# Tags first: under a discriminated union pydantic's location always names the tag before the member's fields,
# and a tag may also be a field's name (a find's "recorded").
_RESOLVERS: tuple[tuple[Callable[[object, object], object | None], bool], ...] = (
    (_callable_tag, True),
    (_literal_tag, True),
    (_field, False),
    (_item, False),
)


def _tags(annotation: object) -> dict[str, object]:
    """Each ``Tag`` of a union's members, to the member it marks."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *metadata = typing.get_args(annotation)
        return {m.tag: inner for m in metadata if isinstance(m, Tag)} | _tags(inner)
    if origin in (typing.Union, types.UnionType):
        return {tag: member for arg in typing.get_args(annotation) for tag, member in _tags(arg).items()}
    return {}


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
