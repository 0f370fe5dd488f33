"""The certificate signing key: where it is loaded from, and its rotation.

The private key never lives in the repository: it is read from a PEM file (``RETENTION_SIGNING_KEY_FILE``,
``Settings.signing_key_file``) or from an Airflow Connection (``retention_signing_key``, the PEM in its
password). The key, its RFC 7638 id and the public key set (JWKS) are ``retention.signing_keys``.

Rotation: ``rotate`` makes a new key and adds its public half to the JWKS file; the old public keys
stay in that file, so certificates signed before the rotation keep verifying. A key is never removed
from the JWKS, only marked ``retired`` with the time it stopped signing, and a document it signed
verifies only if it was issued before that time (``signed.verify``). The retired private key is not
kept: nothing may sign with it again, and verifying needs only the public half. Its file is replaced
by the new key's, not overwritten in place: on journaling or copy-on-write filesystems and SSDs an
overwrite does not reach the old blocks, so those are left to the disk's encryption.
"""

from __future__ import annotations

from pathlib import Path

from retention.settings import Settings
from retention.signing_keys import KeySet, SigningKey, SigningKeyError, replace_file

SIGNING_CONN_ID = "retention_signing_key"


def load_signing_key(key_file: Path | str | None = None) -> SigningKey:
    """The current signing key: ``key_file``, else the setting ``signing_key_file``
    (``RETENTION_SIGNING_KEY_FILE``), else the Airflow Connection ``retention_signing_key`` (PEM in its password)."""
    path = key_file or Settings.from_env().signing_key_file
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
    replace_file(key_file, new.to_pem(), mode=0o600)
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
