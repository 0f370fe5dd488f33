"""A small HTTP server on 127.0.0.1 that speaks one provider's API shape, with faults on demand.

A provider emulator subclasses ``Emulator``, registers routes (method + regex over the path), keeps
its data in plain dicts, and implements ``remaining(tenant)`` for the inspection endpoint
``GET /__inspect__?tenant=...`` (and for tests, directly), and ``person_remaining(tenant, identifier)`` for
``GET /__inspect__?tenant=...&person=...`` (what is left of one person).

Chaos: with ``chaos=0.3`` three calls in ten (auth-checked API calls only) answer 429 with a
``Retry-After`` (or the provider's reset header) or a 5xx, before touching any data. A request that
arrives before a Retry-After it was given has passed is counted in ``early_calls`` (a test asserts
it stays 0) and refused again.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw: bytes
    match: re.Match | None = None

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # Raw body chunks written one by one as they are produced (chunked, unless headers give Content-Length);
    # the emulator counts in ``bytes_sent`` what the client's connection took before it closed.
    stream: Iterable[bytes] | None = None


Handler = Callable[[Call], Reply]


class Emulator:
    """Subclass: set ``name``, call ``route`` in ``__init__``, implement ``authorized`` and ``remaining``."""

    name = "emulator"
    reset_header = "Retry-After"  # the header a 429 carries
    reset_kind = "seconds"  # seconds | epoch

    def __init__(self, *, chaos: float = 0.0, seed: int = 7, retry_after: int = 1) -> None:
        self._routes: list[tuple[str, re.Pattern, Handler]] = []
        self.lock = threading.RLock()
        self.chaos = chaos
        self.retry_after = retry_after
        self._random = random.Random(seed)
        self._not_before = 0.0
        self.early_calls = 0
        self.calls: list[tuple[str, str, int]] = []  # (method, path, status)
        self.faults = 0
        self.bytes_sent = 0  # of streamed replies: what the clients' connections accepted
        self._server: ThreadingHTTPServer | None = None

    # -- to implement --------------------------------------------------------------------------

    def authorized(self, call: Call) -> bool:
        raise NotImplementedError

    def remaining(self, tenant: str) -> dict[str, int]:
        raise NotImplementedError

    def person_remaining(self, tenant: str, identifier: str) -> dict[str, int]:
        """What the tenant still holds of one person (an e-mail address or phone number), per resource."""
        raise NotImplementedError

    # -- routing -------------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def handle(self, call: Call) -> Reply:
        if call.path == "/__inspect__":
            person = call.arg("person")
            tenant = call.arg("tenant") or ""
            return Reply(200, self.person_remaining(tenant, person) if person else self.remaining(tenant))
        if not self.authorized(call):
            return self.unauthorized()
        with self.lock:
            now = time.time()
            if now < self._not_before:
                self.early_calls += 1
                return self._limited(self._not_before - now)
            if self.chaos and self._random.random() < self.chaos:
                self.faults += 1
                if self._random.random() < 0.5:
                    self._not_before = now + self.retry_after
                    return self._limited(self.retry_after)
                return Reply(self._random.choice([500, 502, 503]), {"error": "injected fault"})
        for method, pattern, handler in self._routes:
            match = pattern.match(call.path)
            if match and method == call.method:
                call.match = match
                with self.lock:
                    return handler(call)
        return self.not_found()

    def _limited(self, wait: float) -> Reply:
        """A 429 whose advertised reset is never earlier than the time the emulator enforces."""
        now = time.time()
        if self.reset_kind == "epoch":
            reset = math.ceil(max(self._not_before, now + wait))
            self._not_before = max(self._not_before, reset)
            value = str(reset)
        else:
            seconds = max(1, math.ceil(wait))
            self._not_before = max(self._not_before, now + seconds)
            value = str(seconds)
        return Reply(429, {"error": "rate limited"}, {self.reset_header: value})

    def unauthorized(self) -> Reply:
        return Reply(401, {"error": "unauthorized"})

    def not_found(self) -> Reply:
        return Reply(404, {"error": "not found"})

    # -- serving -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the emulator first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Emulator:
        emulator = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body: Any = None
                if raw:
                    kind = self.headers.get("Content-Type", "")
                    if "json" in kind:
                        body = json.loads(raw)
                    elif "form" in kind:
                        body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    else:
                        body = raw.decode()
                call = Call(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                            {k.lower(): v for k, v in self.headers.items()}, body, raw)
                reply = emulator.handle(call)
                emulator.calls.append((call.method, call.path, reply.status))
                if reply.stream is not None:
                    self._stream(reply)
                    return
                payload = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if payload:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _stream(self, reply: Reply) -> None:
                chunked = "Content-Length" not in reply.headers
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in reply.stream:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                        self.wfile.flush()
                        emulator.bytes_sent += len(chunk)
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client hung up: the rest is never produced

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name=f"{self.name}-emulator", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def bearer(call: Call, token: str) -> bool:
    return call.headers.get("authorization") == f"Bearer {token}"
