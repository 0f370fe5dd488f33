"""Deletion certificates: built from the ledger, signed as canonical JSON, verifiable offline.

``issue`` builds the content for one account of one finished run, signs it with the current key and
records ``certificate.issued`` (id, account, the document's sha256, the key id) in the ledger.
``verify`` checks a document against a public key set and, given the ledger, that the chain head it
names is the ledger's own.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from retention.certificates.content import DEFAULT_LEGAL_BASIS, LEGAL_BASES, build
from retention.certificates.keys import load_signing_key, rotate
from retention.certificates.pdf import render, sign_pdf, signing_reason, verify_pdf
from retention.certificates.signed import CertificateInvalid, Verified, sign, verify
from retention.certificates.subject import build_subject_supplement, is_subject_certificate, issue_subject_certificate
from retention.certificates.supplement import build_supplement
from retention.ledger import Ledger
from retention.links import CERTIFICATE_DOWNLOAD, sign_link, token_digest
from retention.rules.inventory import LocationSpec, load_inventory
from retention.rules.loader import load_ruleset
from retention.settings import Settings
from retention.signing_keys import KeySet, SigningKey, SigningKeyError

__all__ = ["LEGAL_BASES", "CertificateInvalid", "KeySet", "SigningKey", "SigningKeyError", "Verified", "as_pdf",
           "build", "build_supplement", "certificate_link", "check_chain_head", "inventory_locations", "issue",
           "issue_subject_certificate", "issue_supplement", "load_signing_key", "rotate", "sign", "verify",
           "verify_file", "verify_pdf"]


def inventory_locations(rules_dir: Path) -> dict[str, LocationSpec]:
    """The inventory's locations by id: a certificate line names each one's store kind and NIST statement."""
    return load_inventory(rules_dir / "systems.yaml", load_ruleset(rules_dir)).locations


def issue(ledger: Ledger, run_id: str, account_id: str, key: SigningKey, *, exporter: str, importer: str,
          rules_dir: Path, actor: str, legal_basis: tuple[str, ...] | None = None) -> bytes:
    content = build(ledger, run_id, account_id, exporter=exporter, importer=importer,
                    locations=inventory_locations(rules_dir), legal_basis=legal_basis or DEFAULT_LEGAL_BASIS)
    document = sign(content, key)
    ledger.append("certificate.issued", {
        "certificate_id": content["certificate_id"], "account_id": account_id, "run_id": run_id,
        "status": content["status"], "kid": key.kid, "sha256": hashlib.sha256(document).hexdigest()},
        actor=actor, run_id=run_id)
    # Pin the chain, this event included, outside the ledger database; a failure is logged, never raised.
    from retention.ledger.checkpoints import publish_after_certificate  # here: it imports this package

    publish_after_certificate(ledger, content["certificate_id"])
    return document


def issue_supplement(ledger: Ledger, original: bytes, key: SigningKey, keys: KeySet, *, actor: str) -> bytes:
    """Sign a supplement to ``original`` (an account's or a subject erasure's certificate) listing what completed
    since; recorded as ``certificate.supplemented``."""
    subject = is_subject_certificate(verify(original, keys).certificate)
    content = (build_subject_supplement if subject else build_supplement)(ledger, original, keys)
    document = sign(content, key)
    ledger.append("certificate.supplemented", {
        "supplement_id": content["supplement_id"], "certificate_id": content["supplements"]["certificate_id"],
        "account_id": content["account_id"], "resolved": len(content["resolved"]),
        "still_open": len(content["still_open"]), "kid": key.kid, "sha256": hashlib.sha256(document).hexdigest()},
        actor=actor)
    return document


def certificate_link(ledger: Ledger, certificate_id: str, account_id: str, hours: int, *, actor: str) -> dict[str, Any]:
    """A customer's download link for one certificate of one account; recorded as ``certificate.link_created``."""
    token, expires = sign_link(CERTIFICATE_DOWNLOAD, {"c": certificate_id, "a": account_id}, hours,
                               Settings.from_env().link_secret)
    at = expires.isoformat(timespec="seconds")
    ledger.append("certificate.link_created", {"certificate_id": certificate_id, "account_id": account_id,
                                               "expires_at": at, "token_sha256": token_digest(token)}, actor=actor)
    return {"path": f"/retention/certificates/{certificate_id}/download?token={token}", "expires_at": at,
            "link_id": token_digest(token)}  # what staff revoke it by


def as_pdf(document: bytes, key: SigningKey) -> bytes:
    """The signed PDF of a signed certificate, an account's or a subject erasure's (the JSON attached, a PAdES
    signature by the same key)."""
    keys = KeySet((key.jwk,))
    return sign_pdf(render(document, keys), key, reason=signing_reason(verify(document, keys).certificate))


def verify_file(data: bytes, keys: KeySet) -> Verified:
    """A signed certificate, JSON or PDF (told apart by the PDF header)."""
    return verify_pdf(data, keys) if data.startswith(b"%PDF-") else verify(data, keys)


def check_chain_head(verified: Verified, ledger: Ledger) -> None:
    """The ledger event at the certificate's chain head must carry the hash the certificate names."""
    named = verified.certificate.get("ledger", {})
    seq, expected = named.get("chain_head_seq"), named.get("chain_head_hash")
    event = next(iter(ledger.events(after_seq=seq - 1, limit=1)), None) if isinstance(seq, int) and seq > 0 else None
    if event is None or event.seq != seq:
        raise CertificateInvalid(f"the ledger has no event {seq!r}, the chain head the certificate names")
    if event.hash != expected:
        raise CertificateInvalid(f"the ledger's event {seq} has another hash than the certificate's chain head")
    if not ledger.verify().ok:
        raise CertificateInvalid("the ledger's hash chain does not verify")
