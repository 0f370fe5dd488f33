"""The HTTP source: a JSON endpoint of the application, page by page.

``GET <path>`` answers ``{"accounts": [{...}, ...], "next": "<cursor>" | null}``; the next page is
``GET <path>?cursor=<cursor>``, until ``next`` is null. An item has the keys of a database row
(``retention.rules.accounts.ROW_FIELDS``: id, state, jurisdiction, created_at, ..., election, elected_at,
instructions); other keys are ignored. Each item is checked on its own; a page that is not of this shape, or an
answer other than 200, stops the read (nothing is decided on part of a registry). Connection errors, 429 and 5xx
are retried (``HttpSource.attempts`` times per page, backing off exponentially).

Credentials come from the Airflow Connection only: its extra ``token`` as a bearer token, else its login and
password as basic auth; its host (schema http or https, port) is where every page is fetched from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from retention.registry.base import Registry, collect

if TYPE_CHECKING:
    from retention.registry.config import HttpSource
    from retention.rules import RuleSet


class RegistrySourceError(RuntimeError):
    """The HTTP source answered something that is not a registry page: the whole read stops."""


def read_http(source: HttpSource, ruleset: RuleSet) -> Registry:
    with _client(source) as client:
        return collect(_items(client, source), ruleset, source.label)


def _client(source: HttpSource) -> httpx.Client:
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(source.conn_id)
    if not conn.host:
        raise RegistrySourceError(f"Connection {source.conn_id!r} has no host")
    base = f"{conn.schema or 'https'}://{conn.host}" + (f":{conn.port}" if conn.port else "")
    token = (conn.extra_dejson or {}).get("token")
    auth = httpx.BasicAuth(conn.login, conn.password or "") if conn.login and not token else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base, auth=auth, headers={**headers, "Accept": "application/json"},
                        timeout=source.timeout_seconds, follow_redirects=False)


def _items(client: httpx.Client, source: HttpSource) -> Iterator[tuple[str, Mapping[str, object]]]:
    cursor: str | None = None
    seen: set[str] = set()
    page = 0
    while True:
        page += 1
        body = _page(client, source, cursor)
        for n, item in enumerate(body["accounts"], 1):
            yield f"page {page} item {n}", item if isinstance(item, dict) else {}
        cursor = body["next"]
        if cursor is None:
            return
        if cursor in seen:
            raise RegistrySourceError(f"{source.label}: page {page} points back at an earlier page (next repeats)")
        seen.add(cursor)


def _page(client: httpx.Client, source: HttpSource, cursor: str | None) -> dict[str, Any]:
    params = {"cursor": cursor} if cursor is not None else None
    retrying = Retrying(retry=retry_if_exception(_transient), stop=stop_after_attempt(source.attempts),
                        wait=wait_exponential_jitter(multiplier=0.5, max=10), reraise=True)
    try:
        response = retrying(lambda: client.get(source.path, params=params).raise_for_status())
    except httpx.HTTPStatusError as exc:
        raise RegistrySourceError(f"{source.label}: HTTP {exc.response.status_code}") from None
    except httpx.TransportError as exc:
        raise RegistrySourceError(f"{source.label}: {type(exc).__name__}") from None
    try:
        body = response.json()
    except ValueError:
        raise RegistrySourceError(f"{source.label}: the answer is not JSON") from None
    if not (isinstance(body, dict) and isinstance(body.get("accounts"), list)
            and (body.get("next") is None or isinstance(body.get("next"), str))):
        raise RegistrySourceError(f'{source.label}: expected {{"accounts": [...], "next": <cursor or null>}}')
    return {"accounts": body["accounts"], "next": body.get("next") or None}


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and (exc.response.status_code == 429
                                                       or exc.response.status_code >= 500)
