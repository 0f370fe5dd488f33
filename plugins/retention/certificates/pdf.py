"""The certificate as a PDF a person reads: same content, the signed JSON attached, a PAdES signature.

``render`` lays out the verified content with fpdf2 and attaches the signed JSON (``certificate.json``)
byte for byte, so the PDF carries its own machine-verifiable original. ``sign_pdf`` adds a PAdES
signature with pyHanko, made by the same Ed25519 key as the JSON's, inside a self-issued X.509
certificate whose common name is the key id: a PDF reader shows the document as signed (and, the
issuer not being in its trust store, asks whether to trust it); ``verify_pdf`` trusts it only if its
public key is in the published JWKS.

``render`` lays out an account's certificate here and a data subject erasure's with ``subject_pdf.SubjectLayout``
(chosen by the certificate's ``kind``); both share the page, the attachment and the signature. Over 400 lines
because the account layout and the PAdES signing and verification of the same file are one job: the PDF a
customer is given.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID
from fpdf import FPDF

from retention.certificates.signed import CertificateInvalid, JsonObject, Verified, verify
from retention.signing_keys import KeySet, SigningKey, public_jwk

if TYPE_CHECKING:  # pyHanko and asn1crypto load only where a PDF is signed or verified
    from asn1crypto.x509 import Certificate as Asn1Certificate
    from pyhanko.pdf_utils.reader import PdfFileReader

ATTACHMENT = "certificate.json"
logging.getLogger("fontTools").setLevel(logging.WARNING)  # font subsetting logs every table it prunes
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")  # Debian's fonts-dejavu-core; core fonts otherwise


# -- rendering ----------------------------------------------------------------------------------------

def render(document: bytes, keys: KeySet) -> bytes:
    """An unsigned PDF of a signed certificate (verified first: a PDF never shows an invalid one)."""
    certificate = verify(document, keys).certificate
    pdf = _layout(certificate)(certificate)
    pdf.embed_file(bytes=document, basename=ATTACHMENT, mime_type="application/json",
                   desc="The signed certificate (RFC 8785 JSON, Ed25519): verify with `retention certificate verify`",
                   modification_date=datetime.fromisoformat(certificate["issued_at"]))
    return bytes(pdf.output())


def _layout(certificate: JsonObject) -> type[_Layout]:
    """The layout of the certificate's kind: an account's deletion, or one data subject's erasure."""
    if certificate.get("kind") == "subject_erasure":
        from retention.certificates.subject_pdf import SubjectLayout  # here: it builds on _Layout below

        return SubjectLayout
    return _Layout


def signing_reason(certificate: JsonObject) -> str:
    """What the PDF signature of this certificate's kind says it is for."""
    return _layout(certificate).SIGNING_REASON


