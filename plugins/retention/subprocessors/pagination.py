"""Pagination strategies, one per ``style:`` of the spec, chosen from ``STRATEGIES`` by the style. A strategy
is made for one listing: ``first()`` says how to ask for the first page, ``after(page)`` how to ask for the
next one, or None when the listing has ended. ``list_items`` walks the pages: a link to follow is resolved
against the page that carried it (RFC 3986) and sent only where the client allows (its origin check)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from retention.subprocessors.errors import SubprocessorError
from retention.subprocessors.http import ResourceClient
from retention.subprocessors.results import Scope
from retention.subprocessors.spec import Request
from retention.subprocessors.spec.pagination import (
    Cursor,
    LinkHeader,
    NextUrl,
    NoPagination,
    Offset,
    Pagination,
    RangeHeader,
)
from retention.subprocessors.values import get

MAX_PAGES = 100_000  # a listing that never ends is a provider bug, not a reason to loop forever

C = TypeVar("C", NoPagination, LinkHeader, NextUrl, Cursor, Offset, RangeHeader)


@dataclass(frozen=True)
class PageRequest:
    """How to ask for one page: the request (a cursor may sit in its body), or a link to follow instead."""

    request: Request
    link: object = None  # the next page's URL as the provider gave it (checked by ``list_items``)
    link_from: str = ""
    query: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    response: httpx.Response
    body: Any
    items: list[Any]
    asked: PageRequest


class Paginator(ABC, Generic[C]):
    config: C

    def __init__(self, config: C, request: Request) -> None:
        self.config = config
        self.request = request

    def first(self) -> PageRequest:
        return PageRequest(self.request)

    @abstractmethod
    def after(self, page: Page) -> PageRequest | None:
        """The request of the page after ``page``, or None when it was the last."""


class OnePage(Paginator[NoPagination]):
    def after(self, page: Page) -> PageRequest | None:
        return None


class LinkHeaderPages(Paginator[LinkHeader]):
    def after(self, page: Page) -> PageRequest | None:
        """The ``rel="next"`` URL of the Link header (parsed by httpx); Sentry marks an empty next page
        with ``results="false"``."""
        link = page.response.links.get("next")
        if link is None or self.config.results_attribute and link.get("results") != "true":
            return None
        return PageRequest(self.request, link=link.get("url"), link_from="the Link header's rel=\"next\"")


class NextUrlPages(Paginator[NextUrl]):
    def after(self, page: Page) -> PageRequest | None:
        link = get(page.body, self.config.field) or None
        return None if link is None else PageRequest(self.request, link=link,
                                                     link_from=f"the body field {self.config.field!r}")


class CursorPages(Paginator[Cursor]):
    def after(self, page: Page) -> PageRequest | None:
        cursor = self.config
        token = get(page.body, cursor.token_field)
        more = bool(get(page.body, cursor.more_field)) if cursor.more_field else token not in (None, "")
        if not more or token in (None, ""):
            return None
        if cursor.send_in == "query":
            return PageRequest(self.request, query={cursor.param: token})
        request = page.asked.request
        return PageRequest(request.model_copy(update={"body": _with(request.body, cursor.param, token)}))


class OffsetPages(Paginator[Offset]):
    def __init__(self, config: Offset, request: Request) -> None:
        super().__init__(config, request)
        self.offset = 0

    def first(self) -> PageRequest:
        return self._at(0)

    def after(self, page: Page) -> PageRequest | None:
        if len(page.items) < self.config.page_size:
            return None
        self.offset += len(page.items)
        return self._at(self.offset)

    def _at(self, offset: int) -> PageRequest:
        return PageRequest(self.request, query={self.config.offset_param: offset,
                                                self.config.limit_param: self.config.page_size})


class RangeHeaderPages(Paginator[RangeHeader]):
    def after(self, page: Page) -> PageRequest | None:
        next_range = page.response.headers.get("Next-Range")
        if page.response.status_code != 206 or not next_range:
            return None
        return PageRequest(self.request, headers={"Range": next_range})


# The strategy for each style. Keyed by the style tag pydantic chose the config's model by; values are the
# generic class, each instantiated with its own config type.
STRATEGIES: dict[str, type[Paginator[Any]]] = {
    "none": OnePage,
    "link_header": LinkHeaderPages,
    "next_url": NextUrlPages,
    "cursor": CursorPages,
    "offset": OffsetPages,
    "range_header": RangeHeaderPages,
}


def paginator(config: Pagination, request: Request) -> Paginator[Any]:
    return STRATEGIES[config.style](config, request)


def list_items(api: ResourceClient, who: str, request: Request, pagination: Pagination, items_path: str,
               scope: Scope, operation: str) -> Iterator[Any]:
    """Every item of a paginated listing (``who``: the subprocessor, named in errors)."""
    pages = paginator(pagination, request)
    asked: PageRequest | None = pages.first()
    url: str | None = None
    for _ in range(MAX_PAGES):
        if asked is None:
            return
        response = api.call(asked.request, scope.variables, operation=operation, url=url, link_from=asked.link_from,
                            query=asked.query, extra_headers={**scope.headers, **asked.headers})
        if response.status_code not in (200, 206):
            raise SubprocessorError(f"{who}: {operation} answered HTTP {response.status_code}")
        body = response.json() if response.content else None
        items = (get(body, items_path) if items_path else body) or []
        if not isinstance(items, list):
            raise SubprocessorError(f"{who}: {operation}: {items_path!r} is not a list")
        yield from items
        asked = pages.after(Page(response, body, items, asked))
        url = None
        if asked is not None and asked.link_from:
            if not asked.link:
                return
            if not isinstance(asked.link, str):
                raise SubprocessorError(f"{who}: {operation}: {asked.link_from} is not a URL")
            url = str(response.request.url.join(asked.link))  # relative to the page that carried it
    raise SubprocessorError(f"{who}: {operation} did not end after {MAX_PAGES} pages")


def _with(body: Any, dotted: str, value: Any) -> dict[str, Any]:
    """A copy of a JSON body with ``a.b.c`` set (Datadog's page.cursor)."""
    out = dict(body or {})
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node[part] = dict(node.get(part) or {})
        node = node[part]
    node[parts[-1]] = value
    return out
