"""Datadog: Logs Search API v2 and Data Deletion API v2, the subset the spec uses.

``DD-API-KEY`` and ``DD-APPLICATION-KEY`` headers (403 otherwise, as Datadog answers bad keys); the
application key carries permissions: ``logs_read_data`` to search, ``logs_delete_data`` to create,
list and cancel deletion requests.

``POST /api/v2/logs/events/search``: ``filter.query`` (terms ANDed: ``@attr:value`` an attribute,
``key:value`` a tag or one of host/service/status/source; ``*`` wildcards; anything else 400),
``filter.from``/``to`` (ISO 8601, epoch ms, ``now``, ``now-15m``; ``from`` defaults to now-15m),
``page.limit`` (default 10, at most 5000, and at most ``page_cap`` here so tests see pages),
``page.cursor`` = the previous ``meta.page.after``, absent on the last page.

``POST /api/v2/deletion/data/logs``: ``data.type`` create_deletion_req, ``attributes.query`` a map
whose entries are search terms ``key:value`` (so ``@tenant`` an attribute, ``tenant`` a tag), ``from``,
``to`` and ``displayed_total`` int64 (required). A JSON string of digits is accepted for them and the
field name kept in ``string_numbers``. The request answers 200 ``status: pending, is_created: false``
and deletes nothing yet: it can be cancelled (``PUT /api/v2/deletion/requests/{id}/cancel``) for 10
days, 412 after that, and completes then, removing the matching logs of its time window. The
emulator's clock moves with ``elapse(days=...)``. ``GET /api/v2/deletion/requests`` lists requests
(filters ``product``, ``status``; ``page_size`` per page, ``meta.next_page`` a token for the next;
statuses ``pending``, ``completed``, ``canceled``).

Every response that passed Datadog's gateway carries ``X-RateLimit-{Limit,Period,Remaining,Reset,Name}``
(Reset: seconds until the hourly period ends; a 429's Reset is the wait it asks for). The chaos 5xx
stand for a load balancer's and carry none; ``fail_next`` makes the next calls answer an application
error through the gateway, rate-limit headers included.
"""

from __future__ import annotations

import base64
import fnmatch
import itertools
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from tests.emulators.base import Call, Emulator, Reply

