"""SendGrid v3: subusers, Marketing contacts, bounces, Email Activity and erase jobs, the subset the spec uses.

Bearer auth with the parent account's API key. ``on-behalf-of: <subuser username>`` makes a request
act for that subuser; without it the request acts for the parent account, which has data of its own
(the tests check it is never touched). Errors are ``{"errors": [{"field": ..., "message": ...}]}``;
a 429 carries ``X-RateLimit-Reset`` as a Unix timestamp (what the spec reads).

- ``GET /v3/subusers?username=&limit=&offset=``: a bare JSON array; parent only.
- ``POST /v3/marketing/contacts/search``: understands ``custom_fields.account_id = '<id>'``, optionally
  with ``email = '<address>'`` (either order, joined by ``AND``), and returns only the first 50 matches with
  the total in ``contact_count``. Addresses are stored lower-case (as SendGrid does).
- ``DELETE /v3/marketing/contacts?ids=a,b`` or ``?delete_all_contacts=true`` (honoured: it erases every
  contact of the acting user): 202 ``{"job_id"}``. The contacts go only when the job completes: its
  status (``GET /v3/marketing/contacts/imports/{id}``, the acting user's jobs only) is ``pending`` for
  the first ``pending_polls`` polls, then ``completed``.
- ``GET /v3/suppression/bounces?limit=&offset=``: a bare array, pages of at most ``bounce_page_max``
  (SendGrid: 500); ``DELETE /v3/suppression/bounces`` with ``{"emails": [...]}`` or
  ``{"delete_all": true}`` (honoured): 204.
- ``GET /v3/suppression/bounces/{email}``: one address's bounces (a list).
- ``GET /v3/messages?query=&limit=``: Email Activity, ``unique_args['account_id']="<id>"`` queries, optionally
  ``AND to_email="<address>"``, ``limit`` 1..1000, no paging.
- ``POST /v3/recipients/erasejob`` ``{"email_addresses": [...]}`` (1..5,000, 256 kB, valid addresses):
  202 ``{"job_id"}``; nothing to poll. The erasure happens when the test says SendGrid got round to it
  (``complete_erase_jobs``).

``requests`` keeps every API call (query, headers, body) so tests can say what was never sent.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote

from tests.emulators.base import Call, Emulator, Reply, bearer

KEY = "SG.test-parent-key"
PARENT = "__parent__"  # the parent account's own data
MAX_SEARCH = 50
_NS = uuid.UUID("5e9d0c5e-5e9d-4c5e-9d0c-5e9d0c5e9d0c")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CONDITION = re.compile(r"^\s*(email|custom_fields\.account_id)\s*=\s*'([^'\\]*)'\s*$")
_ACTIVITY_CONDITION = re.compile(r"""^\s*(unique_args\['account_id'\]|to_email)\s*=\s*"([^"\\]*)"\s*$""")


def error(status: int, message: str, field: str | None = None) -> Reply:
    return Reply(status, {"errors": [{"field": field, "message": message}]})


