"""Validation errors in words: a route of a router built with ``WordedValidation`` answers a body or query that
fails validation with 422 and ``detail`` = "<field>: <message>" (e.g. "reason: must be at least 3 characters"),
the field first so the operator page shows the message next to that field; ``errors`` lists every field's.
FastAPI's default answer is a list of pydantic's objects, which also echo the input; these never do."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypedDict

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from retention.ids import ACCOUNT_ID_RULE

# pydantic's error type -> the message, filled from the error's ``ctx`` (its limits).
MESSAGES: dict[str, str] = {
    "missing": "is required",
    "string_too_short": "must be at least {min_length} characters",
    "string_too_long": "must be at most {max_length} characters",
    "string_type": "must be text",
    "string_pattern_mismatch": "is not in the expected form",
    "json_invalid": "is not valid JSON",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}
# Where a field's form is more than a pattern, say what it is.
FORMS: dict[str, str] = {
    "account_id": f"must be an account id ({ACCOUNT_ID_RULE})",
}
NOT_EMPTY = "must not be empty"


class FieldError(TypedDict):
    field: str
    message: str


def field_error(error: Mapping[str, Any]) -> FieldError:
    """One of pydantic's errors as a field and a message in words (the input is left out)."""
    location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(location) or "body"
    kind, limits = str(error.get("type", "")), error.get("ctx") or {}
    if kind == "string_pattern_mismatch" and field in FORMS:
        return {"field": field, "message": FORMS[field]}
    if kind == "string_too_short" and limits.get("min_length") == 1:
        return {"field": field, "message": NOT_EMPTY}
    if kind in MESSAGES:
        return {"field": field, "message": MESSAGES[kind].format(**limits)}
    message = str(error.get("msg", "is not valid"))
    return {"field": field, "message": message[:1].lower() + message[1:]}


def worded(errors: Sequence[Mapping[str, Any]]) -> dict[str, object]:
    """The 422 answer: the first error as "<field>: <message>", and every error."""
    found = [field_error(error) for error in errors] or [{"field": "body", "message": "is not valid"}]
    return {"detail": f"{found[0]['field']}: {found[0]['message']}", "errors": found}


class WordedValidation(APIRoute):
    """A route whose validation errors answer 422 in words (module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_worded(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                return JSONResponse(worded(exc.errors()), status_code=422)

        return handle_worded


def field_first(message: str, fields: Sequence[str]) -> str | None:
    """A ledger check's message ("reason must be a non-empty string") with its field first, as the page reads it
    ("reason: must be a non-empty string"); None when it starts with none of ``fields``."""
    for field in fields:
        if message.startswith(f"{field} "):
            return f"{field}: {message[len(field) + 1:]}"
        if message.startswith(f"{field}:"):
            return message
    return None
