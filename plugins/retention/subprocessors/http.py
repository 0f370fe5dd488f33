"""HTTP for connector specs: one client per spec, retries and rate limits, bounded calls.

Templates are rendered by ``retention.subprocessors.render``, credentials come from the Connection
(``retention.subprocessors.connection``) and are sent by the spec's auth strategy
(``retention.subprocessors.auth``).

Every call is reported to ``on_call`` (the executor turns it into a ledger event) with the request's
template, never its rendered URL: rendered paths and queries can hold e-mail addresses.

The credentials go only where the spec points: the base URL (https, or http on loopback; checked when
the client is made) and a resource's own base URL. A next-page link to any other scheme, host or port
is refused before anything is sent to it. Each call is bounded by the spec's ``defaults``: a response
body is streamed and refused once past ``max_response_bytes`` (the rest is never read), and the call,
retries and the provider's Retry-After waits included, ends at ``call_deadline_seconds``.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from retention.ids import check_account_id
from retention.subprocessors.auth import Who, authenticator
from retention.subprocessors.connection import Credentials
from retention.subprocessors.errors import CallDeadlineExceeded, SubprocessorError
from retention.subprocessors.render import render, render_body
from retention.subprocessors.spec import ConnectorSpec, RateLimit, Request, secure_url

# httpx logs every request's URL at INFO; a subject search's URL holds the person's e-mail address or number
# (SendGrid's /v3/suppression/bounces/<e-mail>, Twilio's ?To=+1...). Its warnings and errors still show.
logging.getLogger("httpx").setLevel(logging.WARNING)

READ_SECONDS, CONNECT_SECONDS = 30.0, 10.0  # one request; the call's deadline may cut it shorter
TIMEOUT = httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS)
CHUNK = 64 * 1024  # bytes read at a time: a refused body is read at most this far past the limit


class Retryable(Exception):
    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


class Client:
    """One spec's HTTP client: base URL, auth, default headers, retries honouring the provider's limits."""

    def __init__(self, spec: ConnectorSpec, credentials: Credentials, *,
                 on_call: Callable[[dict[str, Any]], None] = lambda call: None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not secure_url(credentials.base_url):
            where = f"the Connection {spec.conn_id}" if credentials.from_connection_host else "base_url"
            raise SubprocessorError(f"{spec.subprocessor}: {where} gives a base URL that is not https; http is "
                                    "allowed only on loopback (127.0.0.0/8, ::1, localhost); nothing was sent")
        self.spec = spec
        self._on_call = on_call
        self._sleep = sleep
        self._limit: RateLimit = spec.rate_limit
        self._fixed_host = credentials.from_connection_host
        api = spec.api
        self._http = httpx.Client(base_url=credentials.base_url, timeout=TIMEOUT, follow_redirects=False,
                                  auth=authenticator(api.auth, credentials, Who(spec.subprocessor, api.conn_id)))

    def for_resource(self, name: str, base_url: str | None) -> ResourceClient:
        """This client as one resource uses it: its own host (where the Connection names none) and its name
        in errors. A view: the client itself is shared and never changed."""
        return ResourceClient(self, name, base_url)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def call(self, request: Request, variables: dict[str, Any], *, operation: str, url: str | None = None,
             link_from: str = "a next-page link", extra_headers: dict[str, str] | None = None,
             query: dict[str, Any] | None = None, ids_join: str = ",", ids_repeat: str | None = None,
             base_url: str | None = None, resource: str | None = None) -> httpx.Response:
        """Send one request (``url``: an absolute next-page URL replacing path and query, found in
        ``link_from``), retrying rate limits and transient failures within the spec's call deadline;
        returns the final response, whatever its status, unless it is retryable. Errors name the spec and
        ``resource``."""
        who = f"{self.spec.subprocessor}/{resource}" if resource else self.spec.subprocessor
        if "account_id" in variables:  # the one account-id rule, whatever the caller (a DAG Param, a resumed job)
            try:
                check_account_id(variables["account_id"], "account_id")
            except ValueError as exc:
                raise SubprocessorError(f"{who}: {operation}: {exc}; nothing was sent") from None
        try:
            built = self._build(request, variables, url=url, extra_headers=extra_headers, query=query,
                                ids_join=ids_join, ids_repeat=ids_repeat)
        except SubprocessorError as exc:
            raise SubprocessorError(f"{who}: {operation} {request.method} {request.path}: {exc}") \
                from None
        own_base = base_url if base_url and not self._fixed_host else None
        if own_base and url is None:
            built["url"] = own_base.rstrip("/") + built["url"]
        if url is not None:
            self._check_origin(built["url"], own_base, f"{who}: {operation}", link_from)
        limits = self.spec.defaults
        deadline = time.monotonic() + limits.call_deadline_seconds
        attempts = {"n": 0}

        def send() -> httpx.Response:
            left = deadline - time.monotonic()
            if left <= 0:  # a sleep overshot the deadline: no try that could only time out at once
                raise CallDeadlineExceeded(self._past_deadline(request, f"{who}: {operation}", attempts["n"],
                                                               "no time left for another try"))
            attempts["n"] += 1
            timeout = httpx.Timeout(min(READ_SECONDS, left), connect=min(CONNECT_SECONDS, left))
            try:
                response = self._receive(self._http.build_request(**built, timeout=timeout), deadline)
            except httpx.TransportError as exc:
                self._report(request, operation, None, attempts["n"], type(exc).__name__)
                raise Retryable(type(exc).__name__) from None
            except _TooLarge as exc:
                self._report(request, operation, exc.status, attempts["n"], "response_too_large")
                raise SubprocessorError(f"{who}: {operation} {request.method} {request.path}: "
                                        f"the response is larger than defaults.max_response_bytes "
                                        f"({limits.max_response_bytes} bytes; refused after reading {exc.read}); "
                                        "the connection was closed without reading the rest") from None
            self._report(request, operation, response.status_code, attempts["n"])
            if response.status_code in self._limit.statuses:
                raise Retryable(f"HTTP {response.status_code}", self._reset_wait(response))
            if response.status_code in self.spec.transient_statuses:
                # Only Retry-After: a rate-limit reset header on an application error is informational
                # (Datadog sends it on every response), not a time to wait.
                raise Retryable(f"HTTP {response.status_code}", self._retry_after(response))
            return response

        def wait(state: Any) -> float:
            """The provider's wait (or backoff), unless it would run past the deadline: then the call ends
            now rather than hold a worker slot sleeping."""
            seconds = _wait_for(state)
            if time.monotonic() + seconds > deadline:
                exc = state.outcome.exception()
                asked = f"the provider asks to wait {exc.wait:.0f} s" if exc.wait is not None else f"{exc}"
                raise CallDeadlineExceeded(self._past_deadline(request, f"{who}: {operation}", attempts["n"], asked))
            return seconds

        retrying = Retrying(retry=retry_if_exception_type(Retryable),
                            stop=stop_after_attempt(self._limit.max_attempts) | stop_after_delay(
                                limits.call_deadline_seconds),
                            wait=wait, sleep=self._sleep, reraise=True)
        try:
            return retrying(send)
        except Retryable as exc:
            if time.monotonic() >= deadline:
                raise CallDeadlineExceeded(self._past_deadline(request, f"{who}: {operation}", attempts["n"],
                                                               str(exc))) from None
            raise SubprocessorError(f"{who}: {operation} still failing after "
                                    f"{attempts['n']} attempts ({exc})") from None

    def _receive(self, request: httpx.Request, deadline: float) -> httpx.Response:
        """The response, its body streamed and counted: past ``max_response_bytes`` (declared or read) the
        connection is closed with the rest unread; past the deadline too."""
        limit = self.spec.defaults.max_response_bytes
        streamed = self._http.send(request, stream=True)
        try:
            declared = streamed.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _TooLarge(streamed.status_code, 0)
            body = bytearray()
            for chunk in streamed.iter_bytes(CHUNK):
                body += chunk
                if len(body) > limit:
                    raise _TooLarge(streamed.status_code, len(body))
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the call's deadline passed while reading", request=request)
        finally:
            streamed.close()
        # iter_bytes decoded any Content-Encoding: the body kept is the decoded one, so that header goes.
        headers = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() != "content-encoding"]
        return httpx.Response(streamed.status_code, headers=headers, content=bytes(body), request=request)

    def _check_origin(self, url: str, own_base: str | None, where: str, link_from: str) -> None:
        """A next-page link is followed only to the base URL's scheme, host and port (or the resource's own
        base URL's): elsewhere the credentials would go to whoever the page names."""
        allowed = {_origin(str(self._http.base_url))} | ({_origin(own_base)} if own_base else set())
        target = _origin(url)
        if target not in allowed:
            raise SubprocessorError(f"{where}: {link_from} points to {_shown(target)}, not to "
                                    f"{' or '.join(map(_shown, sorted(allowed)))}; refused, nothing was sent to it")

    def _past_deadline(self, request: Request, where: str, attempts: int, why: str) -> str:
        return (f"{where} {request.method} {request.path}: ended at defaults.call_deadline_seconds "
                f"({self.spec.defaults.call_deadline_seconds:g} s) after {attempts} "
                f"attempt{'s' if attempts != 1 else ''} ({why}); nothing more was sent; safe to run again later")

    # -- building ----------------------------------------------------------------------------------

    def _build(self, request: Request, variables: dict[str, Any], *, url: str | None,
               extra_headers: dict[str, str] | None, query: dict[str, Any] | None,
               ids_join: str, ids_repeat: str | None) -> dict[str, Any]:
        headers = {k: render(v, variables) for k, v in {**self.spec.headers, **request.headers}.items()}
        headers.update(extra_headers or {})
        built: dict[str, Any] = {"method": request.method, "headers": headers}
        if url is not None:
            built["url"] = urljoin(str(self._http.base_url), url)  # the executor passes it absolute
        else:
            built["url"] = render(request.path, variables, in_path=True, join=ids_join)
            params: list[tuple[str, str]] = []
            for key, template in request.query.items():
                value = render(str(template), variables, join=ids_join)
                if ids_repeat and key == ids_repeat and str(template) == "{ids}":
                    params += [(key, str(i)) for i in variables["ids"]]
                else:
                    params.append((key, value))
            params += list((query or {}).items())
            if params:
                built["params"] = params
        if request.body is not None:
            built["json"] = render_body(request.body, variables)
        elif request.form is not None:
            built["data"] = {k: render(v, variables) for k, v in request.form.items()}
        return built

    # -- limits ------------------------------------------------------------------------------------

    def _retry_after(self, response: httpx.Response) -> float | None:
        raw = response.headers.get("Retry-After")
        return None if raw is None else self._seconds(raw, "seconds")

    def _reset_wait(self, response: httpx.Response) -> float:
        """Seconds a rate-limited response asks us to wait: ``reset_header``, else Retry-After, else the default."""
        limit = self._limit
        if response.headers.get(limit.reset_header) is not None:
            return self._seconds(response.headers[limit.reset_header], limit.reset_kind)
        if response.headers.get("Retry-After") is not None:
            return self._seconds(response.headers["Retry-After"], "seconds")
        return float(limit.default_wait.nominal_seconds)

    def _seconds(self, raw: str, kind: str) -> float:
        limit = self._limit
        try:
            if kind == "auto":
                kind = "epoch" if float(raw) > 1e9 else "seconds"
            if kind == "epoch":
                wait = float(raw) - time.time()
            elif kind == "duration":
                wait = _go_duration(raw)
            elif kind == "http_date" or not raw.strip().lstrip("-").replace(".", "", 1).isdigit():
                wait = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
            else:
                wait = float(raw)
        except (TypeError, ValueError):
            return float(limit.default_wait.nominal_seconds)
        return max(0.0, wait)  # a wait past the call's deadline ends the call (``Client.call``)

    def _report(self, request: Request, operation: str, status: int | None, attempt: int,
                error: str | None = None) -> None:
        self._on_call({"operation": operation, "method": request.method, "path": request.path,
                       "status": status, "attempt": attempt, **({"error": error} if error else {})})


