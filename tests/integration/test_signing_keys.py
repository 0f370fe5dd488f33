"""Signing key rotation: no retired private key stays on disk, a retired key's signature counts only on
documents issued before its retirement (in Python, the CLI and the PDF), and the JWKS is replaced whole."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import rfc8785
from click.testing import CliRunner

from retention.certificates import CertificateInvalid, KeySet, SigningKey, rotate, sign, verify
from retention.cli import main

CONTENT = {"certificate_id": "cert-1", "account_id": "acct_1", "status": "complete",
           "locations": [{"location": "app.chat", "records_affected": 1200, "remaining": 0}]}


def issued_at(when: datetime) -> dict:
    return {**CONTENT, "issued_at": when.isoformat(timespec="microseconds")}


def retired(jwks_file: Path, kid: str) -> datetime:
    return next(datetime.fromisoformat(k["retired"]) for k in KeySet.read(jwks_file).keys if k["kid"] == kid)


def private_keys_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if b"PRIVATE KEY" in p.read_bytes())


def test_rotation_leaves_only_the_live_private_key_on_disk(tmp_path) -> None:
    key_file, jwks_file = tmp_path / "signing.pem", tmp_path / "jwks.json"
    first = rotate(key_file, jwks_file)
    second = rotate(key_file, jwks_file)
    third = rotate(key_file, jwks_file)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["jwks.json", "signing.pem"]
    assert private_keys_in(tmp_path) == ["signing.pem"]
    assert SigningKey.from_pem(key_file.read_bytes(), "test").kid == third.kid
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    keys = KeySet.read(jwks_file)
    assert [k["kid"] for k in keys.keys] == [first.kid, second.kid, third.kid]
    assert keys.retired_at(first.kid) and keys.retired_at(second.kid) and keys.retired_at(third.kid) is None


def test_retired_private_keys_left_by_earlier_versions_are_removed_once_their_public_key_is_published(tmp_path) -> None:
    key_file, jwks_file = tmp_path / "signing.pem", tmp_path / "jwks.json"
    first = rotate(key_file, jwks_file)
    earlier_copy = tmp_path / f"signing.pem.retired-{first.kid}"  # what rotate used to leave behind
    earlier_copy.write_bytes(key_file.read_bytes())
    unknown = SigningKey.generate()  # a copy whose public key the JWKS lacks: removing it would lose the key
    unpublished = tmp_path / f"signing.pem.retired-{unknown.kid}"
    unpublished.write_bytes(unknown.to_pem())

    rotate(key_file, jwks_file)

    assert not earlier_copy.exists()
    assert unpublished.read_bytes() == unknown.to_pem()


def test_a_retired_key_verifies_only_what_it_signed_before_its_retirement(tmp_path) -> None:
    key_file, jwks_file = tmp_path / "signing.pem", tmp_path / "jwks.json"
    old = rotate(key_file, jwks_file)
    rotate(key_file, jwks_file)
    keys, cutoff = KeySet.read(jwks_file), retired(jwks_file, old.kid)

    before = sign(issued_at(cutoff - timedelta(seconds=1)), old)
    assert verify(before, keys).kid == old.kid
    # the attack: the retired private key (leaked, or an old copy) signs a document dated after retirement
    with pytest.raises(CertificateInvalid, match="after the key was retired"):
        verify(sign(issued_at(cutoff + timedelta(seconds=1)), old), keys)
    with pytest.raises(CertificateInvalid, match="after the key was retired"):
        verify(sign(issued_at(cutoff), old), keys)
    with pytest.raises(CertificateInvalid, match="no issued_at"):
        verify(sign(CONTENT, old), keys)
    with pytest.raises(CertificateInvalid, match="no issued_at"):
        verify(sign({**CONTENT, "issued_at": "2020-01-01T00:00:00"}, old), keys)  # no UTC offset: ambiguous


def test_the_cli_refuses_a_document_signed_after_its_keys_retirement(tmp_path) -> None:
    key_file, jwks_file = tmp_path / "signing.pem", tmp_path / "jwks.json"
    old = rotate(key_file, jwks_file)
    rotate(key_file, jwks_file)
    cutoff = retired(jwks_file, old.kid)
    good, late = tmp_path / "good.json", tmp_path / "late.json"
    good.write_bytes(sign(issued_at(cutoff - timedelta(days=3)), old))
    late.write_bytes(sign(issued_at(cutoff + timedelta(days=3)), old))
    runner = CliRunner()

    assert runner.invoke(main, ["certificate", "verify", str(good), "--jwks", str(jwks_file)]).exit_code == 0
    refused = runner.invoke(main, ["certificate", "verify", str(late), "--jwks", str(jwks_file), "--json"])
    assert refused.exit_code == 1
    assert "after the key was retired" in json.loads(refused.output)["reason"]


def test_a_malformed_retirement_time_is_refused_not_ignored(tmp_path) -> None:
    key = SigningKey.generate()
    document = sign(issued_at(datetime.fromisoformat("2026-01-01T00:00:00+00:00")), key)
    for bad in ("yesterday", "2026-06-01T00:00:00", 20260601):
        with pytest.raises(CertificateInvalid, match="retired"):
            verify(document, KeySet(({**key.jwk, "retired": bad},)))


def test_the_jwks_is_replaced_whole_never_rewritten_in_place(tmp_path) -> None:
    key_file, jwks_file = tmp_path / "signing.pem", tmp_path / "jwks.json"
    rotate(key_file, jwks_file)
    before = jwks_file.read_bytes()
    inode = jwks_file.stat().st_ino
    with jwks_file.open("rb") as reader:  # a reader that opened the file before the rotation (e.g. the api)
        rotate(key_file, jwks_file)
        # written in place, this reader would now see the new or a half-written document; replaced by
        # rename, it still reads the complete old one, and new readers see the complete new one
        assert reader.read() == before
    assert jwks_file.stat().st_ino != inode
    assert len(json.loads(jwks_file.read_text())["keys"]) == 2
    assert oct(jwks_file.stat().st_mode & 0o777) == "0o644"  # public: the api-server serves it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jwks.json", "signing.pem"]  # no temporary file left


def test_a_jwks_that_cannot_be_replaced_leaves_no_temporary_file(tmp_path) -> None:
    target = tmp_path / "jwks.json"
    target.mkdir()  # os.replace of a file over a directory fails after the temporary file was written
    with pytest.raises(OSError):
        KeySet((SigningKey.generate().jwk,)).write(target)
    assert [p.name for p in tmp_path.iterdir()] == ["jwks.json"] and not any(target.iterdir())
    assert os.path.isdir(target)


def test_a_signature_in_another_base64_spelling_of_the_same_bytes_is_refused() -> None:
    """Python's base64 decoder takes '+' for '-' and ignores the last character's unused bits: such a changed
    byte of a certificate decoded to the same signature and verified (hypothesis found it)."""
    key = SigningKey.generate()
    document = json.loads(sign({"certificate_id": "c-1", "records_affected": 3}, key))
    value = document["signature"]["value"]
    spellings = []
    if "-" in value:
        spellings.append(value.replace("-", "+", 1))
    if "_" in value:
        spellings.append(value.replace("_", "/", 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(value[-1])  # 64 bytes: the last character carries 2 bits, its low 4 are unused
    spellings.append(value[:-1] + alphabet[last ^ 1])
    spellings.append(value + "==")
    for spelling in spellings:
        tampered = rfc8785.dumps({**document, "signature": {**document["signature"], "value": spelling}})
        with pytest.raises(CertificateInvalid, match="not base64url"):
            verify(tampered, KeySet((key.jwk,)))
