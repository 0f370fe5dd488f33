"""Return on termination (DPA 7(b), SCC Clause 12): a package of everything the account holds, encrypted
for the customer, delivered to object storage behind an expiring link; deletion waits for the customer's
receipt or the end of the return window.

The package is a tar of ``<location>/…`` (rows as JSON Lines per table, objects as they are), of
``subprocessors/<name>/…`` (what each subprocessor the offboarding covers returns through its spec's ``export``:
DPA 7(b) returns *all* personal data, SCC Clause 12 has the subprocessor return it too) and a
``manifest.json`` with each file's sha256 and size and each location's and subprocessor's record count, encrypted with
age (https://age-encryption.org) for the X25519 key the customer gave: ``age -d -i key.txt`` opens it.
The ledger keeps the manifest's sha256, counts and times; never file names, which may be object keys.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import uuid
from collections.abc import Collection
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import pendulum
import pyrage

from retention.engine.context import SweepContext
from retention.ledger import Event, Ledger
from retention.ledger.chain import canonical_json, iso_utc
from retention.links import RETURN_RECEIPT, sign_link
from retention.offboarding.plan import PLANNED, account_of
from retention.stores import Selector

FORMAT = "tar+age (X25519); rows as JSON Lines per table, objects as stored; manifest.json with sha256 per file"
RETURN_FORMAT = ("tar+age (X25519); rows as JSON Lines per table, objects as stored, subprocessors/<name>/ as each "
                 "provider returns them; manifest.json with sha256 per file")
MAX_LINK = timedelta(days=7)  # the longest an S3 (SigV4) presigned link can live
SUBPROCESSORS = "subprocessors"  # the package's folder of what subprocessors return (no location takes this name)


def deliver(ctx: SweepContext, run_id: str, recipient: str, *, client: Any, bucket: str, window_days: int,
            actor: str, link_secret: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Export, encrypt, upload and record ``return.delivered``; returns the record and the links. A retried
    task finds the package already delivered and only signs fresh links to it."""
    now = pendulum.instance(now or pendulum.now("UTC"))
    earlier = ctx.ledger.run_events(run_id, "return.delivered")
    delivered = earlier[0].payload if earlier else _package(ctx, run_id, recipient, client=client, bucket=bucket,
                                                            window_days=window_days, actor=actor, now=now)
    expires = min(timedelta(days=window_days), MAX_LINK) or timedelta(hours=1)
    url = download_link(client, bucket, delivered["key"], expires)
    receipt = receipt_link(delivered["package_id"], delivered["account_id"], max(window_days, 1) * 24, link_secret) \
        if link_secret else None
    return {**delivered, "url": url, "link_expires_at": iso_utc(now + expires), "receipt_path": receipt}


def _package(ctx: SweepContext, run_id: str, recipient: str, *, client: Any, bucket: str, window_days: int,
             actor: str, now: pendulum.DateTime) -> dict[str, Any]:
    account_id = account_of(ctx.ledger, run_id)
    package_id = f"ret-{uuid.uuid4().hex}"
    key = f"returns/{account_id}/{package_id}.tar.age"
    with tempfile.TemporaryDirectory(prefix="retention-return-") as tmp:
        root = Path(tmp) / package_id
        records = export_locations(ctx, Selector(account_id), [t.location for t in ctx.ledger.tasks(run_id)], root)
        returned, incomplete = export_subprocessors(account_id, _requested_subprocessors(ctx.ledger, run_id),
                                                    root / SUBPROCESSORS)
        manifest = write_manifest(root, package_id, account_id, {**records, **returned}, now, RETURN_FORMAT,
                                  incomplete=incomplete)
        size = seal_and_upload(root, recipient, client=client, bucket=bucket, key=key)
    delivered: dict[str, Any] = {
        "package_id": package_id, "account_id": account_id, "format": RETURN_FORMAT,
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "records": sum(records.values()) + sum(returned.values()), "locations": len(records),
        "subprocessors": len(returned), "bytes": size, "bucket": bucket, "key": key,
        "window_ends_at": iso_utc(now.add(days=window_days)), "incomplete": sorted(incomplete)}
    ctx.ledger.append("return.delivered", delivered, actor=actor, run_id=run_id)
    return delivered


def export_account(ctx: SweepContext, account_id: str, locations: list[str], root: Path, *, package_id: str,
                   now: datetime, format: str = FORMAT) -> tuple[dict[str, int], bytes]:
    """Write the account's rows and objects of ``locations`` under ``root/<location>/`` and ``root/manifest.json``;
    returns (records per location, the manifest's bytes): the per-account backup copies
    (``retention.backups.copies``). The return package adds what the subprocessors return."""
    records = export_locations(ctx, Selector(account_id), locations, root)
    return records, write_manifest(root, package_id, account_id, records, now, format)


