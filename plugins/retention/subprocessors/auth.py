"""Authentication strategies, one per ``auth.kind`` of a spec, chosen from ``STRATEGIES`` by the spec model's
class: each turns the spec's auth and the Connection's credentials into an ``httpx.Auth`` the client sends
every request through (next-page links included, after the client has checked their origin).

``oauth2_client_credentials`` asks the token endpoint for an access token with the Connection's client id
(login) and secret (password) and caches it in this process, keyed by token URL, client id, a digest of the
secret and scope, until shortly before its ``expires_in`` (a tenth of it, at most 60 s; without
``expires_in``, until the API refuses it). A 401 from the API drops the token and asks for a new one once;
the request is sent again with it, and a second 401 is the answer. The token endpoint is the base URL's host
(``token_url`` a path) or an https URL (http only on loopback), checked before anything is sent to it. Its
call is not a ``subprocessor.call`` event: it carries no customer data, and its failure fails the run with
``CredentialsRefused`` naming the subprocessor and the Connection. The secret and the token are never in
an error, an event or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urljoin, urlsplit

import httpx

from retention.subprocessors.connection import Credentials
from retention.subprocessors.errors import CredentialsRefused, SubprocessorError
from retention.subprocessors.spec import OAuth2ClientCredentials, secure_url
from retention.subprocessors.spec.auth import Auth, BasicAuth, BearerAuth, HeaderAuth

TOKEN_RESPONSE_LIMIT = 64 * 1024  # bytes: a token answer is a few hundred; past this it is refused unread
_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")  # RFC 6749's error codes; anything else is not repeated


@dataclass(frozen=True)
class Who:
    """Named in every error: the subprocessor and its Connection."""

    subprocessor: str
    conn_id: str


class _Headers(httpx.Auth):
    """Fixed headers on every request (a bearer token, an API key)."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self._headers)
        yield request


def _basic(auth: BasicAuth, credentials: Credentials, who: Who) -> httpx.Auth:
    return httpx.BasicAuth(credentials.login or "", credentials.password or "")


def _bearer(auth: BearerAuth, credentials: Credentials, who: Who) -> httpx.Auth:
    return _Headers({"Authorization": f"Bearer {credentials.password}"})


def _headers(auth: HeaderAuth, credentials: Credentials, who: Who) -> httpx.Auth:
    values = {"login": credentials.login or "", "password": credentials.password or ""}
    values.update({f"extra.{k}": str(v) for k, v in (credentials.extra or {}).items()})
    return _Headers({name: _fill(template, values) for name, template in auth.headers.items()})


def _fill(template: str, values: dict[str, str]) -> str:
    """An auth header from the Connection's fields; a field the Connection lacks is an error, not literal text."""
    def field(match: re.Match[str]) -> str:
        if match[1] not in values:
            raise SubprocessorError(f"the Connection has no {match[1]} for an auth header")
        return values[match[1]]

    return re.sub(r"\{([a-z]+(?:\.[A-Za-z0-9_]+)?)\}", field, template)


@dataclass
class _Token:
    value: str
    valid_until: float | None  # time.monotonic(); None: until the API refuses it


