"""How the client authenticates, one model per ``kind:``; every secret comes from the Airflow Connection
``conn_id``, never from the YAML. The client's strategy for each is in ``retention.subprocessors.auth``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from retention.rules.model import Strict, Text
from retention.subprocessors.spec.request import HeaderName


class _Auth(Strict):
    scopes: list[Text] = Field(default_factory=list)  # what the credential must be allowed to do (documentation)


class BasicAuth(_Auth):
    """HTTP Basic with the Connection's login and password."""

    kind: Literal["basic"]


class BearerAuth(_Auth):
    """``Authorization: Bearer <the Connection's password>``."""

    kind: Literal["bearer"]


class HeaderAuth(_Auth):
    """Header names mapped to ``{login}``, ``{password}`` or ``{extra.NAME}`` of the Connection."""

    kind: Literal["headers"]
    headers: dict[HeaderName, str] = Field(min_length=1)


class OAuth2ClientCredentials(_Auth):
    """OAuth 2.0 client credentials (RFC 6749 section 4.4): the Connection's login is the client id, its password
    the client secret. An access token is asked of ``token_url`` and reused, in this process, until shortly
    before its ``expires_in``; it is asked for again then, and once when the API answers 401.

    ``token_url``: a path on the base URL's host (``/services/oauth2/token``), or an absolute URL that is https
    (http only on loopback), as every base URL is. ``client_auth``: ``basic`` sends the client id and secret as
    HTTP Basic (RFC 6749 section 2.3.1), ``body`` as form fields."""

    kind: Literal["oauth2_client_credentials"]
    token_url: Annotated[str, Field(pattern=r"^(/|https?://)", max_length=500)]
    scope: Text | None = None
    client_auth: Literal["basic", "body"] = "basic"


Auth = Annotated[BasicAuth | BearerAuth | HeaderAuth | OAuth2ClientCredentials, Field(discriminator="kind")]