class _Layout(FPDF):
    TITLE = "Certificate of deletion"
    SIGNING_REASON = "Certificate of deletion (SCC Clause 12)"  # what the PDF signature says it is for

    def __init__(self, c: JsonObject) -> None:
        super().__init__(format="A4")
        self.c = c
        self.set_title(f"{self.TITLE} {c['certificate_id']}")
        self.set_creator(f"retention-orchestrator {c['run']['tool']['version']}")
        self.set_creation_date(datetime.fromisoformat(c["issued_at"]))
        self._fonts()
        self.set_auto_page_break(True, margin=18)
        self.add_page()
        self._body()

    def _fonts(self) -> None:
        regular, bold = FONT_DIR / "DejaVuSans.ttf", FONT_DIR / "DejaVuSans-Bold.ttf"
        if regular.exists() and bold.exists():
            self.add_font("Body", "", str(regular))
            self.add_font("Body", "B", str(bold))
            self.family = "Body"
        else:
            self.family = "Helvetica"

    def text_of(self, value: object) -> str:
        text = "—" if value in (None, "") else str(value)
        return text if self.family == "Body" else text.encode("latin-1", "replace").decode("latin-1")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.family, "", 7)
        self.cell(0, 5, self.text_of(f"{self.c['certificate_id']} · page {self.page_no()}/{{nb}} · "
                                     "the attached certificate.json is the signed original"), align="C")

    def heading(self, text: str) -> None:
        self.ln(3)
        self.set_font(self.family, "B", 11)
        self.cell(0, 7, self.text_of(text), new_x="LMARGIN", new_y="NEXT")
        self.set_font(self.family, "", 8.5)

    def pairs(self, rows: Sequence[tuple[str, object]]) -> None:
        for label, value in rows:
            self.set_font(self.family, "B", 8.5)
            self.cell(48, 5, self.text_of(label) if label else "")
            self.set_font(self.family, "", 8.5)
            self.multi_cell(0, 5, self.text_of(value), align="L", new_x="LMARGIN", new_y="NEXT")

    def grid(self, header: tuple[str, ...], rows: Sequence[Sequence[object]], widths: tuple[int, ...]) -> None:
        self.set_font(self.family, "", 7.5)
        with self.table(col_widths=widths, text_align="LEFT", line_height=4.2, first_row_as_headings=True) as table:
            for values in [header, *rows]:
                row = table.row()
                for value in values:
                    row.cell(self.text_of(value))

    def _body(self) -> None:
        c = self.c
        self.set_font(self.family, "B", 17)
        self.cell(0, 10, self.text_of("Certificate of deletion"), new_x="LMARGIN", new_y="NEXT")
        self.set_font(self.family, "", 9)
        status = ("COMPLETE: at every location below, no record in scope remains (re-queried after deletion)"
                  if c["status"] == "complete" else
                  "PARTIAL: what is certified is below; every exception is listed with its reason")
        self.multi_cell(0, 5, self.text_of(f"{status}. Issued {_short(c['issued_at'])} under "
                                           f"{'; '.join(c['legal_basis'])}."), align="L",
                        new_x="LMARGIN", new_y="NEXT")
        self.heading("Parties and scope")
        run = c["run"]
        self.pairs([("Certificate id", c["certificate_id"]), ("Data exporter", c["data_exporter"]),
                    ("Data importer", c["data_importer"]), ("Account", c["account_id"]),
                    ("Data classes", ", ".join(c["scope"]["data_classes"])),
                    ("Subprocessors", ", ".join(c["scope"]["subprocessors"]) or "none recorded"),
                    ("Run", f"{run['kind']} {run['run_id']}, as of {_short(run['as_of'])}, {run['status']}"),
                    ("Tool", f"{run['tool']['product']} {run['tool']['version']}, " + (
                        f"DAG {run['tool']['dag_id']}, Airflow run {run['tool']['airflow_run_id']}"
                        if run["tool"]["dag_id"] else "run from the command line")),
                    ("Rules digest", run["rules_digest"]),
                    *_registry_rows(c.get("registry"))])
        if c.get("termination"):
            self._termination(c["termination"])
        self.heading("Locations")
        self.grid(("Location", "Data class", "In scope", "Action", "NIST 800-88", "Records", "Finished",
                   "Verification"),
                  [(line["location"], line["data_class"],
                    f"dated ≤ {line['cutoff'][:10]}" if line["cutoff"] else "all of the account's",
                    line["action"], line["nist_800_88"]["category"], line["records_affected"],
                    _short(line["finished_at"]), f"{line['verification']['result']}, "
                    f"{line['verification']['remaining']} left") for line in c["locations"]],
                  (28, 26, 22, 16, 15, 15, 33, 25))
        self.nist_notes(c["locations"])
        self.heading("Subprocessors")
        if c["subprocessors"]:
            self.grid(("Subprocessor", "Resource", "Recorded", "Deleted", "Status", "Provider copies until"),
                      [(s["subprocessor"], s["resource"], _short(s["recorded_at"]), s.get("deleted"), s["status"],
                        _short(s.get("residual_copies_until"))) for s in c["subprocessors"]],
                      (28, 30, 38, 16, 28, 40))
        else:
            self.pairs([("", "No subprocessor erasure, request or hold recorded for this account.")])
        self.heading("Exceptions")
        if c["exceptions"]:
            for e in c["exceptions"]:
                self.multi_cell(0, 4.5, self.text_of(f"- {exception_text(e)}"), align="L", new_x="LMARGIN",
                                new_y="NEXT")
        else:
            self.pairs([("", "None: nothing in scope was retained, held or left pending.")])
        self.how_to_verify()

    def nist_notes(self, lines: Sequence[Mapping[str, Any]]) -> None:
        """Each NIST SP 800-88 statement the location lines make, once, and what was done about dead rows."""
        methods = sorted({(line["nist_800_88"]["category"], line["nist_800_88"]["method"],
                           line["nist_800_88"].get("physical") or "") for line in lines})
        self.set_font(self.family, "", 7.5)
        for category, method, physical in methods:
            physically = f"; physically: {physical}" if physical else ""
            self.multi_cell(0, 4, self.text_of(f"{category}: {method}{physically}"), align="L", new_x="LMARGIN",
                            new_y="NEXT")
        for vacuum in sorted({line["nist_800_88"]["vacuum"] for line in lines if line["nist_800_88"].get("vacuum")}):
            self.multi_cell(0, 4, self.text_of(f"Dead row versions: {vacuum}"), align="L", new_x="LMARGIN",
                            new_y="NEXT")

    def how_to_verify(self) -> None:
        c = self.c
        self.heading("How to verify")
        self.pairs([("Ledger chain head", f"event {c['ledger']['chain_head_seq']}, "
                                          f"sha256 {c['ledger']['chain_head_hash']}"),
                    ("Signed original", f"attached as {ATTACHMENT}; "
                                        "`retention certificate verify certificate.pdf --jwks <keys>`")])

    def _termination(self, t: JsonObject) -> None:
        self.heading("Termination")
        election = t["election"]
        changes = " -> ".join(f"{h['choice']} ({_short(h['at'])})" for h in election["history"])
        rows: list[tuple[str, object]] = [
                ("Contract end", _short(t["contract_end"]) or "not recorded"), ("Effective", _short(t["effective_at"])),
                ("Customer's election", f"{election['choice']}, given {_short(election['given_at'])}"
                                        + (f"; changed: {changes}" if election["changed"] else "")),
                ("Requested by", f"{t['requested']['by']} ({t['requested']['role']}), {_short(t['requested']['at'])}, "
                                 f"ticket {t['requested']['reference']}"),
                ("Approved by", f"{t['approved']['by']} ({t['approved']['role']}), {_short(t['approved']['at'])}"
                 if t["approved"] else "not approved")]
        returned = t["return"]
        if returned:
            receipt = (f"receipt {_short(returned['receipt']['received_at'])}" if returned["receipt"] else
                       f"no receipt; return window ended {_short(returned['window_elapsed_at'])}")
            rows.append(("Returned", f"package {returned['package_id']}, {returned['records']} records, delivered "
                                     f"{_short(returned['delivered_at'])}; {receipt}; manifest sha256 "
                                     f"{returned['manifest_sha256']}; {returned['format']}"
                                     + (f"; package deleted {_short(returned['package_deleted_at'])}"
                                        if returned.get("package_deleted_at") else "")
                                     + (f"; package kept under legal hold(s) "
                                        f"{', '.join(returned['package_kept_under_holds'])}"
                                        if returned.get("package_kept_under_holds") else "")))
        rows += [("Backups", backup_text(line)) for line in t["backups"]]
        for kept in t["retained_under_law"]:
            rows.append(("Kept under law", f"{kept['data_class']} ({kept['records']} records) until "
                                           f"{_short(kept['until'])} under {kept['law']}; {kept['isolation']}"))
        self.pairs(rows)


