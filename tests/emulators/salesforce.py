"""Salesforce REST API v62.0: SOQL ``query``/``queryAll`` and sObject Collections delete, the subset the spec uses.

One org: the processor's own (the DPA's CRM subprocessor), holding records of many customers' accounts
side by side, and the processor's own records (``add_own``: its prospects, with no account stamp).

Auth: the OAuth 2.0 client credentials flow of a connected app. ``POST /services/oauth2/token`` with
``grant_type=client_credentials`` and the app's consumer key and secret (``CLIENT_ID``, ``client_secret``;
form fields or HTTP Basic) answers an access token; a wrong secret is 400 ``invalid_client``. Tokens expire
``token_lifetime`` seconds after they are issued (the org's session timeout), by the emulator's clock
(``time.time()``); Salesforce's answer carries no ``expires_in``, and neither does this one unless
``report_expires_in`` (a generic RFC 6749 server's answer). An expired, revoked (``revoke_tokens``) or
unknown token is 401 ``INVALID_SESSION_ID``. ``TOKEN`` is a session that never expires, for tests reading the
org directly. ``token_requests`` counts the token endpoint's answers, ``refused_tokens`` the 401s.

Records are Leads and Contacts with 18-character
ids (key prefix 00Q / 003, case-safe suffix computed as Salesforce does) and the custom field
``Qualified_Account__c`` holding the account id the record concerns.

``ignore_where``: a fault for tests, the query returns every record of the object as if its WHERE
clause had been lost (a query built wrong, a filter on a field someone renamed).

``query`` runs a small SOQL subset (``SELECT f1, f2 FROM Type [WHERE f = 'v' [AND ...]]``) and leaves
out soft-deleted records; ``queryAll`` includes them with ``IsDeleted = true``. Results come in batches
of ``min(batchSize, page_cap)`` (``Sforce-Query-Options: batchSize=`` is honoured between 200 and
2000, default 2000; tests lower ``page_cap``) with ``nextRecordsUrl`` ``/services/data/v62.0/query/<locator>-<n>``
until ``done``. The locator is a snapshot taken when the query ran.

``DELETE /composite/sobjects?ids=...&allOrNone=`` takes up to 200 ids and answers 200 with one
DeleteResult per id, in order: a live record goes to the Recycle Bin (``IsDeleted``, still visible to
queryAll); one already in the bin is ``ENTITY_IS_DELETED``; an unknown or purged id is
``INVALID_CROSS_REFERENCE_KEY``; a ``locked`` record (say a contact with a portal user) is
``DELETE_FAILED``. With ``allOrNone=true`` one failure rolls every deletion of the call back.

Someone else may delete a record while a run is going: records added as ``deleted_meanwhile`` are
moved to the Recycle Bin, and ``purged_meanwhile`` ones removed for good, right after a ``query``
first returned them (a sales rep deleting a lead, a merge, an emptied bin).

Every response carries ``Sforce-Limit-Info: api-usage=<used>/<limit>``; once ``api_limit`` calls have
been used the API answers 403 ``REQUEST_LIMIT_EXCEEDED``. Error bodies are arrays
``[{"message", "errorCode"}]``.
"""

from __future__ import annotations

import base64
import itertools
import re
import secrets
import time
from typing import Any
from urllib.parse import unquote_plus

from tests.emulators.base import Call, Emulator, Reply, bearer

API = "/services/data/v62.0"
TOKEN = "00D000000000001!salesforce-test-token"
TOKEN_PATH = "/services/oauth2/token"
CLIENT_ID = "3MVG9test.connected.app.consumer.key"
CLIENT_SECRET = "salesforce-test-consumer-secret"
ACCOUNT_FIELD = "Qualified_Account__c"
PREFIXES = {"Lead": "00Q", "Contact": "003"}
FIELDS = {"Id", "IsDeleted", ACCOUNT_FIELD, "Email", "LastName"}
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SOQL = re.compile(r"^\s*SELECT\s+(?P<fields>\w+(?:\s*,\s*\w+)*)\s+FROM\s+(?P<type>\w+)"
                   r"(?:\s+WHERE\s+(?P<where>.+?))?\s*$", re.IGNORECASE)
_CONDITION = re.compile(r"^\s*(?P<field>\w+)\s*=\s*(?:'(?P<text>(?:[^'\\]|\\.)*)'|(?P<bool>true|false))\s*$",
                        re.IGNORECASE)


