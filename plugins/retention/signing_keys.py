"""Ed25519 signing keys, their RFC 7638 ids, and public key sets (JWKS): what certificates and ledger
checkpoints both sign and verify with.

This module sits below both (it imports neither): ``retention.certificates.keys`` loads the certificate
key and rotates it, ``retention.ledger.checkpoints`` keeps its own key file. A key's id is its JWK
thumbprint, so anyone holding the public key can recompute it; a ``KeySet`` never drops a key, it marks
it ``retired`` with the time it stopped signing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# One key of a JWKS document as read from its file: the members are whatever the file holds (strings, for the
# keys this code writes), so each is checked where it is used.
Jwk = Mapping[str, object]


class SigningKeyError(ValueError):
    """A key that cannot be loaded or is not an Ed25519 key."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_decode(text: str) -> bytes:
    """Strict RFC 7515 base64url: its alphabet only, no padding, and the one encoding of its bytes.

    Python's decoder alone accepts '+' and '/' for '-' and '_', and ignores the unused low bits of the last
    character, so a changed character of a signature could still decode to the same bytes and verify.
    """
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url: a character outside A-Z a-z 0-9 - _")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise ValueError("not base64url: not the canonical encoding of its bytes")
    return data


def public_jwk(public: Ed25519PublicKey) -> dict[str, str]:
    """The RFC 8037 JWK of a public key, with its thumbprint as ``kid``."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    members = {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}
    kid = b64url(hashlib.sha256(rfc8785.dumps(members)).digest())  # RFC 7638 thumbprint
    return {**members, "kid": kid, "alg": "EdDSA", "use": "sig"}


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @property
    def jwk(self) -> dict[str, str]:
        return public_jwk(self.private.public_key())

    @property
    def kid(self) -> str:
        return self.jwk["kid"]

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, source: str) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{source}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{source}: a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    def to_pem(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())


@dataclass(frozen=True)
class KeySet:
    """Public keys by kid (a JWKS document), current and retired alike."""

    keys: tuple[Jwk, ...]

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        for jwk in self.keys:
            if jwk.get("kid") == kid and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
                x = jwk["x"]
                if not isinstance(x, str):
                    raise SigningKeyError(f"key {kid}: its x member is not a base64url string")
                try:
                    public = Ed25519PublicKey.from_public_bytes(b64url_decode(x))
                except ValueError as exc:
                    raise SigningKeyError(f"key {kid}: its x member is not a base64url Ed25519 key ({exc})") from None
                if public_jwk(public)["kid"] != kid:  # a kid that is not the key's own thumbprint
                    return None
                return public
        return None

    def retired_at(self, kid: str) -> datetime | None:
        """When the key ``kid`` stopped signing; None while it is the current key."""
        jwk: Jwk = next((k for k in self.keys if k.get("kid") == kid), {})
        if "retired" not in jwk:
            return None
        retired = jwk["retired"]
        try:
            at = datetime.fromisoformat(retired) if isinstance(retired, str) else None
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            raise SigningKeyError(f"key {kid}: retired {jwk['retired']!r} is not an ISO-8601 time with its UTC offset")
        return at

    def verify(self, kid: str, signature: bytes, message: bytes) -> bool:
        public = self.public_key(kid)
        if public is None:
            return False
        try:
            public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def as_jwks(self) -> dict[str, list[Jwk]]:
        return {"keys": list(self.keys)}

    @classmethod
    def from_jwks(cls, document: object, source: str = "JWKS") -> KeySet:
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
            raise SigningKeyError(f"{source}: not a JWKS document (an object with a list of keys)")
        return cls(tuple(keys))

    @classmethod
    def read(cls, path: Path | str) -> KeySet:
        try:
            return cls.from_jwks(json.loads(Path(path).read_text()), str(path))
        except FileNotFoundError:
            return cls(())
        except json.JSONDecodeError as exc:
            raise SigningKeyError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None

    def with_key(self, key: SigningKey, *, now: datetime | None = None) -> KeySet:
        """This set plus ``key`` as the current one; the others marked retired (kept, so they still verify)."""
        at = (now or datetime.now(UTC)).isoformat(timespec="microseconds")
        kept = tuple(k if k.get("retired") or k["kid"] == key.kid else {**k, "retired": at}
                     for k in self.keys)
        return KeySet(kept + (() if any(k["kid"] == key.kid for k in self.keys) else (key.jwk,)))

    def write(self, path: Path | str) -> None:
        """Replace the file whole (a temporary file beside it, flushed to disk, then renamed over it), so a
        reader, or a crash, never meets half a key set."""
        replace_file(Path(path), (json.dumps(self.as_jwks(), indent=2) + "\n").encode(), mode=0o644)


def replace_file(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same directory (created with ``mode``,
    so a private key is never readable by others), fsync'ed, then ``os.replace``d over ``path``, and the
    directory fsync'ed so the rename itself survives a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