def _registry_rows(registry: Mapping[str, Any] | None) -> list[tuple[str, object]]:
    """The account registry the run acted on (``content.registry_state``); nothing for a run recorded before."""
    if registry is None:
        return []
    if registry.get("scope") == "account entry":  # a subject request read its account's entry alone
        rows: list[tuple[str, object]] = [("Account registry", f"{registry['source']}, this account's entry only")]
    else:
        rows = [("Account registry", f"{registry['source']}, {registry['accounts']:,} accounts, "
                                     f"sha256 {registry['sha256']}")]
    if "account_entry_sha256" in registry:
        rows.append(("Account's registry entry", f"sha256 {registry['account_entry_sha256']}"))
    return rows


def exception_text(e: Mapping[str, Any]) -> str:
    """One sentence a DPO reads; the attached JSON keeps every field."""
    kind, by = e["kind"], _short(e.get("complete_by"))
    if kind == "retained_under_law":
        return (f"{e['data_class']} kept under law ({e['law']}) until {_short(e['retain_until'])}: "
                f"{e.get('isolation') or 'isolated'}.")
    if kind == "backup_key_pending":
        copies = e.get("copies", 0)
        what = (f"the cryptographic erase of {copies} encrypted per-account backup copy(ies) completes when"
                if copies else "no backup copy was encrypted under it;")
        return (f"Backups: {what} the account's key ({e['keystore']} keystore) is destroyed on {by}; "
                "a supplement follows.")
    if kind == "backup_key_held":
        return (f"Backups: the account's key and its {e.get('copies', 0)} encrypted copy(ies) are kept, not erased, "
                f"while legal hold(s) {', '.join(e['holds'])} are in force.")
    if kind == "backup_copies_expiring":
        return f"Backups: {e['snapshots']} snapshot(s) of {e['source']} expire by {by}; a supplement follows."
    if kind == "backup_snapshots_held":
        holds = ", ".join(e["holds"]) or "none on this account"
        others = f" and {e['other_holds']} hold(s) on other data they contain" if e.get("other_holds") else ""
        return (f"Backups: {e['snapshots']} snapshot(s) of {e['source']} are kept past their expiry "
                f"({_short(e.get('expiry_was'))}) under legal hold(s) {holds}{others}.")
    if kind == "return_package_held":
        return (f"Return package {e['package_id']}: kept, not deleted, while legal hold(s) {', '.join(e['holds'])} "
                "are in force.")
    if kind == "subprocessor_held":
        return (f"Subprocessor {e['subprocessor']} ({e['resource']}): not erased, kept under legal hold(s) "
                f"{', '.join(e.get('holds', []))}.")
    if kind == "subprocessor_assumed":
        by = f" by {_short(e['complete_by'])}, a date we assume" if e.get("complete_by") else ""
        return (f"Subprocessor {e['subprocessor']} ({e['resource']}): deletion requested and accepted; that it "
                f"completes{by} rests on our assumption(s) {', '.join(e.get('assumptions', []))}, not on anything "
                "the provider documents or we verified.")
    if kind == "legal_hold":
        return (f"Legal hold {e['hold_id']} (reference {e['reference']}) on {e['data_class']} data, placed "
                f"{_short(e['placed_at'])}: that data is kept.")
    if kind.startswith("subprocessor_"):
        due = f", due by {by}" if by else ""
        status = kind.removeprefix("subprocessor_").replace("_", " ")
        return f"Subprocessor {e['subprocessor']} ({e['resource']}): {status}{due}."
    return ", ".join(f"{k}: {v}" for k, v in e.items())  # residue, Object Lock retention: every field as is