API_KEY = "dd-test-api-key"
APP_KEY = "dd-test-application-key"
ALL_PERMISSIONS = frozenset({"logs_read_data", "logs_delete_data"})
CANCEL_WINDOW = 10 * 86_400  # seconds a deletion request can be cancelled; it completes after them
MAX_PAGE = 5000
RATE_PERIOD = 3600  # seconds: the logs search limit is counted per hour
RESERVED = ("host", "service", "status", "source")
_TERM = re.compile(r'^(?P<key>@?[A-Za-z0-9_.\-]+):(?P<value>"[^"]*"|\S+)$')
_MATH = re.compile(r"^now(?:-(?P<n>\d+)(?P<unit>[smhdw]))?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


class DatadogEmulator(Emulator):
    name = "datadog"
    reset_header = "X-RateLimit-Reset"
    reset_kind = "seconds"

    def __init__(self, *, page_cap: int = MAX_PAGE, permissions: frozenset[str] = ALL_PERMISSIONS,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.page_cap = page_cap
        self.permissions = set(permissions)
        self.offset = 0.0  # seconds the emulator's clock is ahead of the real one (elapse())
        self.logs: list[dict] = []  # {"id", "type", "attributes", "_ms", "_index"}
        self.requests: dict[str, dict] = {}  # deletion request id -> request (with "_created", "_query")
        self.string_numbers: set[str] = set()  # int64 fields that arrived as JSON strings
        self.fail_next: list[int] = []  # statuses the next API calls answer (an application error)
        self.period_left: int | None = None  # X-RateLimit-Reset outside a 429; None: from the clock
        self.list_page_cap = 50
        self.list_calls: list[dict] = []  # the parameters of each listing of deletion requests
        self._log_ids = itertools.count(1)
        self._request_ids = itertools.count(101)
        self.route("POST", r"/api/v2/logs/events/search", self._search)
        self.route("POST", r"/api/v2/deletion/data/(?P<product>[^/]+)", self._create_deletion)
        self.route("GET", r"/api/v2/deletion/requests", self._list_deletions)
        self.route("PUT", r"/api/v2/deletion/requests/(?P<id>[^/]+)/cancel", self._cancel_deletion)

    # -- data and clock --------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int((time.time() + self.offset) * 1000)

    def add_logs(self, tenant: str | None, hours_ago: list[float], *, index: str = "main",
                 service: str = "app") -> list[str]:
        """One log per age (hours before now), with ``@tenant`` set when a tenant is given."""
        ids = []
        for age in hours_ago:
            at = self.now_ms() - int(age * 3_600_000)
            log_id = f"AQAAAZ{next(self._log_ids):014d}"
            attributes = {"tenant": tenant, "http": {"status_code": 500}} if tenant else {"http": {"status_code": 200}}
            self.logs.append({
                "id": log_id, "type": "log", "_ms": at, "_index": index,
                "attributes": {"timestamp": _iso(at), "host": "web-1", "service": service, "status": "error",
                               "message": f"request failed ({log_id})", "tags": ["env:prod", f"service:{service}"],
                               "attributes": attributes},
            })
            ids.append(log_id)
        return ids

    def tenant_logs(self, tenant: str) -> list[dict]:
        return [log for log in self.logs if log["attributes"]["attributes"].get("tenant") == tenant]

    def remaining(self, tenant: str) -> dict[str, int]:
        pending = sum(1 for r in self.requests.values()
                      if r["attributes"]["status"] == "pending" and tenant in r["_query"].values())
        return {"logs": len(self.tenant_logs(tenant)), "pending_requests": pending}

    def elapse(self, *, days: float = 0, seconds: float = 0) -> None:
        """Move the clock; deletion requests past their cancellation window complete."""
        with self.lock:
            self.offset += days * 86_400 + seconds
            for request in self.requests.values():
                attrs = request["attributes"]
                age = self.now_ms() / 1000 - request["_created"]
                if age >= 300:
                    attrs["is_created"] = True  # "can take several minutes to fully create"
                if attrs["status"] == "pending" and age >= CANCEL_WINDOW:
                    doomed = {id(log) for log in self._matching(request)}
                    self.logs = [log for log in self.logs if id(log) not in doomed]
                    attrs["status"] = "completed"
                    attrs["updated_at"] = _iso(self.now_ms())

    # -- API -------------------------------------------------------------------------------------

    def authorized(self, call: Call) -> bool:
        return call.headers.get("dd-api-key") == API_KEY and call.headers.get("dd-application-key") == APP_KEY

    def unauthorized(self) -> Reply:
        return Reply(403, {"errors": ["Forbidden"]})

    def not_found(self) -> Reply:
        return Reply(404, {"errors": ["Not found"]})

    def handle(self, call: Call) -> Reply:
        through_gateway = True
        with self.lock:
            failing = self.fail_next.pop(0) if call.path != "/__inspect__" and self.fail_next else None
        if failing is not None:
            reply = Reply(failing, {"errors": ["Internal Server Error"]})
        else:
            reply = super().handle(call)
            through_gateway = reply.status < 500  # chaos 5xx: a load balancer's, without rate headers
        if call.path != "/__inspect__" and through_gateway:
            period = RATE_PERIOD
            reply.headers.setdefault("X-RateLimit-Limit", "300")
            reply.headers.setdefault("X-RateLimit-Period", str(period))
            reply.headers.setdefault("X-RateLimit-Remaining", "0" if reply.status == 429 else "299")
            left = self.period_left if self.period_left is not None else period - int(time.time()) % period
            reply.headers.setdefault("X-RateLimit-Reset", str(left))
            reply.headers.setdefault("X-RateLimit-Name", "logs_search_api")
        return reply

    @staticmethod
    def _bad(message: str) -> Reply:
        return Reply(400, {"errors": [message]})

    def _denied(self, permission: str) -> Reply | None:
        return None if permission in self.permissions else Reply(403, {"errors": ["Forbidden"]})

    def _time(self, value: Any, default: int) -> int | None:
        if value is None:
            return default
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value)
        if not isinstance(value, str):
            return None
        if m := _MATH.match(value):
            return self.now_ms() - int(m["n"] or 0) * _UNITS[m["unit"] or "s"] * 1000
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return _ms(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))

    @staticmethod
    def _terms(query: str) -> list[tuple[str, str]] | None:
        terms = []
        for raw in query.split():
            m = _TERM.match(raw)
            if not m or raw.startswith("-") or raw in ("AND", "OR", "NOT"):
                return None
            terms.append((m["key"], m["value"].strip('"')))
        return terms

    @staticmethod
    def _term_matches(log: dict, key: str, value: str) -> bool:
        attrs = log["attributes"]
        if key.startswith("@"):
            found: Any = attrs["attributes"]
            for part in key[1:].split("."):
                found = found.get(part) if isinstance(found, dict) else None
            return found is not None and fnmatch.fnmatchcase(str(found), value)
        if key in RESERVED:
            return fnmatch.fnmatchcase(str(attrs.get(key)), value)
        return any(fnmatch.fnmatchcase(tag, f"{key}:{value}") for tag in attrs["tags"])

    def _select(self, terms: list[tuple[str, str]], start: int, end: int, indexes: list[str] | None) -> list[dict]:
        return [log for log in self.logs
                if start <= log["_ms"] <= end and (not indexes or "*" in indexes or log["_index"] in indexes)
                and all(self._term_matches(log, k, v) for k, v in terms)]

    def _search(self, call: Call) -> Reply:
        if denied := self._denied("logs_read_data"):
            return denied
        body = call.body if isinstance(call.body, dict) else {}
        flt, page = body.get("filter") or {}, body.get("page") or {}
        query = str(flt.get("query", "*")).strip()
        terms = [] if query in ("", "*") else self._terms(query)
        start = self._time(flt.get("from"), self.now_ms() - 15 * 60_000)
        end = self._time(flt.get("to"), self.now_ms())
        if terms is None or start is None or end is None:
            return self._bad("Invalid query or time range")
        limit = page.get("limit", 10)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            return self._bad(f"page.limit must be between 1 and {MAX_PAGE}")
        try:
            offset = json.loads(base64.urlsafe_b64decode(page["cursor"]))["o"] if page.get("cursor") else 0
        except (ValueError, KeyError, TypeError):
            return self._bad("Invalid page cursor")
        found = sorted(self._select(terms, start, end, flt.get("indexes")), key=lambda log: log["_ms"],
                       reverse=body.get("sort") != "timestamp")
        size = min(limit, self.page_cap)
        chunk = [{k: v for k, v in log.items() if not k.startswith("_")} for log in found[offset:offset + size]]
        meta: dict[str, Any] = {"elapsed": 3, "request_id": f"req-{offset}", "status": "done", "page": {}}
        reply: dict[str, Any] = {"data": chunk, "meta": meta}
        if offset + size < len(found):
            meta["page"]["after"] = base64.urlsafe_b64encode(json.dumps({"o": offset + size}).encode()).decode()
            reply["links"] = {"next": f"{self.url}/api/v2/logs/events?page[cursor]={meta['page']['after']}"}
        return Reply(200, reply)

    def _int64(self, attrs: dict, name: str) -> int | None:
        value = attrs.get(name)
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isdigit():
            self.string_numbers.add(name)
            return int(value)
        return None

    def _matching(self, request: dict) -> list[dict]:
        attrs = request["attributes"]
        terms = [(k, v) for k, v in request["_query"].items()]
        return self._select(terms, attrs["from_time"], attrs["to_time"], attrs.get("indexes"))

    def _create_deletion(self, call: Call) -> Reply:
        if denied := self._denied("logs_delete_data"):
            return denied
        if call.match["product"] != "logs":
            return self._bad("Only logs is supported")
        data = (call.body or {}).get("data") if isinstance(call.body, dict) else None
        if not isinstance(data, dict) or data.get("type") != "create_deletion_req":
            return self._bad("data.type must be create_deletion_req")
        attrs = data.get("attributes") or {}
        query = attrs.get("query")
        if not isinstance(query, dict) or not query or not all(isinstance(v, str) and v for v in query.values()):
            return self._bad("attributes.query must be a non-empty map of strings")
        numbers = {name: self._int64(attrs, name) for name in ("from", "to", "displayed_total")}
        if any(v is None for v in numbers.values()):
            return self._bad("attributes.from, to and displayed_total are required int64")
        if numbers["from"] > numbers["to"]:
            return self._bad("from must not be after to")
        now = self.now_ms()
        request_id = str(next(self._request_ids))
        request = {"id": request_id, "type": "deletion_request", "_created": now / 1000, "_query": dict(query),
                   "attributes": {
                       "created_at": _iso(now), "created_by": "retention@example.com",
                       "from_time": numbers["from"], "to_time": numbers["to"], "indexes": attrs.get("indexes"),
                       "is_created": False, "org_id": 321813, "product": "logs",
                       "query": " ".join(f"{k}:{v}" for k, v in query.items()), "starting_at": _iso(now),
                       "status": "pending", "total_unrestricted": 0, "displayed_total": numbers["displayed_total"],
                       "updated_at": _iso(now)}}
        request["attributes"]["total_unrestricted"] = len(self._matching(request))
        self.requests[request_id] = request
        return Reply(200, {"data": self._public(request)})

    @staticmethod
    def _public(request: dict) -> dict:
        return {k: v for k, v in request.items() if not k.startswith("_")}

    def _list_deletions(self, call: Call) -> Reply:
        """Requests filtered by ``product`` and ``status``, ``page_size`` a page (default 50, and at most
        ``list_page_cap`` here), oldest first; ``meta.next_page`` an opaque token that, sent back as
        ``next_page``, replaces every other parameter (as Datadog documents)."""
        if denied := self._denied("logs_delete_data"):
            return denied
        token = call.arg("next_page")
        if token:
            try:
                params = json.loads(base64.b64decode(token))
            except ValueError:
                return self._bad("invalid next_page")
        else:
            size = call.arg("page_size") or "50"
            if not size.isdigit() or int(size) < 1:
                return self._bad("page_size must be a positive integer")
            params = {"product": call.arg("product"), "status": call.arg("status"), "size": int(size), "offset": 0}
        items = [r for r in sorted(self.requests.values(), key=lambda r: int(r["id"]))
                 if params["product"] in (None, r["attributes"]["product"])
                 and params["status"] in (None, r["attributes"]["status"])]
        size = min(params["size"], self.list_page_cap)
        page = items[params["offset"]:params["offset"] + size]
        more = params["offset"] + size < len(items)
        next_page = base64.b64encode(json.dumps({**params, "offset": params["offset"] + size}).encode()).decode() \
            if more else None
        counts: dict[str, int] = {}
        for r in items:
            counts[r["attributes"]["status"]] = counts.get(r["attributes"]["status"], 0) + 1
        self.list_calls.append(dict(params))
        return Reply(200, {"data": [self._public(r) for r in page],
                           "meta": {"next_page": next_page, "product": params["product"],
                                    "request_status": params["status"], "count_status": counts}})

    def _cancel_deletion(self, call: Call) -> Reply:
        if denied := self._denied("logs_delete_data"):
            return denied
        request = self.requests.get(call.match["id"])
        if request is None:
            return self.not_found()
        attrs = request["attributes"]
        if attrs["status"] != "pending" or self.now_ms() / 1000 - request["_created"] >= CANCEL_WINDOW:
            return Reply(412, {"errors": ["The deletion request can no longer be canceled"]})
        attrs["status"], attrs["updated_at"] = "canceled", _iso(self.now_ms())
        return Reply(200, {"data": self._public(request)})

    def start(self) -> DatadogEmulator:
        super().start()
        # Headers and body leave in two writes; with Nagle on, each answer waits for the client's
        # delayed ACK (~40 ms).
        handler = self._server.RequestHandlerClass
        self._server.RequestHandlerClass = type(handler.__name__, (handler,), {"disable_nagle_algorithm": True})
        return self