class SendGridEmulator(Emulator):
    name = "sendgrid"
    reset_header = "X-RateLimit-Reset"
    reset_kind = "epoch"

    def __init__(self, *, pending_polls: int = 2, bounce_page_max: int = 500, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pending_polls = pending_polls
        self.bounce_page_max = bounce_page_max
        self.subusers: dict[str, dict] = {}
        self.contacts: dict[str, dict[str, dict]] = {PARENT: {}}  # user -> contact id -> contact
        self.bounces: dict[str, dict[str, dict]] = {PARENT: {}}  # user -> email -> bounce
        self.messages: dict[str, list[dict]] = {PARENT: []}  # user -> activity
        self.jobs: dict[str, dict] = {}  # contact deletion jobs
        self.erase_jobs: list[dict] = []
        self.deleted: dict[str, list[str]] = {"contacts": [], "bounces": [], "erased": []}
        self.requests: list[Call] = []
        self._ids = itertools.count(1000)
        self.route("GET", r"/v3/scopes", self._scopes)
        self.route("GET", r"/v3/subusers", self._list_subusers)
        self.route("POST", r"/v3/marketing/contacts/search", self._search_contacts)
        self.route("DELETE", r"/v3/marketing/contacts", self._delete_contacts)
        self.route("GET", r"/v3/marketing/contacts/imports/(?P<job>[\w-]+)", self._job_status)
        self.route("GET", r"/v3/suppression/bounces", self._list_bounces)
        self.route("DELETE", r"/v3/suppression/bounces", self._delete_bounces)
        self.route("GET", r"/v3/suppression/bounces/(?P<email>[^/]+)", self._get_bounce)
        self.route("GET", r"/v3/messages", self._list_messages)
        self.route("POST", r"/v3/recipients/erasejob", self._erase)

    # -- data ------------------------------------------------------------------------------------

    def add_tenant(self, tenant: str, *, contacts: int = 0, bounces: int = 0, messages: int = 0,
                   recipients: int = 1, shared_recipients: tuple[str, ...] = ()) -> None:
        """A customer: its subuser (username = account id) and its data, or, with ``PARENT``, data of
        the parent account's own. Messages go round-robin to ``recipients`` addresses of its own, plus
        one each to every ``shared_recipients`` address."""
        user = tenant
        if tenant != PARENT:
            self.subusers[tenant] = {"id": next(self._ids), "username": tenant,
                                     "email": f"ops+{tenant}@service.example", "disabled": False}
        self.contacts.setdefault(user, {})
        self.bounces.setdefault(user, {})
        self.messages.setdefault(user, [])
        for i in range(contacts):
            cid = str(uuid.uuid5(_NS, f"{tenant}:contact:{i}"))
            self.contacts[user][cid] = {
                "id": cid, "email": f"contact{i}.{tenant}@example.com", "first_name": f"Lead {i}",
                "custom_fields": {"account_id": tenant}, "list_ids": [], "segment_ids": [],
                "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-02T03:04:05Z"}
        for i in range(bounces):
            address = f"bounce{i}.{tenant}@example.com"
            self.bounces[user][address] = {"created": 1735787045 + i, "email": address, "status": "5.1.1",
                                           "reason": "550 5.1.1 The email account does not exist"}
        for i in range(messages):
            self.messages[user].append(self._message(tenant, f"rcpt{i % recipients}.{tenant}@example.com", i))
        for j, address in enumerate(shared_recipients):
            self.messages[user].append(self._message(tenant, address, messages + j))

    def _message(self, tenant: str, to: str, i: int) -> dict:
        return {"from_email": "meetings@service.example", "msg_id": f"{tenant}.msg{i}", "subject": "Your meeting",
                "to_email": to, "status": "delivered", "opens_count": 0, "clicks_count": 0,
                "last_event_time": "2025-01-02T03:04:05Z", "_account_id": tenant}

    def add_person(self, tenant: str, email: str, *, contacts: int = 1, messages: int = 1,
                   bounced: bool = True) -> list[str]:
        """A person in the tenant's subuser (or the parent's, with ``PARENT``): contacts, messages sent to them
        (Email Activity), a bounce; the contacts' ids."""
        ids = []
        address = email.lower()
        for i in range(messages):
            self.messages.setdefault(tenant, []).append(self._message(tenant, address, 10_000 + i))
        if bounced:
            self.bounces.setdefault(tenant, {})[address] = {"created": 1735787045, "email": address,
                                                            "status": "5.1.1", "reason": "550 5.1.1 mailbox full"}
        for i in range(contacts):
            cid = str(uuid.uuid5(_NS, f"{tenant}:person:{email}:{i}"))
            self.contacts.setdefault(tenant, {})[cid] = {
                "id": cid, "email": email.lower(), "first_name": "Visitor", "custom_fields": {"account_id": tenant},
                "list_ids": [], "segment_ids": [], "created_at": "2025-01-02T03:04:05Z",
                "updated_at": "2025-01-02T03:04:05Z"}
            ids.append(cid)
        return ids

    def person_remaining(self, tenant: str, identifier: str) -> dict[str, int]:
        address = identifier.lower()
        return {"contacts": sum(1 for c in self.contacts.get(tenant, {}).values() if c["email"] == address),
                "bounces": int(address in self.bounces.get(tenant, {})),
                "activity": sum(1 for m in self.messages.get(tenant, []) if m["to_email"] == address)}

    def contact_ids(self, tenant: str) -> set[str]:
        return set(self.contacts.get(tenant, {}))

    def complete_erase_jobs(self) -> int:
        """SendGrid gets round to the accepted erase jobs: the addresses' activity of that user goes."""
        done = 0
        for job in self.erase_jobs:
            if job["done"]:
                continue
            emails = set(job["emails"])
            self.messages[job["user"]] = [m for m in self.messages[job["user"]] if m["to_email"] not in emails]
            job["done"] = True
            done += 1
        return done

    def remaining(self, tenant: str) -> dict[str, int]:
        user = tenant if tenant in self.subusers or tenant == PARENT else None
        if user is None:
            return {"contacts": 0, "bounces": 0, "activity": 0}
        return {"contacts": len(self.contacts.get(user, {})), "bounces": len(self.bounces.get(user, {})),
                "activity": len(self.messages.get(user, []))}

    # -- API -------------------------------------------------------------------------------------

    def handle(self, call: Call) -> Reply:
        if call.path != "/__inspect__":
            with self.lock:
                self.requests.append(call)
        return super().handle(call)

    def authorized(self, call: Call) -> bool:
        return bearer(call, KEY)

    def unauthorized(self) -> Reply:
        return error(401, "authorization required")

    def not_found(self) -> Reply:
        return error(404, "resource not found")

    def _limited(self, wait: float) -> Reply:
        # Rounded up: a reset time that is a whole second never comes before the window really ends.
        reset = math.ceil(time.time() + max(wait, 1.0))
        return Reply(429, {"errors": [{"field": None, "message": "too many requests"}]},
                     {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})

    def _user(self, call: Call) -> str | None:
        """The acting user: the subuser named by on-behalf-of, else the parent; None if unknown."""
        name = call.headers.get("on-behalf-of")
        if name is None:
            return PARENT
        return name if name in self.subusers else None

    def _acting(self, call: Call) -> tuple[str | None, Reply | None]:
        user = self._user(call)
        return (user, None) if user is not None else (None, error(403, "access forbidden"))

    def _int(self, call: Call, name: str, default: int) -> int | None:
        raw = call.arg(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            return None

    def _scopes(self, call: Call) -> Reply:
        """The key's scopes (the specs' credentials pre-flight): every one this emulator checks."""
        return Reply(200, {"scopes": ["marketing.read", "marketing.write", "suppression.read", "suppression.write",
                                      "messages.read", "recipients.erasejob.create", "subusers.read"]})

    def _list_subusers(self, call: Call) -> Reply:
        if "on-behalf-of" in call.headers:
            return error(403, "access forbidden")
        limit, offset = self._int(call, "limit", 500), self._int(call, "offset", 0)
        if limit is None or offset is None or limit < 1 or offset < 0:
            return error(400, "invalid limit or offset", "limit")
        name = call.arg("username")
        items = [s for s in self.subusers.values() if name is None or s["username"] == name]
        return Reply(200, items[offset:offset + min(limit, 500)])

    def _search_contacts(self, call: Call) -> Reply:
        user, refused = self._acting(call)
        if refused:
            return refused
        query = (call.body or {}).get("query") if isinstance(call.body, dict) else None
        conditions: dict[str, str] = {}
        for part in re.split(r"\s+AND\s+", query or ""):
            condition = _CONDITION.match(part)
            if not condition or condition[1] in conditions:
                return error(400, "invalid query", "query")
            conditions[condition[1]] = condition[2]
        if "custom_fields.account_id" not in conditions:
            return error(400, "invalid query", "query")
        found = [c for c in self.contacts.get(user, {}).values()
                 if c["custom_fields"].get("account_id") == conditions["custom_fields.account_id"]
                 and conditions.get("email", c["email"]).lower() == c["email"]]
        return Reply(200, {"result": found[:MAX_SEARCH], "contact_count": len(found),
                           "_metadata": {"self": f"{self.url}/v3/marketing/contacts/search"}})

    def _delete_contacts(self, call: Call) -> Reply:
        user, refused = self._acting(call)
        if refused:
            return refused
        ids, everything = call.arg("ids"), call.arg("delete_all_contacts")
        if (ids is None) == (everything is None):
            return error(400, "must set either ids or delete_all_contacts")
        if everything is not None:
            if everything != "true":
                return error(400, "delete_all_contacts must be 'true'", "delete_all_contacts")
            targets = list(self.contacts.get(user, {}))
        else:
            targets = [i for i in ids.split(",") if i]
            if not targets:
                return error(400, "ids must be a comma-separated list of contact ids", "ids")
        job_id = str(uuid.uuid4())
        self.jobs[job_id] = {"id": job_id, "user": user, "ids": targets, "polls": 0, "status": "pending"}
        return Reply(202, {"job_id": job_id})

    def _job_status(self, call: Call) -> Reply:
        user, refused = self._acting(call)
        if refused:
            return refused
        job = self.jobs.get(call.match["job"])
        if job is None or job["user"] != user:
            return self.not_found()
        job["polls"] += 1
        if job["status"] == "pending" and job["polls"] > self.pending_polls:
            store = self.contacts.get(user, {})
            for cid in job["ids"]:
                if store.pop(cid, None) is not None:
                    self.deleted["contacts"].append(cid)
            job["status"] = "completed"
        count = len(job["ids"])
        return Reply(200, {"id": job["id"], "status": job["status"], "job_type": "delete",
                           "results": {"requested_count": count, "created_count": 0, "updated_count": 0,
                                       "deleted_count": count if job["status"] == "completed" else 0,
                                       "errored_count": 0},
                           "started_at": "2025-01-02T03:04:05Z",
                           "finished_at": "2025-01-02T03:04:09Z" if job["status"] == "completed" else None})

    def _list_bounces(self, call: Call) -> Reply:
        user, refused = self._acting(call)
        if refused:
            return refused
        limit, offset = self._int(call, "limit", 500), self._int(call, "offset", 0)
        if limit is None or offset is None or limit < 1 or offset < 0:
            return error(400, "invalid limit or offset", "limit")
        items = sorted(self.bounces.get(user, {}).values(), key=lambda b: b["email"])
        return Reply(200, items[offset:offset + min(limit, self.bounce_page_max)])

    def _get_bounce(self, call: Call) -> Reply:
        """Retrieve a Bounce: the bounces of one address (a list, empty when there are none)."""
        user, refused = self._acting(call)
        if refused:
            return refused
        bounce = self.bounces.get(user, {}).get(unquote(call.match["email"]))
        return Reply(200, [bounce] if bounce else [])

    def _delete_bounces(self, call: Call) -> Reply:
        user, refused = self._acting(call)
        if refused:
            return refused
        body = call.body if isinstance(call.body, dict) else {}
        emails, everything = body.get("emails"), body.get("delete_all")
        if (emails is None) == (everything is None):
            return error(400, "give either emails or delete_all")
        store = self.bounces.get(user, {})
        targets = list(store) if everything is True else (emails if isinstance(emails, list) else [])
        for address in targets:
            if store.pop(address, None) is not None:
                self.deleted["bounces"].append(address)
        return Reply(204)

    def _list_messages(self, call: Call) -> Reply:
        user, refused = self._acting(call)
        if refused:
            return refused
        query = call.arg("query")
        if query is None:
            return error(400, "query is required", "query")
        conditions: dict[str, str] = {}
        for part in re.split(r"\s+AND\s+", query):
            condition = _ACTIVITY_CONDITION.match(part)
            if not condition or condition[1] in conditions:
                return error(400, "invalid syntax: unsupported query")
            conditions[condition[1]] = condition[2]
        account = conditions.get("unique_args['account_id']")
        if account is None:
            return error(400, "invalid syntax: unsupported query")
        limit = self._int(call, "limit", 10)
        if limit is None or not 1 <= limit <= 1000:
            return error(400, "limit must be greater than 0 and less than or equal to 1000", "limit")
        found = [{k: v for k, v in m.items() if not k.startswith("_")}
                 for m in self.messages.get(user, []) if m["_account_id"] == account
                 and conditions.get("to_email", m["to_email"]) == m["to_email"]]
        return Reply(200, {"messages": found[:limit]})

    def _erase(self, call: Call) -> Reply:
        user, refused = self._acting(call)
        if refused:
            return refused
        if len(call.raw) > 256 * 1024:
            return error(413, "payload larger than 256Kb")
        addresses = (call.body or {}).get("email_addresses") if isinstance(call.body, dict) else None
        if not isinstance(addresses, list) or not 1 <= len(addresses) <= 5000:
            return error(400, "email_addresses must hold 1 to 5000 addresses", "email_addresses")
        for address in addresses:
            if not isinstance(address, str) or not _EMAIL.match(address):
                return error(400, f"Email_address {address} is not valid", "email_addresses")
        unique = list(dict.fromkeys(a.lower() for a in addresses))
        job_id = str(uuid.uuid4())
        self.erase_jobs.append({"job_id": job_id, "user": user, "emails": unique, "done": False})
        self.deleted["erased"] += unique
        return Reply(202, {"job_id": job_id})


def sent_query(call: Call) -> str:
    """A call's query string and body as text, for asserting what was never sent."""
    return json.dumps({"query": call.query, "body": call.body})
