"""Where a spec's credentials may go: https, or http only on loopback; and an API spec's credentials
pre-flight."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from retention.rules.errors import Issue
from retention.rules.yamlsource import SourceMap
from retention.subprocessors.spec.auth import OAuth2ClientCredentials
from retention.subprocessors.spec.connector import ConnectorSpec
from retention.subprocessors.spec.templates import Loc

LOOPBACK_ONLY = "use https (http is allowed only on loopback: 127.0.0.0/8, ::1, localhost)"


def secure_url(url: str) -> bool:
    """https, or http to a loopback host (127.0.0.0/8, ::1, localhost): credentials never cross a network
    in clear text."""
    parts = urlsplit(str(url))
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or ""))


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport(spec: ConnectorSpec, smap: SourceMap) -> list[Issue]:
    """Every base URL (and an absolute OAuth2 token URL) is https, http only on loopback; an API spec has its
    credentials pre-flight."""
    urls: list[tuple[Loc, str]] = [(("regions", name), str(url)) for name, url in spec.regions.items()]
    if spec.base_url is not None:
        urls.insert(0, (("base_url",), str(spec.base_url)))
    urls += [(("resources", name, "base_url"), str(r.base_url)) for name, r in spec.resources.items()
             if r.base_url is not None]
    if isinstance(spec.auth, OAuth2ClientCredentials) and not spec.auth.token_url.startswith("/"):
        urls.append((("auth", "token_url"), spec.auth.token_url))
    issues = [smap.issue(at, f"{url} is not https; the credentials would cross the network in clear text",
                         LOOPBACK_ONLY) for at, url in urls if not secure_url(url)]
    if spec.resources and spec.test_request is None:
        issues.append(smap.issue(("resources",), "an API spec needs a test_request (the credentials pre-flight)",
                                 "a read-only GET the provider documents, e.g. test_request: {method: GET, path: "
                                 "/v1/me, expect: [200]}", at_key=True, field_path="test_request"))
    return issues
