"""Ed25519 signing keys, their ids, and the public key set (JWKS) that verifies certificates.

The private key never lives in the repository: it is read from a PEM file (``RETENTION_SIGNING_KEY_FILE``)
or from an Airflow Connection (``retention_signing_key``, the PEM in its password). A key's id is its
RFC 7638 JWK thumbprint, so anyone holding the public key can recompute it.

Rotation: ``rotate`` makes a new key and adds its public half to the JWKS file; the old public keys
stay in that file, so certificates signed before the rotation keep verifying. A key is never removed
from the JWKS, only marked ``retired`` with the time it stopped signing, and a document it signed
verifies only if it was issued before that time (``signed.verify``). The retired private key is not
kept: nothing may sign with it again, and verifying needs only the public half. Its file is replaced
by the new key's, not overwritten in place: on journaling or copy-on-write filesystems and SSDs an
overwrite does not reach the old blocks, so those are left to the disk's encryption.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNING_CONN_ID = "retention_signing_key"


class SigningKeyError(ValueError):
    """A key that cannot be loaded or is not an Ed25519 key."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(public: Ed25519PublicKey) -> dict:
    """The RFC 8037 JWK of a public key, with its thumbprint as ``kid``."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    members = {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}
    kid = b64url(hashlib.sha256(rfc8785.dumps(members)).digest())  # RFC 7638 thumbprint
    return {**members, "kid": kid, "alg": "EdDSA", "use": "sig"}


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @property
    def jwk(self) -> dict:
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


def load_signing_key(key_file: Path | str | None = None) -> SigningKey:
    """The current signing key: ``key_file``, else ``$RETENTION_SIGNING_KEY_FILE``, else the Airflow
    Connection ``retention_signing_key`` (PEM in its password)."""
    path = key_file or os.environ.get("RETENTION_SIGNING_KEY_FILE")
    if path:
        try:
            return SigningKey.from_pem(Path(path).read_bytes(), str(path))
        except OSError as exc:
            raise SigningKeyError(f"{path}: cannot read the signing key ({exc.strerror})") from None
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(SIGNING_CONN_ID)
    if not conn.password:
        raise SigningKeyError(f"Connection {SIGNING_CONN_ID} has no password holding the PEM key")
    return SigningKey.from_pem(conn.password.encode(), f"Connection {SIGNING_CONN_ID}")


@dataclass(frozen=True)
class KeySet:
    """Public keys by kid (a JWKS document), current and retired alike."""

    keys: tuple[dict, ...]

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        for jwk in self.keys:
            if jwk.get("kid") == kid and jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
                public = Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
                if public_jwk(public)["kid"] != kid:  # a kid that is not the key's own thumbprint
                    return None
                return public
        return None

    def retired_at(self, kid: str) -> datetime | None:
        """When the key ``kid`` stopped signing; None while it is the current key."""
        jwk = next((k for k in self.keys if k.get("kid") == kid), {})
        if "retired" not in jwk:
            return None
        try:
            at = datetime.fromisoformat(jwk["retired"])
        except (TypeError, ValueError):
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

    def as_jwks(self) -> dict:
        return {"keys": list(self.keys)}

    @classmethod
    def from_jwks(cls, document: dict, source: str = "JWKS") -> KeySet:
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
        _replace_file(Path(path), (json.dumps(self.as_jwks(), indent=2) + "\n").encode(), mode=0o644)


def rotate(key_file: Path, jwks_file: Path) -> SigningKey:
    """A new signing key written to ``key_file`` (mode 0600) in place of the old one, whose private key is
    not kept; the new public key added to ``jwks_file`` next to every earlier key, the old one marked retired.

    The key set is written first: if the key file cannot be replaced after it, the old key is already marked
    retired, so what it signs from then on is refused (it fails closed), and running ``rotate`` again
    completes the rotation. The new private key exists only in memory until it is renamed into place."""
    keys = KeySet.read(jwks_file)
    if key_file.exists():
        old = SigningKey.from_pem(key_file.read_bytes(), str(key_file))
        keys = keys.with_key(old)  # make sure the old key is published before it stops signing
    new = SigningKey.generate()
    keys = keys.with_key(new)
    keys.write(jwks_file)
    _replace_file(key_file, new.to_pem(), mode=0o600)
    _remove_retired_copies(key_file, keys)
    return new


def _remove_retired_copies(key_file: Path, keys: KeySet) -> None:
    """Earlier versions kept each retired private key beside the live one as ``<key_file>.retired-<kid>``.
    Remove those whose public key the set holds as retired (so certificates they signed keep verifying);
    leave any other file alone, since its key would then be lost to verification."""
    for copy in key_file.parent.glob(f"{key_file.name}.retired-*"):
        kid = copy.name.removeprefix(f"{key_file.name}.retired-")
        if keys.public_key(kid) is not None and keys.retired_at(kid) is not None:
            copy.unlink()


def _replace_file(path: Path, data: bytes, *, mode: int) -> None:
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
