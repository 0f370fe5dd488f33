"""Finding one account's records: a listing request (with its pagination) or ids the application recorded,
each a model of its own, told apart by which of ``request`` / ``recorded`` the YAML gives (no tag key)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag

from retention.rules.model import Identifier, Strict
from retention.subprocessors.spec.pagination import Pagination
from retention.subprocessors.spec.request import DotPath, HeaderName, Request


class RecordedIds(Strict):
    """Ids the application recorded when it created the objects (APIs that cannot list them)."""

    conn_id: Identifier
    table: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")]
    id_column: Identifier
    account_column: Identifier
    kind_column: Identifier | None = None
    kind: str | None = None


def _source(value: Any) -> str | None:
    """``listed`` when the YAML gives a request, ``recorded`` when it gives recorded ids; None (refused) for
    both or neither."""
    if isinstance(value, dict):
        has_request, has_recorded = "request" in value, "recorded" in value
        if has_request == has_recorded:
            return None
        return "listed" if has_request else "recorded"
    return "recorded" if hasattr(value, "recorded") else "listed"


_ONE_SOURCE = Discriminator(_source, custom_error_type="one_source",
                            custom_error_message="give either request (with pagination) or recorded, not both")


class _Tenants(Strict):
    bind: dict[Identifier, DotPath] = Field(min_length=1)
    match: dict[DotPath, str] = Field(default_factory=dict)  # item field -> template that must equal it
    headers: dict[HeaderName, str] = Field(default_factory=dict)


class ListedFanOut(_Tenants):
    """The provider-side tenants of an account (subaccounts, subusers, projects) from a listing: fields of
    each are bound to template names used below, and ``headers`` (templates) are sent with every request
    made for that tenant (SendGrid ``on-behalf-of``, OpenAI ``OpenAI-Project``)."""

    request: Request
    pagination: Pagination  # style: none when the API has none
    items: DotPath = ""  # the list in the response ("" when the body is the list)


class RecordedFanOut(_Tenants):
    """The tenants of an account from ids the application recorded, each bound as ``id``."""

    recorded: RecordedIds


FanOut = Annotated[Annotated[ListedFanOut, Tag("listed")] | Annotated[RecordedFanOut, Tag("recorded")], _ONE_SOURCE]


class ListedFind(Strict):
    request: Request
    pagination: Pagination  # style: none when the API has none
    items: DotPath = ""
    id: DotPath = "id"
    match: dict[DotPath, str] = Field(default_factory=dict)  # keep only items whose field equals the template
    cap: int | None = Field(default=None, ge=1)  # the provider returns at most this many per search


class RecordedFind(Strict):
    recorded: RecordedIds


Find = Annotated[Annotated[ListedFind, Tag("listed")] | Annotated[RecordedFind, Tag("recorded")], _ONE_SOURCE]
