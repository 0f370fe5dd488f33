"""The request templates of a spec: what one HTTP call sends, the credentials pre-flight, and the bounds on
every call."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from retention.rules.model import Strict

DotPath = Annotated[str, Field(pattern=r"^([A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*)?$", max_length=200)]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]+$")]
Status = Annotated[int, Field(ge=100, le=599)]


class Request(Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: Annotated[str, Field(pattern=r"^/")]  # appended to the base URL
    query: dict[str, str | int] = Field(default_factory=dict)
    headers: dict[HeaderName, str] = Field(default_factory=dict)
    body: Any = None  # JSON template
    form: dict[str, str] | None = None  # form-encoded body template (Twilio)


class Preflight(Request):
    """The pre-flight: a read-only request proving the Connection's credentials before anything else is sent
    (as Airbyte's and Singer's connectors ``check`` a connection). ``expect``: the statuses that mean "these
    credentials work"; anything else (a 401 or 403 above all) fails the run before its first delete."""

    method: Literal["GET"]
    expect: list[Status] = Field(default_factory=lambda: [200], min_length=1)

    @model_validator(mode="after")
    def _read_only(self) -> Preflight:
        if self.body is not None or self.form is not None:
            raise ValueError("a test_request is a GET and sends no body or form")
        return self


class Defaults(Strict):
    """Bounds on every call of the spec."""

    max_response_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024 ** 3)  # a body past it is refused
    call_deadline_seconds: float = Field(default=600.0, gt=0, le=86_400)  # one call, its retries and waits
