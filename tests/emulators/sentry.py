"""Sentry: Web API /api/0 (organization projects, project issues, bulk remove, one issue), the subset the spec uses.

Bearer tokens with scopes (``project:read`` to list projects, ``event:read`` to list and retrieve
issues, ``event:admin`` to remove them; 403 otherwise). Lists are bare JSON arrays paged by the
``Link`` header, which always carries both ``rel="previous"`` and ``rel="next"``, each with
``results="true|false"`` and ``cursor="0:<offset>:<is_prev>"``; the next link keeps the request's
other parameters. A project's issue list applies ``is:unresolved`` when no ``query`` is given.

The bulk remove is faithful to Sentry's dangerous default: with ``?id=..`` it marks those issues of
the project PENDING_DELETION (ids out of scope are ignored, still 204); with no ``id`` (``id[]=`` is
not ``id``) it removes up to 1000 issues matching the search, ``is:unresolved`` by default. Every
bulk remove is kept in ``bulk_removes`` for tests. An issue pending deletion is gone from lists and
answers 404; ``finish_deletions()`` plays Sentry's deletion task and drops it from storage.

Every response carries ``X-Sentry-Rate-Limit-{Limit,Remaining,Reset,ConcurrentLimit}``; a 429 names
the reset as UTC epoch seconds, rounded up to the whole second at which the window really ends.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any
from urllib.parse import quote

from tests.emulators.base import Call, Emulator, Reply

ORG = "qualified"
TOKEN = "sntrys_test_token"
ALL_SCOPES = frozenset({"project:read", "event:read", "event:admin"})
STATUSES = ("unresolved", "resolved", "ignored")
PENDING_DELETION = "pending_deletion"
BULK_LIMIT = 1000  # an id-less bulk remove takes at most this many issues
FIRST_ID = 4_000_000_001  # issue ids count up per emulator: two emulators filled alike hold the same ids


class SentryEmulator(Emulator):
    name = "sentry"
    reset_header = "X-Sentry-Rate-Limit-Reset"
    reset_kind = "epoch"

    def __init__(self, *, page_size: int = 100, scopes: frozenset[str] = ALL_SCOPES, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.page_size = page_size  # Sentry pages 100 issues; tests lower it to see pages
        self.scopes = set(scopes)
        self.projects: dict[str, dict] = {}  # slug -> project
        self.issues: dict[str, dict] = {}  # id -> issue (with "status", possibly pending_deletion)
        self.bulk_removes: list[dict] = []  # {"project", "ids", "query", "removed"} per bulk remove
        self._ids = itertools.count(FIRST_ID)
        org = r"/api/0/organizations/(?P<org>[^/]+)"
        self.route("GET", rf"{org}/projects/", self._list_projects)
        self.route("GET", rf"{org}/issues/(?P<id>[^/]+)/", self._get_issue)
        issues = r"/api/0/projects/(?P<org>[^/]+)/(?P<project>[^/]+)/issues/"
        self.route("GET", issues, self._list_issues)
        self.route("DELETE", issues, self._bulk_remove)

    # -- data ------------------------------------------------------------------------------------

    def add_project(self, slug: str, **by_status: int) -> list[str]:
        """A project with ``unresolved=3, resolved=1, ...`` issues; returns the issue ids."""
        project = self.projects.setdefault(slug, {"id": str(len(self.projects) + 1), "slug": slug,
                                                  "name": slug, "status": "active"})
        ids = []
        for status in STATUSES:
            for _ in range(by_status.get(status, 0)):
                issue_id = str(next(self._ids))
                count = sum(1 for i in self.issues.values() if i["project"]["slug"] == slug) + 1
                self.issues[issue_id] = {
                    "id": issue_id, "shortId": f"{slug.upper()}-{count:X}", "title": f"Error {issue_id}",
                    "status": status, "project": {"id": project["id"], "slug": slug, "name": slug},
                }
                ids.append(issue_id)
        return ids

    def visible(self, slug: str) -> list[dict]:
        return [i for i in self.issues.values() if i["project"]["slug"] == slug and i["status"] != PENDING_DELETION]

    def remaining(self, tenant: str) -> dict[str, int]:
        """The tenant's project: issues the API still serves, and issues awaiting Sentry's deletion task."""
        mine = [i for i in self.issues.values() if i["project"]["slug"] == tenant]
        pending = sum(1 for i in mine if i["status"] == PENDING_DELETION)
        return {"issues": len(mine) - pending, "pending_deletion": pending}

    def finish_deletions(self) -> int:
        """Sentry's deletion task: issues pending deletion leave storage."""
        gone = [k for k, v in self.issues.items() if v["status"] == PENDING_DELETION]
        for k in gone:
            del self.issues[k]
        return len(gone)

    # -- API -------------------------------------------------------------------------------------

    def authorized(self, call: Call) -> bool:
        return call.headers.get("authorization") == f"Bearer {TOKEN}"

    def unauthorized(self) -> Reply:
        return Reply(401, {"detail": "Invalid token"})

    def not_found(self) -> Reply:
        return Reply(404, {"detail": "The requested resource does not exist"})

    def handle(self, call: Call) -> Reply:
        reply = super().handle(call)
        if call.path != "/__inspect__":
            reset = str(math.ceil(max(time.time(), self._not_before)) + 1)
            reply.headers.setdefault("X-Sentry-Rate-Limit-Limit", "40")
            reply.headers.setdefault("X-Sentry-Rate-Limit-Remaining", "0" if reply.status == 429 else "39")
            reply.headers.setdefault("X-Sentry-Rate-Limit-Reset", reset)
            reply.headers.setdefault("X-Sentry-Rate-Limit-ConcurrentLimit", "25")
        return reply

    def _limited(self, wait: float) -> Reply:
        # The reset is a whole epoch second: the window ends there, not at an instant inside the
        # second (the base class would advertise a second that can lie before its own not-before).
        now = time.time()
        reset = math.ceil(self._not_before if self._not_before > now else now + wait)
        self._not_before = float(reset)
        return Reply(429, {"detail": "You are attempting to use this endpoint too frequently. Limit is 40 "
                                     "requests in 1 seconds"}, {self.reset_header: str(reset)})

    def _forbidden(self, scope: str) -> Reply | None:
        if scope in self.scopes:
            return None
        return Reply(403, {"detail": "You do not have permission to perform this action."})

    def _page(self, call: Call, items: list[dict]) -> Reply:
        cursor = call.arg("cursor", "0:0:0")
        try:
            offset = max(0, int(cursor.split(":")[1]))
        except (IndexError, ValueError):
            return Reply(400, {"detail": "Invalid cursor parameter."})
        size = self.page_size
        chunk = items[offset:offset + size]
        more, before = offset + size < len(items), offset > 0
        keep = "".join(f"{quote(k)}={quote(v, safe=':')}&" for k, values in call.query.items() if k != "cursor"
                       for v in values)
        base = f"{self.url}{call.path}?{keep}"
        prev_cursor, next_cursor = f"0:{max(0, offset - size)}:1", f"0:{offset + size}:0"
        link = (f'<{base}cursor={prev_cursor}>; rel="previous"; results="{str(before).lower()}"; '
                f'cursor="{prev_cursor}", '
                f'<{base}cursor={next_cursor}>; rel="next"; results="{str(more).lower()}"; cursor="{next_cursor}"')
        return Reply(200, chunk, {"Link": link})

    def _list_projects(self, call: Call) -> Reply:
        if call.match["org"] != ORG:
            return self.not_found()
        return self._forbidden("project:read") or self._page(call, list(self.projects.values()))

    def _search(self, slug: str, query: str) -> list[dict] | None:
        """Issues of a project matching a search; None when the search is not understood."""
        wanted: set[str] | None = None
        for term in query.split():
            if not term.startswith("is:") or term[3:] not in STATUSES:
                return None
            wanted = (wanted or set()) | {term[3:]}
        return [i for i in self.visible(slug) if wanted is None or i["status"] in wanted]

    def _list_issues(self, call: Call) -> Reply:
        if call.match["org"] != ORG or call.match["project"] not in self.projects:
            return self.not_found()
        if denied := self._forbidden("event:read"):
            return denied
        found = self._search(call.match["project"], call.arg("query", "is:unresolved"))
        if found is None:
            return Reply(400, {"detail": "Invalid search query"})
        return self._page(call, found)

    def _bulk_remove(self, call: Call) -> Reply:
        slug = call.match["project"]
        if call.match["org"] != ORG or slug not in self.projects:
            return self.not_found()
        if denied := self._forbidden("event:admin"):
            return denied
        ids = call.query.get("id") or []  # "id[]" is another parameter: Sentry does not read it
        if ids:
            if not all(i.isdigit() for i in ids):
                return Reply(400, {"detail": "Invalid issue id"})
            targets = [i for i in self.visible(slug) if i["id"] in set(ids)]  # out of scope: ignored
        else:
            found = self._search(slug, call.arg("query", "is:unresolved"))
            if found is None:
                return Reply(400, {"detail": "Invalid search query"})
            targets = found[:BULK_LIMIT]
        for issue in targets:
            issue["status"] = PENDING_DELETION
        self.bulk_removes.append({"project": slug, "ids": list(ids), "query": call.arg("query"),
                                  "removed": len(targets)})
        return Reply(204)

    def _get_issue(self, call: Call) -> Reply:
        if call.match["org"] != ORG:
            return self.not_found()
        if denied := self._forbidden("event:read"):
            return denied
        issue = self.issues.get(call.match["id"])
        if issue is None or issue["status"] == PENDING_DELETION:
            return self.not_found()
        return Reply(200, issue)

    def start(self) -> SentryEmulator:
        super().start()
        # Headers and body leave in two writes; with Nagle on, each answer waits for the client's
        # delayed ACK (~40 ms). TCP_NODELAY keeps a few hundred calls under a second.
        handler = self._server.RequestHandlerClass
        self._server.RequestHandlerClass = type(handler.__name__, (handler,), {"disable_nagle_algorithm": True})
        return self