def export_subprocessors(account_id: str, names: Collection[str], root: Path) -> tuple[dict[str, int], dict[str, str]]:
    """What each of ``names`` returns for the account (its spec's ``export``), under ``root/<name>/``; returns the
    records per ``subprocessors/<name>`` (0 for a provider with nothing to export: a manual one, say), and, per
    ``subprocessors/<name>/<resource>`` whose provider search has no paging and answered its cap, why that export
    may be incomplete (the manifest and ``return.delivered`` say so rather than claim the whole of it)."""
    from retention.subprocessors import subjects

    records: dict[str, int] = {}
    incomplete: dict[str, str] = {}
    for name in sorted(names):
        exported = subjects.export_account(name, account_id, root)
        records[f"{SUBPROCESSORS}/{name}"] = exported.records
        incomplete.update({f"{SUBPROCESSORS}/{name}/{resource}": "the provider's search answers at most a fixed "
                           "number of items and has no paging: it may hold more than this export lists"
                           for resource in exported.truncated})
    return records, incomplete


def _requested_subprocessors(ledger: Ledger, run_id: str) -> list[str]:
    """The subprocessors the offboarding covers, as its plan recorded them (None there: every connector spec)."""
    from retention.subprocessors.tasks import specs

    requested = ledger.run_events(run_id, PLANNED)
    named = requested[-1].payload.get("subprocessors") if requested else None
    return sorted(specs()) if named is None else [str(name) for name in named]


def export_locations(ctx: SweepContext, selector: Selector, locations: list[str], root: Path) -> dict[str, int]:
    """What ``selector`` selects at each of ``locations``, as its store exports it, under ``root/<location>/``;
    returns the records written per location. An account's return exports all of it; a data subject's access
    request (``retention.requests.access``) only the person's records."""
    return {location: ctx.store(location).export(selector, root / location) for location in locations}


def write_manifest(root: Path, package_id: str, account_id: str, records: dict[str, int], now: datetime,
                   format: str = FORMAT, *, incomplete: dict[str, str] | None = None) -> bytes:
    """``root/manifest.json``: every file under ``root`` with its size and sha256, and the records per location
    (or per subprocessor), and ``incomplete``: what may hold more than it lists, and why; returns its bytes (the
    ledger keeps their sha256)."""
    manifest = _manifest(root, package_id, account_id, records, now, format, incomplete or {})
    (root / "manifest.json").write_bytes(manifest)
    return manifest


def seal_and_upload(root: Path, recipient: str, *, client: Any, bucket: str, key: str) -> int:
    """Tar ``root`` (its files under ``<root's name>/``), encrypt it with age for ``recipient`` and upload it to
    ``bucket``/``key``; returns the encrypted package's size. The tar and the sealed file are written beside
    ``root``, in its temporary directory; the sealed file is removed once uploaded."""
    sealed = _seal(root, recipient, root.parent)
    try:
        client.upload_file(str(sealed), bucket, key)
        return sealed.stat().st_size
    finally:
        sealed.unlink(missing_ok=True)


def download_link(client: Any, bucket: str, key: str, expires: timedelta) -> str:
    """A presigned GET of the package, valid for ``expires`` (at most ``MAX_LINK``, the S3 limit)."""
    url: str = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                             ExpiresIn=int(min(expires, MAX_LINK).total_seconds()))
    return url


def remove_package(ledger: Ledger, run_id: str, *, client: Any, actor: str) -> bool:
    """Once the return is settled, delete the package (every version): it is a full copy of the account's
    data, even if only the customer can decrypt it. Recorded as ``return.package_removed``; idempotent.
    A legal hold on any of the account's data keeps the package (``return.removal_held``, once per run)."""
    delivered = ledger.run_events(run_id, "return.delivered")
    if not delivered or ledger.run_events(run_id, "return.package_removed"):
        return False
    package, account_id = delivered[0].payload["package_id"], delivered[0].payload["account_id"]
    holds = ledger.holds_in_force(account_id)  # the package holds every data class of the account
    if holds:
        if not ledger.run_events(run_id, "return.removal_held"):
            ledger.append("return.removal_held", {"package_id": package, "account_id": account_id, "holds": holds},
                          actor=actor, run_id=run_id)
        return False
    delete_package(client, delivered[0].payload["bucket"], delivered[0].payload["key"], package)
    ledger.append("return.package_removed", {"package_id": package, "account_id": account_id},
                  actor=actor, run_id=run_id)
    return True