def case_safe(id15: str) -> str:
    """The 18-character form of a 15-character id: three characters encoding where the upper case letters are."""
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = sum(1 << i for i, c in enumerate(chunk) if c.isupper())
        suffix += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
    return id15 + suffix


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, [{"message": message, "errorCode": code}])


class SalesforceEmulator(Emulator):
    name = "salesforce"

    def __init__(self, *, page_cap: int = 2000, api_limit: int = 5000, client_secret: str = CLIENT_SECRET,
                 token_lifetime: float = 7200.0, report_expires_in: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.report_expires_in = report_expires_in
        self.tokens: dict[str, float] = {}  # access token -> when it expires (time.time())
        self.token_requests = 0
        self.refused_tokens = 0
        self.records: dict[str, dict] = {}  # Id -> {"type", "Id", "IsDeleted", fields...}
        self.page_cap = page_cap
        self.api_limit = api_limit
        self.ignore_where = False
        self.api_usage = 0
        self._ids = itertools.count(1)  # per emulator: two emulators seeded alike hold the same ids
        self._locators = itertools.count(1)
        self._cursors: dict[str, tuple[list[dict], int]] = {}  # locator -> (rows, batch size)
        self._vanish: dict[str, str] = {}  # Id -> "bin" | "purge", applied once a query returned it
        self._purged: set[str] = set()
        self.route("GET", rf"{API}/query", self._query(include_deleted=False))
        self.route("GET", rf"{API}/queryAll", self._query(include_deleted=True))
        self.route("GET", rf"{API}/(?:query|queryAll)/(?P<locator>01g\w+)-(?P<offset>\d+)", self._more)
        self.route("DELETE", rf"{API}/composite/sobjects", self._delete_collection)
        self.route("GET", rf"{API}/sobjects/(?P<type>Lead|Contact)/describe", self._describe)
        self.route("GET", rf"{API}/sobjects/(?P<type>\w+)/(?P<id>\w+)", self._get_record)

    # -- data ------------------------------------------------------------------------------------

    def new_id(self, sobject: str) -> str:
        n, digits = next(self._ids), ""
        while n:
            n, r = divmod(n, 62)
            digits = _BASE62[r] + digits
        return case_safe(PREFIXES[sobject] + "0" * 3 + "X" + digits.rjust(8, "0"))

    def add_record(self, sobject: str, tenant: str, **fields: Any) -> str:
        record_id = self.new_id(sobject)
        self.records[record_id] = {"type": sobject, "Id": record_id, "IsDeleted": False, ACCOUNT_FIELD: tenant,
                                   "LastName": f"Person {record_id[-6:]}", "Email": f"{record_id.lower()}@example.com",
                                   **fields}
        return record_id

    def add_tenant(self, tenant: str, *, leads: int, contacts: int, deleted_meanwhile: int = 0,
                   purged_meanwhile: int = 0, locked: int = 0) -> None:
        """Leads and contacts of a tenant; the first leads vanish behind our back, the first contacts are locked."""
        lead_ids = [self.add_record("Lead", tenant) for _ in range(leads)]
        contact_ids = [self.add_record("Contact", tenant) for _ in range(contacts)]
        for record_id in lead_ids[:deleted_meanwhile]:
            self._vanish[record_id] = "bin"
        for record_id in lead_ids[deleted_meanwhile:deleted_meanwhile + purged_meanwhile]:
            self._vanish[record_id] = "purge"
        for record_id in contact_ids[:locked]:
            self.records[record_id]["locked"] = True

    def add_own(self, *, leads: int, contacts: int) -> None:
        """The processor's own records (its prospects and customers' contract contacts): no account stamp."""
        for _ in range(leads):
            self.add_record("Lead", None)
        for _ in range(contacts):
            self.add_record("Contact", None)

    def add_person(self, tenant: str | None, email: str, *, leads: int = 1, contacts: int = 1) -> list[str]:
        """A person's leads and contacts filed for the tenant (``None``: the processor's own); their ids."""
        return [self.add_record(sobject, tenant, Email=email)
                for sobject, n in (("Lead", leads), ("Contact", contacts)) for _ in range(n)]

    def person_remaining(self, tenant: str, identifier: str) -> dict[str, int]:
        mine = [r for r in self.records.values()
                if r[ACCOUNT_FIELD] == tenant and r["Email"] == identifier and not r["IsDeleted"]]
        return {"leads": sum(1 for r in mine if r["type"] == "Lead"),
                "contacts": sum(1 for r in mine if r["type"] == "Contact")}

    def own_remaining(self) -> int:
        return sum(1 for r in self.records.values() if r[ACCOUNT_FIELD] is None and not r["IsDeleted"])

    def deleted_ids(self) -> set[str]:
        """Ids no longer live: in the Recycle Bin, or purged (never seen again)."""
        return {i for i, r in self.records.items() if r["IsDeleted"]} | self._purged

    def remaining(self, tenant: str) -> dict[str, int]:
        mine = [r for r in self.records.values() if r[ACCOUNT_FIELD] == tenant]
        return {"leads": sum(1 for r in mine if r["type"] == "Lead" and not r["IsDeleted"]),
                "contacts": sum(1 for r in mine if r["type"] == "Contact" and not r["IsDeleted"]),
                "recycle_bin": sum(1 for r in mine if r["IsDeleted"])}

    # -- transport -------------------------------------------------------------------------------

    def handle(self, call: Call) -> Reply:
        if call.method == "POST" and call.path == TOKEN_PATH:
            with self.lock:
                return self._token(call)
        if call.path == "/__inspect__" or not self.authorized(call):
            if call.path != "/__inspect__":
                with self.lock:
                    self.refused_tokens += 1
            return super().handle(call)
        with self.lock:
            if self.api_usage >= self.api_limit:
                reply = _error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            else:
                self.api_usage += 1
                reply = super().handle(call)
            reply.headers["Sforce-Limit-Info"] = f"api-usage={self.api_usage}/{self.api_limit}"
            return reply

    def _describe(self, call: Call) -> Reply:
        """sObject Describe (the spec's credentials pre-flight): the object's metadata, no records."""
        return Reply(200, {"name": call.match["type"], "queryable": True, "deletable": True,
                           "fields": [{"name": "Id"}, {"name": "Email"}, {"name": ACCOUNT_FIELD}]})

    def authorized(self, call: Call) -> bool:
        if bearer(call, TOKEN):
            return True
        given = call.headers.get("authorization", "").removeprefix("Bearer ")
        with self.lock:
            return time.time() < self.tokens.get(given, 0.0)

    # -- OAuth 2.0 client credentials ------------------------------------------------------------

    def _token(self, call: Call) -> Reply:
        self.token_requests += 1
        form = call.body if isinstance(call.body, dict) else {}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = call.headers.get("authorization", "")
        if basic.startswith("Basic "):
            client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        if client_id != CLIENT_ID or secret != self.client_secret:
            return Reply(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        token = f"00D000000000001!{secrets.token_urlsafe(24)}"
        issued = time.time()
        self.tokens[token] = issued + self.token_lifetime
        answer = {"access_token": token, "instance_url": self.url, "token_type": "Bearer",
                  "issued_at": str(int(issued * 1000)), "scope": "api"}
        if self.report_expires_in:
            answer["expires_in"] = self.token_lifetime
        return Reply(200, answer)

    def revoke_tokens(self) -> None:
        """Every issued token revoked (an admin ending the integration user's sessions)."""
        with self.lock:
            self.tokens.clear()

    def all_tokens_expired(self) -> bool:
        with self.lock:
            return all(time.time() >= expiry for expiry in self.tokens.values())

    def unauthorized(self) -> Reply:
        return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def not_found(self) -> Reply:
        return _error(404, "NOT_FOUND", "The requested resource does not exist")

    # -- query -----------------------------------------------------------------------------------

    def _query(self, *, include_deleted: bool):
        def handler(call: Call) -> Reply:
            soql = call.arg("q")
            if not soql:
                return _error(400, "MALFORMED_QUERY", "A query string has to be specified")
            parsed = _SOQL.match(soql)
            if parsed is None:
                return _error(400, "MALFORMED_QUERY", f"unexpected token in: {soql}")
            sobject = next((t for t in PREFIXES if t.lower() == parsed["type"].lower()), None)
            if sobject is None:
                return _error(400, "INVALID_TYPE", f"sObject type '{parsed['type']}' is not supported.")
            fields = [f.strip() for f in parsed["fields"].split(",")]
            conditions = []
            for part in re.split(r"\s+AND\s+", parsed["where"] or "", flags=re.IGNORECASE) if parsed["where"] else []:
                condition = _CONDITION.match(part)
                if condition is None:
                    return _error(400, "MALFORMED_QUERY", f"unexpected token: {part.strip()}")
                value: Any = condition["text"] if condition["bool"] is None else condition["bool"].lower() == "true"
                conditions.append((condition["field"], value))
            unknown = [f for f in fields + [c[0] for c in conditions] if f not in FIELDS]
            if unknown:
                return _error(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on entity '{sobject}'.")
            if self.ignore_where:
                conditions = []
            rows = [self._row(r, fields) for r in self.records.values()
                    if r["type"] == sobject and (include_deleted or not r["IsDeleted"])
                    and all(r.get(f) == v for f, v in conditions)]
            locator = f"01g{next(self._locators):012d}"
            self._cursors[locator] = (rows, self._batch_size(call))
            reply = self._page(locator, 0, "queryAll" if include_deleted else "query")
            if not include_deleted:
                self._vanish_listed(reply.body["records"])
            return reply
        return handler

    def _more(self, call: Call) -> Reply:
        if call.match["locator"] not in self._cursors:
            return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        kind = "queryAll" if call.path.startswith(f"{API}/queryAll/") else "query"
        reply = self._page(call.match["locator"], int(call.match["offset"]), kind)
        if kind == "query":
            self._vanish_listed(reply.body["records"])
        return reply

    def _batch_size(self, call: Call) -> int:
        options = call.headers.get("sforce-query-options", "")
        asked = re.search(r"batchSize=(\d+)", options)
        size = min(2000, max(200, int(asked[1]))) if asked else 2000
        return min(size, self.page_cap)

    def _page(self, locator: str, offset: int, kind: str) -> Reply:
        rows, size = self._cursors[locator]
        chunk = rows[offset:offset + size]
        done = offset + size >= len(rows)
        body: dict[str, Any] = {"totalSize": len(rows), "done": done, "records": chunk}
        if not done:
            body["nextRecordsUrl"] = f"{API}/{kind}/{locator}-{offset + size}"
        return Reply(200, body)

    def _row(self, record: dict, fields: list[str]) -> dict:
        row = {"attributes": {"type": record["type"], "url": f"{API}/sobjects/{record['type']}/{record['Id']}"}}
        row.update({f: record.get(f) for f in fields})
        return row

    def _vanish_listed(self, rows: list[dict]) -> None:
        for row in rows:
            how = self._vanish.pop(row.get("Id"), None)
            if how == "bin":
                self.records[row["Id"]]["IsDeleted"] = True
            elif how == "purge":
                self.records.pop(row["Id"], None)
                self._purged.add(row["Id"])

    # -- records ---------------------------------------------------------------------------------

    def _get_record(self, call: Call) -> Reply:
        record = self.records.get(call.match["id"])
        if record is None or record["IsDeleted"] or record["type"] != call.match["type"]:
            return self.not_found()
        return Reply(200, self._row(record, sorted(FIELDS)))

    def _delete_collection(self, call: Call) -> Reply:
        ids = [i for i in (call.arg("ids") or "").split(",") if i]
        if not ids:
            return _error(400, "MISSING_ARGUMENT", "ids parameter is required")
        if len(ids) > 200:
            return _error(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records "
                                                    "into this call")
        all_or_none = (call.arg("allOrNone") or "false").lower() == "true"
        results, to_bin = [], []
        for record_id in ids:
            record = self.records.get(record_id)
            if record is None:
                results.append(self._failed(record_id, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"))
            elif record["IsDeleted"]:
                results.append(self._failed(record_id, "ENTITY_IS_DELETED", "entity is deleted"))
            elif record.get("locked"):
                results.append(self._failed(record_id, "DELETE_FAILED",
                                            "Your attempt to delete this record failed because it is in use"))
            else:
                results.append({"id": record_id, "success": True, "errors": []})
                to_bin.append(record)
        if all_or_none and len(to_bin) < len(ids):
            results = [r if not r["success"] else self._failed(r["id"], "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                                               "Record rolled back because not all records were valid "
                                                               "and the request was using AllOrNone header")
                       for r in results]
            return Reply(200, results)
        for record in to_bin:
            record["IsDeleted"] = True
        return Reply(200, results)

    @staticmethod
    def _failed(record_id: str, code: str, message: str) -> dict:
        return {"id": record_id, "success": False, "errors": [{"statusCode": code, "message": message, "fields": []}]}