def backup_text(line: Mapping[str, Any]) -> str:
    """A backup line as a DPO reads it: the method in the standard's terms, for which copies, and when."""
    if line.get("line") == "shared_snapshots" or "keystore" not in line and "source" in line:
        when = {"held": f"kept past expiry under legal hold(s) {', '.join(line.get('holds', [])) or 'on other data'}",
                "done": f"expired (confirmed {_short(line.get('confirmed_at'))})" if line.get("confirmed_at")
                else "no snapshot held the account's data"}.get(
            line["status"], f"{line['snapshots']} snapshot(s) expire by {_short(line['no_copy_after'])}")
        return f"{line['source']}: {line['method']}. {when}"
    if line["status"] == "held":
        return f"{line['method']}: legal hold(s) {', '.join(line['holds'])}"
    copies = line.get("copies") or []
    named = "; ".join(f"{c['copy_id']} sha256 {c['sha256']}" for c in copies)
    when = (f"key destroyed {_short(line['destroyed_at'])}" if line.get("destroyed_at")
            else f"key destruction scheduled for {_short(line['destroy_on'])}")
    if not copies:
        return f"{line['method']}; {when}"
    category = f"NIST 800-88 {line['nist_800_88']}" + ("" if line.get("destroyed_at") else " once the key is destroyed")
    how = f" Key destruction: {line['key_destruction']}." if line.get("key_destruction") else ""
    return f"{category}, {len(copies)} per-account copy(ies): {line['method']}; {when}.{how} Copies: {named}"


def _short(timestamp: str | None) -> str | None:
    """``2026-11-23 12:00:01 UTC`` for a table cell (the attached JSON keeps the full precision)."""
    if not timestamp or "T" not in timestamp:
        return timestamp
    return datetime.fromisoformat(timestamp).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- PAdES ------------------------------------------------------------------------------------------

def signing_certificate(key: SigningKey, *, now: datetime | None = None) -> x509.Certificate:
    """A self-issued X.509 certificate for the Ed25519 key, named by its key id."""
    now = now or datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Certificate key {key.kid}"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "retention-orchestrator")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.private.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key.private, algorithm=None))


def sign_pdf(pdf: bytes, key: SigningKey, *, reason: str = _Layout.SIGNING_REASON) -> bytes:
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    cert = asn1_x509.Certificate.load(signing_certificate(key).public_bytes(serialization.Encoding.DER))
    private = asn1_keys.PrivateKeyInfo.load(key.private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    registry = SimpleCertificateStore.from_certs([cert])  # type: ignore[no-untyped-call]  # unannotated upstream
    signer = signers.SimpleSigner(signing_cert=cert, signing_key=private, cert_registry=registry)
    meta = signers.PdfSignatureMetadata(field_name="DeletionCertificate", subfilter=SigSeedSubFilter.PADES,
                                        reason=reason, md_algorithm="sha512")
    out = io.BytesIO()
    signers.PdfSigner(meta, signer).sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)), output=out)
    return out.getvalue()


