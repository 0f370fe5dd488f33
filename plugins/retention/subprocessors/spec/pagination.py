"""Pagination styles, one model per ``style:``; the executor's strategy for each is in
``retention.subprocessors.pagination``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from retention.rules.model import Strict, Text
from retention.subprocessors.spec.request import DotPath


class NoPagination(Strict):
    style: Literal["none"]


class LinkHeader(Strict):
    """RFC 8288 ``Link: <url>; rel="next"``; Sentry adds ``results="false"`` to a next link with nothing behind it."""

    style: Literal["link_header"]
    results_attribute: bool = False


class NextUrl(Strict):
    """A body field holding the next page's URL or path (Twilio ``next_page_uri``, Salesforce ``nextRecordsUrl``)."""

    style: Literal["next_url"]
    field: DotPath


class Cursor(Strict):
    """A token from the body sent back as a parameter (OpenAI ``after`` = ``last_id``, Datadog ``meta.page.after``)."""

    style: Literal["cursor"]
    token_field: DotPath
    param: Text
    send_in: Literal["query", "body"] = "query"
    more_field: DotPath | None = None  # e.g. has_more; without it, a missing token ends the listing


class Offset(Strict):
    style: Literal["offset"]
    offset_param: Text = "offset"
    limit_param: Text = "limit"
    page_size: int = Field(ge=1, le=10_000)


class RangeHeader(Strict):
    """Heroku: ``Range`` request header, ``Next-Range`` response header, 206 while more remain."""

    style: Literal["range_header"]


Pagination = Annotated[NoPagination | LinkHeader | NextUrl | Cursor | Offset | RangeHeader,
                       Field(discriminator="style")]
