"""Secrets hidden from what ``retention config show`` prints: a URL's password, query parameters and JSON
members whose names look secret, at any depth, in any URL or JSON found inside another (an Airflow
Connection's ``__extra__`` query parameter, an ``extra`` that is a JSON string).

A name looks secret if it contains one of ``SECRET_NAME``'s words (``password``, ``sslpassword``,
``aws_secret_access_key``, ``api_token``, ``Authorization``, ...). Masking errs towards hiding: a value
under such a name is replaced whatever it is, even a whole object.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, unquote

MASK = "***"
SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|credential|auth|private|cookie|session|signature", re.I)


def mask_url(url: str) -> str:
    """``url`` with the password of its user info and every secret-looking query parameter replaced. The
    user info is read as Python's ``urlsplit`` (and so Airflow) reads it: up to the last ``@`` before the
    path, so a password holding ``@`` or ``:`` is masked whole."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    userinfo, at, host = rest[:end].rpartition("@")
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        userinfo = f"{user}:{MASK if password else ''}"
    path, question, query = rest[end:].partition("?")
    query, hash_, fragment = query.partition("#")
    query = "&".join(_mask_parameter(p) for p in query.split("&")) if question else ""
    return f"{scheme}{sep}{userinfo}{at}{host}{path}{question}{query}{hash_}{fragment}"


def masked_connection(value: str) -> dict[str, Any] | str:
    """An ``AIRFLOW_CONN_*`` value (URI or JSON) with its password and secret-looking extras replaced."""
    try:
        document = json.loads(value)
    except ValueError:
        return mask_url(value)
    return mask_document(document) if isinstance(document, dict) else MASK


def mask_document(value: Any) -> Any:
    """A JSON value with every member under a secret-looking name replaced; strings holding a URL or a JSON
    object are masked inside."""
    if isinstance(value, dict):
        return {k: MASK if value[k] not in (None, "") and SECRET_NAME.search(str(k)) else mask_document(value[k])
                for k in value}
    if isinstance(value, list):
        return [mask_document(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask_text(text: str) -> str:
    """``text`` with the secrets of a URL or a JSON document in it masked; any other text as it is."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            return json.dumps(mask_document(json.loads(stripped)))
        except ValueError:
            pass
    return mask_url(text) if "://" in text else text


def _mask_parameter(parameter: str) -> str:
    name, equals, value = parameter.partition("=")
    if not equals or not value:
        return parameter
    if SECRET_NAME.search(unquote(name)):
        return f"{name}={MASK}"
    plain = unquote(value.replace("+", " "))
    masked = mask_text(plain)
    return parameter if masked == plain else f"{name}={quote(masked, safe='*')}"
