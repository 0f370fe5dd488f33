"""Twilio: REST API 2010-04-01 (Accounts, Recordings, Messages) and Conversations v1, the subset the spec uses.

HTTP basic auth with the parent Account SID and auth token. Each tenant has a subaccount whose
FriendlyName is the tenant's account id. Lists page with ``PageSize``/``Page`` and
``next_page_uri`` (Conversations: ``meta.next_page_url``). A message still being sent refuses
deletion with error 20009 until it has been asked ``settle_after`` times; a missing resource is
404 with error 20404. The Messages list filters by ``To`` and ``From`` (E.164, as Twilio documents); a
recording's media is ``GET .../Recordings/{sid}.mp3`` (audio bytes, ``audio/mpeg``). Deleting a
recording keeps nothing here (Twilio keeps metadata 40 days: the spec's provider_retention says so).
"""

from __future__ import annotations

import base64
import itertools
from typing import Any
from urllib.parse import quote

from tests.emulators.base import Call, Emulator, Reply

PARENT = "AC" + "0" * 32
TOKEN = "twilio-test-token"
_counter = itertools.count(1)


def sid(prefix: str) -> str:
    return f"{prefix}{next(_counter):032x}"


class TwilioEmulator(Emulator):
    name = "twilio"

    def __init__(self, *, settle_after: int = 2, page_cap: int = 1000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.accounts: dict[str, dict] = {PARENT: {"sid": PARENT, "friendly_name": "parent", "status": "active"}}
        self.recordings: dict[str, dict[str, dict]] = {}  # account sid -> recording sid -> record
        self.messages: dict[str, dict[str, dict]] = {}
        self.conversations: dict[str, dict] = {}  # sid -> {tenant}
        self.settle_after = settle_after
        self.page_cap = page_cap  # Twilio's PageSize maximum is 1000; tests lower it to see pages
        self._delete_attempts: dict[str, int] = {}
        a = r"/2010-04-01/Accounts"
        self.route("GET", rf"{a}\.json", self._list_accounts)
        for kind in ("Recordings", "Messages"):
            self.route("GET", rf"{a}/(?P<account>AC\w+)/{kind}\.json", self._lister(kind))
            self.route("GET", rf"{a}/(?P<account>AC\w+)/{kind}/(?P<sid>\w+)\.json", self._getter(kind))
            self.route("DELETE", rf"{a}/(?P<account>AC\w+)/{kind}/(?P<sid>\w+)\.json", self._deleter(kind))
        self.route("GET", rf"{a}/(?P<account>AC\w+)/Recordings/(?P<sid>\w+)\.mp3", self._media)
        self.route("GET", r"/v1/Conversations", self._list_conversations)
        self.route("GET", r"/v1/Conversations/(?P<sid>\w+)", self._get_conversation)
        self.route("DELETE", r"/v1/Conversations/(?P<sid>\w+)", self._delete_conversation)

    # -- data ------------------------------------------------------------------------------------

    def add_tenant(self, tenant: str, *, recordings: int, messages: int, sending: int = 0,
                   conversations: int = 0) -> str:
        account = sid("AC")
        self.accounts[account] = {"sid": account, "friendly_name": tenant, "status": "active"}
        self.recordings[account] = {s: {"sid": s} for s in (sid("RE") for _ in range(recordings))}
        self.messages[account] = {s: {"sid": s, "status": "delivered"} for s in (sid("SM") for _ in range(messages))}
        for s in (sid("SM") for _ in range(sending)):
            self.messages[account][s] = {"sid": s, "status": "sending"}
        for _ in range(conversations):
            c = sid("CH")
            self.conversations[c] = {"sid": c, "tenant": tenant}
        return account

    def add_person(self, tenant: str, phone: str, *, received: int = 1, sent: int = 1) -> list[str]:
        """Messages the service sent to a person (``To``) and the person sent (``From``) in the tenant's
        subaccount (made with ``add_tenant`` first); their sids."""
        account = self.subaccount(tenant)
        made = []
        for n in range(received + sent):
            s = sid("SM")
            to, from_ = (phone, "+15550000000") if n < received else ("+15550000000", phone)
            self.messages[account][s] = {"sid": s, "status": "delivered", "to": to, "from": from_,
                                         "body": f"Your meeting is confirmed ({n})"}
            made.append(s)
        return made

    def subaccount(self, tenant: str) -> str:
        return next(a for a, v in self.accounts.items() if v["friendly_name"] == tenant)

    def media(self, recording_sid: str) -> bytes:
        """The audio of a recording, as the media endpoint serves it."""
        return b"ID3" + recording_sid.encode() * 8

    def person_remaining(self, tenant: str, identifier: str) -> dict[str, int]:
        accounts = [a for a, v in self.accounts.items() if v["friendly_name"] == tenant]
        return {"messages": sum(1 for a in accounts for m in self.messages.get(a, {}).values()
                                if identifier in (m.get("to"), m.get("from")))}

    def conversation_sids(self, tenant: str) -> list[str]:
        return [c for c, v in self.conversations.items() if v["tenant"] == tenant]

    def remaining(self, tenant: str) -> dict[str, int]:
        accounts = [a for a, v in self.accounts.items() if v["friendly_name"] == tenant]
        return {"recordings": sum(len(self.recordings.get(a, {})) for a in accounts),
                "messages": sum(len(self.messages.get(a, {})) for a in accounts),
                "conversations": len(self.conversation_sids(tenant))}

    # -- API -------------------------------------------------------------------------------------

    def authorized(self, call: Call) -> bool:
        expected = "Basic " + base64.b64encode(f"{PARENT}:{TOKEN}".encode()).decode()
        return call.headers.get("authorization") == expected

    def not_found(self) -> Reply:
        return Reply(404, {"code": 20404, "message": "The requested resource was not found",
                           "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404})

    def _page(self, call: Call, items: list[dict], key: str, path: str) -> Reply:
        size = min(int(call.arg("PageSize", "50")), self.page_cap)
        page = int(call.arg("Page", "0"))
        chunk = items[page * size:(page + 1) * size]
        more = (page + 1) * size < len(items)
        extra = "".join(f"&{k}={quote(v[0], safe='')}" for k, v in call.query.items() if k not in ("PageSize", "Page"))
        next_uri = f"{path}?PageSize={size}&Page={page + 1}{extra}" if more else None
        return Reply(200, {key: chunk, "next_page_uri": next_uri, "page": page, "page_size": size})

    def _list_accounts(self, call: Call) -> Reply:
        name = call.arg("FriendlyName")
        items = [a for a in self.accounts.values() if name is None or a["friendly_name"] == name]
        return self._page(call, items, "accounts", call.path)

    def _store(self, kind: str) -> dict[str, dict[str, dict]]:
        return self.recordings if kind == "Recordings" else self.messages

    def _lister(self, kind: str):
        def handler(call: Call) -> Reply:
            items = list(self._store(kind).get(call.match["account"], {}).values())
            if kind == "Messages":  # Twilio's To / From filters (exact E.164)
                for name in ("To", "From"):
                    wanted = call.arg(name)
                    if wanted is not None:
                        items = [m for m in items if m.get(name.lower()) == wanted]
            return self._page(call, items, kind.lower(), call.path)
        return handler

    def _getter(self, kind: str):
        def handler(call: Call) -> Reply:
            item = self._store(kind).get(call.match["account"], {}).get(call.match["sid"])
            return Reply(200, item) if item else self.not_found()
        return handler

    def _media(self, call: Call) -> Reply:
        if call.match["sid"] not in self.recordings.get(call.match["account"], {}):
            return self.not_found()
        audio = self.media(call.match["sid"])
        return Reply(200, stream=[audio], headers={"Content-Type": "audio/mpeg", "Content-Length": str(len(audio))})

    def _deleter(self, kind: str):
        def handler(call: Call) -> Reply:
            items = self._store(kind).get(call.match["account"], {})
            item = items.get(call.match["sid"])
            if item is None:
                return self.not_found()
            if item.get("status") == "sending":
                tries = self._delete_attempts[item["sid"]] = self._delete_attempts.get(item["sid"], 0) + 1
                if tries <= self.settle_after:
                    return Reply(400, {"code": 20009, "message": "Cannot delete this resource before it is complete",
                                       "more_info": "https://www.twilio.com/docs/errors/20009", "status": 400})
            del items[call.match["sid"]]
            return Reply(204)
        return handler

    def _list_conversations(self, call: Call) -> Reply:
        size = min(int(call.arg("PageSize", "50")), 100)
        page = int(call.arg("Page", "0"))
        items = [{"sid": c} for c in self.conversations]
        chunk = items[page * size:(page + 1) * size]
        more = (page + 1) * size < len(items)
        url = f"{self.url}/v1/Conversations?PageSize={size}&Page={page + 1}" if more else None
        return Reply(200, {"conversations": chunk, "meta": {"next_page_url": url, "key": "conversations"}})

    def _get_conversation(self, call: Call) -> Reply:
        return Reply(200, {"sid": call.match["sid"]}) if call.match["sid"] in self.conversations else self.not_found()

    def _delete_conversation(self, call: Call) -> Reply:
        if self.conversations.pop(call.match["sid"], None) is None:
            return self.not_found()
        return Reply(204)
