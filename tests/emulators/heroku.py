"""Heroku Platform API v3: add-ons of an app, the subset the spec uses.

Bearer auth. Every request must send ``Accept: application/vnd.heroku+json; version=3``; without it
the answer is 400 ``{"id": "missing_version", ...}``. Errors are ``{"id": ..., "message": ...}``.
``GET /apps/{app}/addons`` is a JSON array sorted by id, paged with the ``Range`` request header
(``id ..; max=N``, then the previous ``Next-Range`` value such as ``id ]<last id>..; max=N``): 206 and
``Next-Range`` while more remain, 200 on the last page; pages hold at most ``page_max`` (Heroku: 200 by
default, 1000 at most). ``GET``/``DELETE /apps/{app}/addons/{id or name}``: 200 with the add-on (a
deleted one in state ``deprovisioned``), 404 ``not_found`` when missing. A 429 is
``{"id": "rate_limit"}`` with ``RateLimit-Remaining: 0`` and no Retry-After, as Heroku's.

``ghosts``: names of add-ons that still show in the listing but are already gone (deleted by someone
else between the listing and the delete). ``requests`` keeps every API call.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.emulators.base import Call, Emulator, Reply, bearer

TOKEN = "heroku-test-token"
APP = "qualified-production"
ACCEPT = "application/vnd.heroku+json; version=3"
_NS = uuid.UUID("4e7b2a10-0c8f-4d5e-9b1a-7f3e2d1c0b9a")
_RANGE = re.compile(r"^\s*(?:(?P<field>\w+)\s+)?(?P<open>[\]\[]?)(?P<start>[^.;\s]*)\.\.(?P<end>[^;\s]*)"
                    r"\s*(?:;\s*(?P<opts>.*))?$")


def error(status: int, error_id: str, message: str, **extra: Any) -> Reply:
    return Reply(status, {"id": error_id, "message": message, **extra})


class HerokuEmulator(Emulator):
    name = "heroku"

    def __init__(self, *, page_max: int = 200, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.page_max = page_max
        self.apps: dict[str, dict] = {}
        self.addons: dict[str, dict] = {}  # id -> add-on
        self.ghosts: set[str] = set()
        self.deleted: list[str] = []  # add-on names
        self.requests: list[Call] = []
        self._throttle = 0
        self.add_app(APP)
        self.route("GET", r"/apps/(?P<app>[\w.-]+)/addons", self._list)
        self.route("GET", r"/apps/(?P<app>[\w.-]+)/addons/(?P<addon>[\w.-]+)", self._info)
        self.route("DELETE", r"/apps/(?P<app>[\w.-]+)/addons/(?P<addon>[\w.-]+)", self._delete)

    # -- data ------------------------------------------------------------------------------------

    def add_app(self, name: str) -> dict:
        app = {"id": str(uuid.uuid5(_NS, f"app:{name}")), "name": name}
        self.apps[name] = app
        return app

    def add_addon(self, name: str, *, plan: str = "heroku-postgresql:standard-0", app: str = APP) -> str:
        addon_id = str(uuid.uuid5(_NS, f"addon:{app}:{name}"))
        self.addons[addon_id] = {"id": addon_id, "name": name, "state": "provisioned",
                                 "app": dict(self.apps[app]), "plan": {"name": plan},
                                 "addon_service": {"name": plan.split(":")[0]},
                                 "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z"}
        return addon_id

    def add_tenant(self, tenant: str) -> str:
        return self.add_addon(f"{tenant}-db")

    def throttle(self, calls: int) -> None:
        """The next ``calls`` API calls answer 429 (the account's token bucket is empty)."""
        self._throttle = calls

    def remaining(self, tenant: str) -> dict[str, int]:
        return {"addons": sum(1 for a in self.addons.values()
                              if a["name"] == f"{tenant}-db" and a["name"] not in self.ghosts)}

    # -- API -------------------------------------------------------------------------------------

    def handle(self, call: Call) -> Reply:
        if call.path == "/__inspect__":
            return super().handle(call)
        with self.lock:
            self.requests.append(call)
        if ACCEPT not in [part.strip() for part in call.headers.get("accept", "").split(",")]:
            return error(400, "missing_version", "Please specify a version along with Heroku's API MIME type. "
                         f"For example, `Accept: {ACCEPT}`.")
        if self.authorized(call):
            with self.lock:
                if self._throttle > 0:
                    self._throttle -= 1
                    return self._limited(0)
        reply = super().handle(call)
        reply.headers.setdefault("RateLimit-Remaining", "0" if reply.status == 429 else "4499")
        return reply

    def authorized(self, call: Call) -> bool:
        return bearer(call, TOKEN)

    def unauthorized(self) -> Reply:
        return error(401, "unauthorized", "Invalid credentials provided.")

    def not_found(self) -> Reply:
        return error(404, "not_found", "Couldn't find that add on.", resource="addon")

    def _limited(self, wait: float) -> Reply:
        return Reply(429, {"id": "rate_limit", "message": "Your account reached the API rate limit\n"
                           "Please wait a few minutes before making new requests"}, {"RateLimit-Remaining": "0"})

    def _app(self, call: Call) -> dict | None:
        name = call.match["app"]
        return self.apps.get(name) or next((a for a in self.apps.values() if a["id"] == name), None)

    def _addon(self, app: dict, key: str) -> dict | None:
        for addon in self.addons.values():
            if addon["app"]["id"] == app["id"] and key in (addon["id"], addon["name"]) \
                    and addon["name"] not in self.ghosts:
                return addon
        return None

    def _list(self, call: Call) -> Reply:
        app = self._app(call)
        if app is None:
            return error(404, "not_found", "Couldn't find that app.", resource="app")
        size, start, exclusive = self.page_max, "", False
        if "range" in call.headers:
            parsed = _RANGE.match(call.headers["range"])
            if not parsed or (parsed["field"] or "id") != "id":
                return error(400, "invalid_range", "Invalid Range header.")
            opts = dict(o.strip().split("=", 1) for o in (parsed["opts"] or "").split(",") if "=" in o)
            size = min(int(opts.get("max", self.page_max)), self.page_max, 1000)
            start, exclusive = parsed["start"], parsed["open"] == "]"
        items = sorted((a for a in self.addons.values() if a["app"]["id"] == app["id"]), key=lambda a: a["id"])
        if start:
            items = [a for a in items if a["id"] > start or (not exclusive and a["id"] == start)]
        page, more = items[:size], len(items) > size
        headers = {}
        if page:
            headers["Content-Range"] = f"id {page[0]['id']}..{page[-1]['id']}; max={size}"
        if more:
            headers["Next-Range"] = f"id ]{page[-1]['id']}..; max={size}"
        return Reply(206 if more else 200, page, headers)

    def _info(self, call: Call) -> Reply:
        app = self._app(call)
        addon = self._addon(app, call.match["addon"]) if app else None
        return Reply(200, addon) if addon else self.not_found()

    def _delete(self, call: Call) -> Reply:
        app = self._app(call)
        addon = self._addon(app, call.match["addon"]) if app else None
        if addon is None:
            return self.not_found()
        del self.addons[addon["id"]]
        self.deleted.append(addon["name"])
        return Reply(200, {**addon, "state": "deprovisioned"})
