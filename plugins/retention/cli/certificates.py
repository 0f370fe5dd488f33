"""`retention certificate`: issue, verify and supplement signed deletion certificates; rotate the signing key."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from retention.cli.base import Failure, common, ledger_option, open_ledger, operator_id
from retention.cli.output import emit

if TYPE_CHECKING:
    from retention.certificates import KeySet


@click.group()
def certificate() -> None:
    """Issue and verify signed deletion certificates; manage the signing keys."""


def _key_file_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--key-file", type=click.Path(path_type=Path), envvar="RETENTION_SIGNING_KEY_FILE",
                        help="Ed25519 private key (PEM); default: the Airflow Connection "
                             "retention_signing_key.")(command)


def _jwks_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--jwks", "jwks_source", envvar="RETENTION_JWKS_FILE", metavar="FILE|URL",
                        help="Public keys (JWKS) that may have signed certificates.")(command)


@certificate.command("issue")
@click.argument("run_id")
@click.argument("account_id")
@click.option("--exporter", required=True, help="The data exporter (the customer), as the DPA names it.")
@click.option("--importer", required=True, help="The data importer (us, the processor), as the DPA names it.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Where to write the signed JSON.")
@click.option("--pdf", type=click.Path(path_type=Path), help="Also write the signed PDF here.")
@_key_file_option
@ledger_option
@common
def certificate_issue(run_id: str, account_id: str, exporter: str, importer: str, out: Path, pdf: Path | None,
                      key_file: Path | None, database_url: str | None, rules_dir: Path,
                      as_json: bool) -> None:
    """Sign a certificate for ACCOUNT_ID's data in the finished run RUN_ID."""
    from retention.certificates import SigningKeyError, as_pdf, issue, load_signing_key

    try:
        key = load_signing_key(key_file)
    except SigningKeyError as exc:
        raise Failure(str(exc)) from exc
    with open_ledger(database_url) as opened:
        document = issue(opened, run_id, account_id, key, exporter=exporter, importer=importer,
                         rules_dir=rules_dir, actor=operator_id())
    out.write_bytes(document)
    if pdf is not None:
        pdf.write_bytes(as_pdf(document, key))
    content = json.loads(document)["certificate"]
    summary = {"ok": True, "certificate_id": content["certificate_id"], "status": content["status"],
               "kid": key.kid, "file": str(out)}
    if as_json:
        return emit(summary)
    click.echo(f"issued {summary['certificate_id']} ({summary['status']}), signed by key {key.kid}: {out}")


@certificate.command("verify")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@_jwks_option
@click.option("--ledger", "check_ledger", is_flag=True, help="Also check the chain head against the ledger.")
@ledger_option
@common
def certificate_verify(file: Path, jwks_source: str | None, check_ledger: bool, database_url: str | None,
                       rules_dir: Path, as_json: bool) -> None:
    """Check FILE (signed JSON or PDF) offline: canonical form, key id, signature; for a PDF also its PAdES
    signature over the whole file and the attached JSON. With --ledger, the chain head too."""
    from retention.certificates import CertificateInvalid, check_chain_head, verify_file

    if not jwks_source:
        raise Failure("give the public keys: --jwks FILE|URL (or RETENTION_JWKS_FILE)")
    try:
        verified = verify_file(file.read_bytes(), _read_jwks(jwks_source))
        if check_ledger:
            with open_ledger(database_url) as opened:
                check_chain_head(verified, opened)
    except CertificateInvalid as exc:
        raise Failure(f"{file}: INVALID: {exc}", {"ok": False, "file": str(file), "reason": str(exc)}) from exc
    content = verified.certificate
    document = {"ok": True, "file": str(file),
                "certificate_id": content.get("certificate_id") or content.get("supplement_id"),
                "account_id": content.get("account_id"), "status": content.get("status"), "kid": verified.kid,
                "chain_head_checked": check_ledger}
    if as_json:
        return emit(document)
    click.echo(f"{file}: valid — {document['certificate_id']} for account {document['account_id']} "
               f"({document['status']}), signed by key {verified.kid}"
               + ("; chain head matches the ledger" if check_ledger else ""))


def _read_jwks(source: str) -> KeySet:
    import httpx

    from retention.certificates import KeySet, SigningKeyError

    try:
        if source.startswith(("https://", "http://")):
            response = httpx.get(source, timeout=10.0, follow_redirects=False)
            response.raise_for_status()
            return KeySet.from_jwks(response.json(), source)
        if not Path(source).is_file():
            raise Failure(f"{source}: no such JWKS file")
        return KeySet.read(source)
    except (SigningKeyError, httpx.HTTPError, ValueError) as exc:
        raise Failure(f"cannot read the public keys from {source}: {exc}") from exc


@certificate.command("supplement")
@click.argument("original", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Where to write the signed supplement.")
@_key_file_option
@_jwks_option
@ledger_option
@common
def certificate_supplement(original: Path, out: Path, key_file: Path | None, jwks_source: str | None,
                           database_url: str | None, rules_dir: Path, as_json: bool) -> None:
    """Sign a supplement to the certificate ORIGINAL (signed JSON) for what completed since it was issued."""
    from retention.certificates import CertificateInvalid, SigningKeyError, issue_supplement, load_signing_key

    if not jwks_source:
        raise Failure("give the public keys: --jwks FILE|URL (or RETENTION_JWKS_FILE)")
    try:
        key = load_signing_key(key_file)
        with open_ledger(database_url) as opened:
            document = issue_supplement(opened, original.read_bytes(), key, _read_jwks(jwks_source),
                                        actor=operator_id())
    except (SigningKeyError, CertificateInvalid) as exc:
        raise Failure(str(exc)) from exc
    out.write_bytes(document)
    content = json.loads(document)["certificate"]
    summary = {"ok": True, "supplement_id": content["supplement_id"], "resolved": len(content["resolved"]),
               "still_open": len(content["still_open"]), "file": str(out)}
    if as_json:
        return emit(summary)
    click.echo(f"issued {summary['supplement_id']}: {summary['resolved']} exception(s) resolved, "
               f"{summary['still_open']} still open: {out}")


@certificate.command("rotate-key")
@click.option("--key-file", type=click.Path(path_type=Path), envvar="RETENTION_SIGNING_KEY_FILE", required=True,
              help="Where the current private key lives (replaced: the old private key is not kept).")
@click.option("--jwks", "jwks_file", type=click.Path(path_type=Path), envvar="RETENTION_JWKS_FILE", required=True,
              help="The published public keys; the new one is added, the old ones stay.")
@common
def certificate_rotate_key(key_file: Path, jwks_file: Path, rules_dir: Path, as_json: bool) -> None:
    """Make a new signing key; certificates signed with earlier keys keep verifying."""
    from retention.certificates import rotate

    new = rotate(key_file, jwks_file)
    if as_json:
        return emit({"ok": True, "kid": new.kid, "key_file": str(key_file), "jwks": str(jwks_file)})
    click.echo(f"new signing key {new.kid} in {key_file}; public keys in {jwks_file}")