def verify_pdf(data: bytes, keys: KeySet) -> Verified:
    """The PDF's signature covers the whole file, is intact, and was made by a key of ``keys``; and the
    attached JSON verifies on its own and was made by that same key."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        signatures = reader.embedded_signatures
    except Exception as exc:  # pyHanko raises several kinds for a damaged file
        raise CertificateInvalid(f"not a readable PDF ({type(exc).__name__})") from None
    if len(signatures) != 1:
        raise CertificateInvalid(f"expected one PDF signature, found {len(signatures)}")
    signature = signatures[0]
    try:
        signer_kid = public_jwk(_ed25519_key(signature.signer_cert))["kid"]
    except Exception as exc:  # a damaged signature field: pyHanko and asn1crypto raise several kinds
        raise CertificateInvalid(f"the PDF signature cannot be read ({type(exc).__name__})") from None
    public = keys.public_key(signer_kid)
    if public is None:
        raise CertificateInvalid(f"the PDF was signed with key {signer_kid}, which is not in the public key set")
    # Trust comes from the JWKS, not from a certificate authority: the signer's own certificate is the root.
    trust = ValidationContext(trust_roots=[signature.signer_cert])
    try:
        status = validate_pdf_signature(signature, signer_validation_context=trust, skip_diff=True)
    except Exception as exc:
        raise CertificateInvalid(f"the PDF signature cannot be validated ({type(exc).__name__})") from None
    if not (status.intact and status.valid):
        raise CertificateInvalid("the PDF signature does not match the signed bytes: the PDF was changed after signing")
    if not _signature_field_is_bound(bytes(signature.sig_object["/Contents"]), public):
        raise CertificateInvalid("the PDF signature field was changed after signing (bytes the signature itself "
                                 "does not cover: padding, the embedded certificate or the algorithm list)")
    coverage = status.coverage.name if status.coverage is not None else "no known range"
    if coverage != "ENTIRE_FILE":
        raise CertificateInvalid(f"the PDF signature covers {coverage}, not the entire file: "
                                 "content was appended after signing")
    verified = verify(_attachment(reader), keys)
    if verified.kid != signer_kid:
        raise CertificateInvalid("the PDF and its attached certificate were signed with different keys")
    return verified


def _signature_field_is_bound(contents: bytes, public: Ed25519PublicKey) -> bool:
    """PDF leaves the signature field outside the signed byte range, and CMS leaves parts of it unsigned.
    A strict verifier binds them too: nothing but zero padding after the DER; the embedded certificate
    self-signed by the JWKS key (so its every byte is fixed); the algorithm list and the signer's
    identifier exactly those of the one signer."""
    from asn1crypto import cms
    from cryptography.exceptions import InvalidSignature

    try:
        info = cms.ContentInfo.load(contents)
        length = len(info.dump())
        signed = info["content"]
        (signer,) = signed["signer_infos"]
        embedded = [c.chosen for c in signed["certificates"]]  # pyHanko may embed the signer's twice
        for cert in embedded:
            parsed = x509.load_der_x509_certificate(cert.dump())
            public.verify(parsed.signature, parsed.tbs_certificate_bytes)
        sid = signer["sid"].chosen
        bound = (bool(embedded)
                 and signed["digest_algorithms"].dump() == cms.DigestAlgorithms([signer["digest_algorithm"]]).dump()
                 and any(sid["serial_number"].native == c.serial_number and sid["issuer"].dump() == c.issuer.dump()
                         for c in embedded))
    except (ValueError, TypeError, KeyError, InvalidSignature):
        return False
    return bound and not contents[length:].strip(b"\x00")


def _ed25519_key(asn1_cert: Asn1Certificate) -> Ed25519PublicKey:
    key = x509.load_der_x509_certificate(asn1_cert.dump()).public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the signer's key is not an Ed25519 key")  # as public_jwk refuses one
    return key


def _attachment(reader: PdfFileReader) -> bytes:
    from pyhanko.pdf_utils import misc

    try:
        names = reader.root["/Names"]["/EmbeddedFiles"]["/Names"]
        for i in range(0, len(names), 2):
            if str(names[i]) == ATTACHMENT:
                data = names[i + 1].get_object()["/EF"]["/F"].get_object().data
                if isinstance(data, bytes):
                    return data
    except (KeyError, misc.PdfReadError, TypeError):
        pass
    raise CertificateInvalid(f"the PDF has no attached {ATTACHMENT}")
