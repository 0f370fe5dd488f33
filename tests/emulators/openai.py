"""OpenAI API v1: stored responses, conversations and their items, files, the subset the spec uses.

Bearer auth with a project API key; objects live in a project (the key's own, or the one named by
the ``OpenAI-Project`` header) and are invisible (404) from any other. Errors are
``{"error": {"message", "type", "param", "code"}}``.

- Responses: ``GET``/``DELETE /v1/responses/{id}``; no list endpoint, so the application records ids
  at creation (``recorded(kind, tenant)`` plays that table: every id ever created, deleted or not).
- Conversations: ``GET``/``DELETE /v1/conversations/{id}``. Deleting a conversation does not delete its
  items (as the API reference says): they stay stored, counted by ``remaining``, but can no longer be
  listed or deleted through the API (404).
- Items: ``GET /v1/conversations/{id}/items?limit=&after=&order=`` (limit 1-100, default 20; order
  desc by default) answers ``{"object": "list", "data", "first_id", "last_id", "has_more"}``;
  ``DELETE /v1/conversations/{id}/items/{item_id}`` answers the Conversation object.
- Files: ``GET /v1/files?purpose=&limit=&after=&order=`` (limit 1-10000, default 10000), ``GET``/``DELETE
  /v1/files/{id}`` (``{"id", "object": "file", "deleted": true}``), ``GET /v1/files/{id}/content`` (the bytes).

Tests lower ``page_cap`` to see several pages. Rate limited calls answer 429 with
``x-ratelimit-reset-requests`` as a Go duration (``1s``, ``1m5s``).
"""

from __future__ import annotations

import itertools
from typing import Any

from tests.emulators.base import Call, Emulator, Reply, bearer

TOKEN = "sk-proj-openai-test-key"
PROJECT = "proj_default"
CREATED_AT = 1_760_000_000


