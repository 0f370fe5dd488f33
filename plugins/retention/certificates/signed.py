"""A signed certificate document: canonical JSON (RFC 8785) signed with Ed25519, verifiable offline.

The file is the canonical JSON of ``{"certificate": {...}, "signature": {"alg", "kid", "value"}}``.
The signature covers the canonical JSON of ``certificate`` alone. Because the whole file is canonical
too, a verifier can refuse any byte that differs from what the signer wrote (spacing, key order, a
number written differently), not only changes that alter the content.

``verify`` answers with the first thing that is wrong, in the order a person would check: is it JSON,
is it canonical, is it shaped like a certificate, do we know the key, does the signature hold, and was
the key still in service when the document says it was issued: a retired key's signature counts only on
a document whose ``issued_at`` is before the key's ``retired`` time in the key set.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import rfc8785

from retention.signing_keys import KeySet, SigningKey, SigningKeyError, b64url, b64url_decode

ALGORITHM = "EdDSA"

# A JSON object as ``json.loads`` returns it. A verified document is what ``content.build`` signed, but only its
# signature and key were checked here, not its shape: its members are checked where they are read.
JsonObject = dict[str, Any]


class CertificateInvalid(ValueError):
    """Verification failed; the message says why, without echoing the content."""


@dataclass(frozen=True)
class Verified:
    certificate: JsonObject
    kid: str


def sign(certificate: Mapping[str, Any], key: SigningKey) -> bytes:
    """The signed document's bytes (canonical JSON, UTF-8)."""
    signature = key.sign(rfc8785.dumps(certificate))
    return rfc8785.dumps({"certificate": certificate,
                          "signature": {"alg": ALGORITHM, "kid": key.kid, "value": b64url(signature)}})


def verify(data: bytes, keys: KeySet) -> Verified:
    """The certificate if ``data`` is a canonical document whose signature a key of ``keys`` made."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CertificateInvalid(f"not a JSON document ({type(exc).__name__})") from None
    if not isinstance(document, dict) or set(document) != {"certificate", "signature"}:
        raise CertificateInvalid("not a signed certificate: expected exactly the members certificate and signature")
    if _canonical(document) != data:
        raise CertificateInvalid("not in canonical form (RFC 8785): the file was changed after signing")
    certificate, signature = document["certificate"], document["signature"]
    if not isinstance(certificate, dict) or not isinstance(signature, dict):
        raise CertificateInvalid("certificate and signature must be JSON objects")
    if signature.get("alg") != ALGORITHM:
        raise CertificateInvalid(f"signature algorithm {signature.get('alg')!r} is not {ALGORITHM}")
    kid = signature.get("kid")
    if not isinstance(kid, str) or keys.public_key(kid) is None:
        raise CertificateInvalid(f"signed with key {kid!r}, which is not in the public key set")
    try:
        value = b64url_decode(str(signature.get("value", "")))
    except (binascii.Error, ValueError):
        raise CertificateInvalid("the signature value is not base64url") from None
    if not keys.verify(kid, value, rfc8785.dumps(certificate)):
        raise CertificateInvalid(f"the signature does not match the content (key {kid})")
    _check_key_in_service(certificate, kid, keys)
    return Verified(certificate, kid)


def _check_key_in_service(certificate: JsonObject, kid: str, keys: KeySet) -> None:
    """A retired key's private half is destroyed at rotation; should it leak anyway, it must not be able to
    sign a document dated after its retirement (the date is covered by the signature)."""
    try:
        retired = keys.retired_at(kid)
    except SigningKeyError as exc:
        raise CertificateInvalid(str(exc)) from None
    if retired is None:
        return
    issued_at = certificate.get("issued_at")
    try:
        issued = datetime.fromisoformat(issued_at) if isinstance(issued_at, str) else None
    except ValueError:
        issued = None
    if issued is None or issued.tzinfo is None:
        raise CertificateInvalid(f"signed with key {kid}, retired {retired.isoformat()}, and the document has no "
                                 "issued_at time with its UTC offset to show it was issued before that")
    if issued >= retired:
        raise CertificateInvalid(f"signed with key {kid} at {issued.isoformat()}, after the key was retired "
                                 f"({retired.isoformat()})")


def _canonical(document: JsonObject) -> bytes | None:
    try:
        return rfc8785.dumps(document)
    except (rfc8785.CanonicalizationError, ValueError, TypeError):
        return None