class _TokenCache:
    """Access tokens of this process, shared by every client of the same credentials."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], _Token] = {}

    def get(self, key: tuple[str, ...]) -> str | None:
        with self._lock:
            token = self._tokens.get(key)
            if token is None or token.valid_until is not None and time.monotonic() >= token.valid_until:
                return None
            return token.value

    def put(self, key: tuple[str, ...], token: _Token) -> None:
        with self._lock:
            self._tokens[key] = token

    def drop(self, key: tuple[str, ...], value: str) -> None:
        """Forget a refused token (unless another client has replaced it already)."""
        with self._lock:
            if key in self._tokens and self._tokens[key].value == value:
                del self._tokens[key]


TOKENS = _TokenCache()


class ClientCredentials(httpx.Auth):
    """OAuth 2.0 client credentials grant (RFC 6749 section 4.4) with a per-process token cache."""

    def __init__(self, auth: OAuth2ClientCredentials, credentials: Credentials, who: Who) -> None:
        client_id, secret = credentials.login, credentials.password
        if not client_id or not secret:
            raise SubprocessorError(f"{who.subprocessor}: auth oauth2_client_credentials needs the Connection "
                                    f"{who.conn_id}'s login (the client id) and password (the client secret); "
                                    "nothing was sent")
        token_url = urljoin(credentials.base_url.rstrip("/") + "/", auth.token_url.lstrip("/")) \
            if auth.token_url.startswith("/") else auth.token_url
        if not secure_url(token_url):
            raise SubprocessorError(f"{who.subprocessor}: the token endpoint {_shown(token_url)} is not https; http "
                                    "is allowed only on loopback (127.0.0.0/8, ::1, localhost); nothing was sent")
        self._auth, self._who, self._url = auth, who, token_url
        self._client_id, self._secret = client_id, secret
        self._key = (token_url, client_id, hashlib.sha256(secret.encode()).hexdigest(), auth.scope or "")

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = TOKENS.get(self._key) or self._fetch(request)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:  # expired early or revoked: one new token, one more try
            TOKENS.drop(self._key, token)
            request.headers["Authorization"] = f"Bearer {self._fetch(request)}"
            yield request

    def _fetch(self, request: httpx.Request) -> str:
        """A new access token, cached; its own connection, so the API client's stream is never read here."""
        form = {"grant_type": "client_credentials", **({"scope": self._auth.scope} if self._auth.scope else {})}
        headers = {"Accept": "application/json"}
        if self._auth.client_auth == "basic":  # RFC 6749 section 2.3.1: each form-encoded, then HTTP Basic
            pair = f"{quote_plus(self._client_id)}:{quote_plus(self._secret)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form.update(client_id=self._client_id, client_secret=self._secret)
        timeout = request.extensions.get("timeout") or {}
        sent_at = time.monotonic()  # the token lives from no earlier than this
        try:
            with httpx.Client(timeout=httpx.Timeout(timeout.get("read", 30.0), connect=timeout.get("connect", 10.0)),
                              follow_redirects=False) as http, \
                    http.stream("POST", self._url, data=form, headers=headers) as response:
                status, body = response.status_code, _small_json(response)
        except httpx.TransportError as exc:
            raise SubprocessorError(f"{self._who.subprocessor}: the OAuth2 token endpoint {_shown(self._url)} could "
                                    f"not be reached ({type(exc).__name__}); nothing was sent to the API") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if status != 200 or not isinstance(token, str) or not token:
            raise self._refused(status, body)
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        lifetime = float(expires_in) if isinstance(expires_in, (int, float)) and expires_in > 0 else None
        TOKENS.put(self._key, _Token(token, None if lifetime is None else
                                     sent_at + lifetime - min(60.0, lifetime / 10)))
        return token

    def _refused(self, status: int, body: Any) -> CredentialsRefused:
        code = body.get("error") if isinstance(body, dict) else None
        named = f" ({code})" if isinstance(code, str) and _ERROR_CODE.match(code) else ""
        why = "" if status != 200 else ", with no access token"
        return CredentialsRefused(self._who.subprocessor, f"the OAuth2 token endpoint {_shown(self._url)} answered "
                                  f"HTTP {status}{named}{why}; check the Connection {self._who.conn_id}'s login "
                                  "(client id) and password (client secret)", status)


def _small_json(response: httpx.Response) -> Any:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > TOKEN_RESPONSE_LIMIT:
        return None
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > TOKEN_RESPONSE_LIMIT:
            return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _shown(url: str) -> str:
    """Scheme, host, port and path of the token URL: never its query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


# The strategy for each auth model (the class pydantic chose by ``kind``).
STRATEGIES: dict[type, Callable[[Any, Credentials, Who], httpx.Auth]] = {
    BasicAuth: _basic,
    BearerAuth: _bearer,
    HeaderAuth: _headers,
    OAuth2ClientCredentials: ClientCredentials,
}


def authenticator(auth: Auth, credentials: Credentials, who: Who) -> httpx.Auth:
    """The ``httpx.Auth`` that sends the spec's credentials."""
    return STRATEGIES[type(auth)](auth, credentials, who)