def delete_package(client: Any, bucket: str, key: str, package_id: str) -> None:
    """Delete every version of a package object, verified by listing again (never by the calls' answers)."""
    for version_id in _versions(client, bucket, key):
        client.delete_object(Bucket=bucket, Key=key, **({} if version_id == "null" else {"VersionId": version_id}))
    if _versions(client, bucket, key):
        raise RuntimeError(f"package {package_id} is still in bucket {bucket}")


def _versions(client: Any, bucket: str, key: str) -> list[str]:
    pages = client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for page in pages for v in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]
            if v["Key"] == key]


def _manifest(root: Path, package_id: str, account_id: str, records: dict[str, int], now: datetime,
              format: str, incomplete: dict[str, str]) -> bytes:
    files = [{"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size, "sha256": _sha256(path)}
             for path in sorted(root.rglob("*")) if path.is_file()]
    return canonical_json({"package_id": package_id, "account_id": account_id, "created_at": iso_utc(now),
                           "format": format, "records": records, "files": files,
                           **({"incomplete": incomplete} if incomplete else {})}).encode()


def _seal(root: Path, recipient: str, tmp: Path) -> Path:
    archive, sealed = tmp / "package.tar", tmp / "package.tar.age"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=path.relative_to(root.parent).as_posix(), recursive=False)
    pyrage.encrypt_file(str(archive), str(sealed), [pyrage.x25519.Recipient.from_str(recipient)])
    archive.unlink()
    return sealed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ReceiptRefused(ValueError):
    """The receipt does not match a delivered package."""


class Receipt(TypedDict):
    """``return.received``: the customer quoted the package's manifest sha256."""
    package_id: str
    account_id: str
    manifest_sha256: str


def receipt_link(package_id: str, account_id: str, hours: int, secret: str | None) -> str:
    """The path the customer posts its receipt to (``{"manifest_sha256": ...}``), signed for this package."""
    token, _ = sign_link(RETURN_RECEIPT, {"p": package_id, "a": account_id}, hours, secret)
    return f"/retention/returns/{package_id}/receipt?token={token}"


def record_receipt(ledger: Ledger, package_id: str, manifest_sha256: str, *, actor: str,
                   account_id: str | None = None) -> Receipt:
    """The customer confirms the package by quoting its manifest's sha256 (so it was opened)."""
    delivered = _delivered(ledger, package_id)
    if delivered is None or delivered.run_id is None or account_id not in (None, delivered.payload["account_id"]):
        raise ReceiptRefused(f"no return package {package_id!r} was delivered")
    if manifest_sha256 != delivered.payload["manifest_sha256"]:
        raise ReceiptRefused("the sha256 does not match the package's manifest")
    if ledger.run_events(delivered.run_id, "return.window_elapsed", "return.package_removed"):
        raise ReceiptRefused("the return window has ended; the package was deleted with the rest of the data")
    receipt: Receipt = {"package_id": package_id, "account_id": delivered.payload["account_id"],
                        "manifest_sha256": manifest_sha256}
    if _received(ledger, delivered.run_id) is None:
        ledger.append("return.received", dict(receipt), actor=actor, run_id=delivered.run_id)
    return receipt


def return_state(ledger: Ledger, run_id: str, *, actor: str, now: datetime | None = None) -> str:
    """"received", "window_elapsed" (recorded once), "waiting", or "none" (no return in this run)."""
    found = {e.kind: e for e in ledger.run_events(run_id, "return.delivered", "return.received",
                                                  "return.window_elapsed")}
    delivered = found.get("return.delivered")
    if delivered is None:
        return "none"
    if "return.received" in found:
        return "received"
    ends = datetime.fromisoformat(delivered.payload["window_ends_at"])
    if (now or pendulum.now("UTC")) < ends:
        return "waiting"
    if "return.window_elapsed" not in found:
        ledger.append("return.window_elapsed", {"package_id": delivered.payload["package_id"],
                                                "account_id": delivered.payload["account_id"]},
                      actor=actor, run_id=run_id)
    return "window_elapsed"


def _delivered(ledger: Ledger, package_id: str) -> Event | None:
    return next((e for e in ledger.events() if e.kind == "return.delivered"
                 and e.payload.get("package_id") == package_id), None)


def _received(ledger: Ledger, run_id: str) -> Event | None:
    return next(iter(ledger.run_events(run_id, "return.received")), None)