def go_duration(seconds: int) -> str:
    """Seconds as Go prints a duration: 1s, 59s, 1m0s, 1h2m3s."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None,
           kind: str = "invalid_request_error") -> Reply:
    return Reply(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})


class OpenAIEmulator(Emulator):
    name = "openai"
    reset_header = "x-ratelimit-reset-requests"
    reset_kind = "duration"

    def __init__(self, *, page_cap: int = 10_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.page_cap = page_cap
        self.responses: dict[str, dict] = {}
        self.conversations: dict[str, dict] = {}
        self.items: dict[str, list[dict]] = {}  # conversation id -> items, oldest first; outlive their conversation
        self.files: dict[str, dict] = {}
        self.owner: dict[str, tuple[str, str]] = {}  # object id -> (tenant, project); the application's view
        self.created: list[tuple[str, str, str]] = []  # (kind, tenant, id): the app's subprocessor_objects
        self.deleted: list[str] = []  # ids deleted through the API, in order
        self._ids = itertools.count(1)  # per emulator: two emulators seeded alike hold the same ids
        self.route("GET", r"/v1/responses/(?P<id>[\w-]+)", self._get_response)
        self.route("DELETE", r"/v1/responses/(?P<id>[\w-]+)", self._delete_response)
        self.route("GET", r"/v1/conversations/(?P<conv>[\w-]+)", self._get_conversation)
        self.route("DELETE", r"/v1/conversations/(?P<conv>[\w-]+)", self._delete_conversation)
        self.route("GET", r"/v1/conversations/(?P<conv>[\w-]+)/items", self._list_items)
        self.route("GET", r"/v1/conversations/(?P<conv>[\w-]+)/items/(?P<item>[\w-]+)", self._get_item)
        self.route("DELETE", r"/v1/conversations/(?P<conv>[\w-]+)/items/(?P<item>[\w-]+)", self._delete_item)
        self.route("GET", r"/v1/files", self._list_files)
        self.route("GET", r"/v1/files/(?P<id>[\w-]+)", self._get_file)
        self.route("GET", r"/v1/files/(?P<id>[\w-]+)/content", self._file_content)
        self.route("DELETE", r"/v1/files/(?P<id>[\w-]+)", self._delete_file)

    # -- data ------------------------------------------------------------------------------------

    def _new(self, prefix: str, kind: str | None, tenant: str, project: str) -> str:
        object_id = f"{prefix}{next(self._ids):024x}"
        self.owner[object_id] = (tenant, project)
        if kind:
            self.created.append((kind, tenant, object_id))
        return object_id

    def add_tenant(self, tenant: str, *, responses: int = 0, conversations: int = 0, items: int = 0,
                   files: int = 0, project: str = PROJECT) -> None:
        """Objects the chat created for a tenant; ``items`` per conversation (a user/assistant exchange)."""
        for _ in range(responses):
            rid = self._new("resp_", "openai_response", tenant, project)
            self.responses[rid] = {"id": rid, "object": "response", "created_at": CREATED_AT, "status": "completed",
                                   "model": "gpt-4.1-mini", "store": True,
                                   "output": [{"type": "message", "role": "assistant",
                                               "content": [{"type": "output_text", "text": "Hello!"}]}]}
        for _ in range(conversations):
            cid = self._new("conv_", "openai_conversation", tenant, project)
            self.conversations[cid] = {"id": cid, "object": "conversation", "created_at": CREATED_AT,
                                       "metadata": {}}
            self.items[cid] = []
            for n in range(items):
                mid = self._new("msg_", None, tenant, project)
                role = "user" if n % 2 == 0 else "assistant"
                kind = "input_text" if role == "user" else "output_text"
                self.items[cid].append({"type": "message", "id": mid, "status": "completed", "role": role,
                                        "content": [{"type": kind, "text": f"turn {n}"}]})
        for n in range(files):
            fid = self._new("file-", "openai_file", tenant, project)
            self.files[fid] = {"id": fid, "object": "file", "bytes": 1024, "created_at": CREATED_AT + n,
                               "expires_at": None, "filename": f"knowledge-{n}.pdf", "purpose": "user_data",
                               "status": "processed", "status_details": None}

    def recorded(self, kind: str, tenant: str) -> list[str]:
        """The ids the application recorded for a tenant (deleted ones included: the table keeps them)."""
        return [i for k, t, i in self.created if k == kind and t == tenant]

    def remaining(self, tenant: str) -> dict[str, int]:
        def mine(object_id: str) -> bool:
            return self.owner[object_id][0] == tenant

        return {"responses": sum(1 for i in self.responses if mine(i)),
                "conversations": sum(1 for i in self.conversations if mine(i)),
                "conversation_items": sum(1 for c, items in self.items.items() if mine(c) for _ in items),
                "files": sum(1 for i in self.files if mine(i))}

    # -- transport -------------------------------------------------------------------------------

    def authorized(self, call: Call) -> bool:
        return bearer(call, TOKEN)

    def unauthorized(self) -> Reply:
        return _error(401, "Incorrect API key provided. You can find your API key at "
                           "https://platform.openai.com/account/api-keys.", code="invalid_api_key")

    def not_found(self) -> Reply:
        return _error(404, "Invalid URL", code=None)

    def _limited(self, wait: float) -> Reply:
        seconds = max(1, int(wait + 0.999))
        return Reply(429, {"error": {"message": "Rate limit reached for requests", "type": "requests",
                                     "param": None, "code": "rate_limit_exceeded"}},
                     {self.reset_header: go_duration(seconds), "x-ratelimit-limit-requests": "500",
                      "x-ratelimit-remaining-requests": "0"})

    def _visible(self, call: Call, object_id: str) -> bool:
        project = call.headers.get("openai-project") or PROJECT
        return object_id in self.owner and self.owner[object_id][1] == project

    def _page(self, call: Call, items: list[dict], *, default_limit: int, max_limit: int) -> Reply:
        try:
            limit = int(call.arg("limit", str(default_limit)))
        except ValueError:
            return _error(400, "Invalid 'limit': expected an integer.", param="limit", code="invalid_type")
        if not 1 <= limit <= max_limit:
            return _error(400, f"Invalid 'limit': must be between 1 and {max_limit}.", param="limit",
                          code="integer_out_of_range")
        ordered = items if call.arg("order", "desc") == "asc" else list(reversed(items))
        start = 0
        after = call.arg("after")
        if after:
            position = next((n for n, item in enumerate(ordered) if item["id"] == after), None)
            if position is None:
                return _error(400, f"Invalid 'after': no object with id '{after}'.", param="after")
            start = position + 1
        chunk = ordered[start:start + min(limit, self.page_cap)]
        return Reply(200, {"object": "list", "data": chunk,
                           "first_id": chunk[0]["id"] if chunk else None,
                           "last_id": chunk[-1]["id"] if chunk else None,
                           "has_more": start + len(chunk) < len(ordered)})

    # -- responses -------------------------------------------------------------------------------

    def _get_response(self, call: Call) -> Reply:
        rid = call.match["id"]
        if rid not in self.responses or not self._visible(call, rid):
            return _error(404, f"Response with id '{rid}' not found.")
        return Reply(200, self.responses[rid])

    def _delete_response(self, call: Call) -> Reply:
        rid = call.match["id"]
        if rid not in self.responses or not self._visible(call, rid):
            return _error(404, f"Response with id '{rid}' not found.")
        del self.responses[rid]
        self.deleted.append(rid)
        return Reply(200, {"id": rid, "object": "response", "deleted": True})

    # -- conversations and items -----------------------------------------------------------------

    def _conversation(self, call: Call) -> dict | None:
        cid = call.match["conv"]
        return self.conversations.get(cid) if self._visible(call, cid) else None

    def _conversation_missing(self, call: Call) -> Reply:
        return _error(404, f"Conversation with id '{call.match['conv']}' not found.")

    def _get_conversation(self, call: Call) -> Reply:
        conversation = self._conversation(call)
        return Reply(200, conversation) if conversation else self._conversation_missing(call)

    def _delete_conversation(self, call: Call) -> Reply:
        conversation = self._conversation(call)
        if conversation is None:
            return self._conversation_missing(call)
        del self.conversations[conversation["id"]]  # its items stay behind (self.items)
        self.deleted.append(conversation["id"])
        return Reply(200, {"id": conversation["id"], "object": "conversation.deleted", "deleted": True})

    def _list_items(self, call: Call) -> Reply:
        conversation = self._conversation(call)
        if conversation is None:
            return self._conversation_missing(call)
        return self._page(call, self.items[conversation["id"]], default_limit=20, max_limit=100)

    def _item(self, call: Call) -> dict | None:
        return next((i for i in self.items.get(call.match["conv"], []) if i["id"] == call.match["item"]), None)

    def _get_item(self, call: Call) -> Reply:
        conversation, item = self._conversation(call), self._item(call)
        if conversation is None:
            return self._conversation_missing(call)
        return Reply(200, item) if item else _error(404, f"Item with id '{call.match['item']}' not found.")

    def _delete_item(self, call: Call) -> Reply:
        conversation, item = self._conversation(call), self._item(call)
        if conversation is None:
            return self._conversation_missing(call)
        if item is None:
            return _error(404, f"Item with id '{call.match['item']}' not found.")
        self.items[conversation["id"]].remove(item)
        self.deleted.append(item["id"])
        return Reply(200, conversation)

    # -- files -----------------------------------------------------------------------------------

    def _list_files(self, call: Call) -> Reply:
        purpose = call.arg("purpose")
        files = [f for f in self.files.values()
                 if self._visible(call, f["id"]) and (purpose is None or f["purpose"] == purpose)]
        return self._page(call, files, default_limit=10_000, max_limit=10_000)

    def _get_file(self, call: Call) -> Reply:
        fid = call.match["id"]
        if fid not in self.files or not self._visible(call, fid):
            return _error(404, f"No such File object: {fid}", param="id")
        return Reply(200, self.files[fid])

    def file_content(self, fid: str) -> bytes:
        """A file's bytes, as ``GET /v1/files/{id}/content`` serves them."""
        return b"%PDF-1.4\n" + fid.encode() * 4

    def _file_content(self, call: Call) -> Reply:
        fid = call.match["id"]
        if fid not in self.files or not self._visible(call, fid):
            return _error(404, f"No such File object: {fid}", param="id")
        content = self.file_content(fid)
        return Reply(200, stream=[content], headers={"Content-Type": "application/octet-stream",
                                                     "Content-Length": str(len(content))})

    def _delete_file(self, call: Call) -> Reply:
        fid = call.match["id"]
        if fid not in self.files or not self._visible(call, fid):
            return _error(404, f"No such File object: {fid}", param="id")
        del self.files[fid]
        self.deleted.append(fid)
        return Reply(200, {"id": fid, "object": "file", "deleted": True})