@dataclass(frozen=True)
class ResourceClient:
    """A ``Client`` as one resource of the spec calls it (``Client.for_resource``)."""

    client: Client
    resource: str
    base_url: str | None

    def call(self, request: Request, variables: dict[str, Any], *, operation: str, url: str | None = None,
             link_from: str = "a next-page link", extra_headers: dict[str, str] | None = None,
             query: dict[str, Any] | None = None, ids_join: str = ",", ids_repeat: str | None = None) -> httpx.Response:
        return self.client.call(request, variables, operation=operation, url=url, link_from=link_from,
                                extra_headers=extra_headers, query=query, ids_join=ids_join, ids_repeat=ids_repeat,
                                base_url=self.base_url, resource=self.resource)


class _TooLarge(Exception):
    def __init__(self, status: int, read: int) -> None:
        super().__init__(status, read)
        self.status, self.read = status, read


def _origin(url: str) -> tuple[str, str, int]:
    """Scheme, host and port: where a request's credentials go."""
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port or {"http": 80, "https": 443}.get(parsed.scheme, 0)


def _shown(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    return f"{scheme}://{host}:{port}"


_backoff = wait_exponential_jitter(multiplier=0.5, max=30.0)


def _wait_for(state: Any) -> float:
    """The provider's reset time when it gave one (never earlier), else exponential backoff."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, Retryable) and exc.wait is not None:
        return exc.wait + 0.05  # a little past the reset: clocks round
    return _backoff(state)


_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _go_duration(text: str) -> float:
    """``6m0s``, ``1.5s``, ``20ms`` (OpenAI's x-ratelimit-reset-*) as seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(text)
    return sum(float(n) * _GO_UNITS[u] for n, u in parts)
