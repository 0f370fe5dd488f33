"""The termination part of a certificate, from the offboarding run's ledger events: the election and its
changes, who requested and who approved, the return package and its receipt, backups, and the data
kept under law. Each open item is an exception with its date, never a claim."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, NotRequired, TypedDict

from retention.certificates.signed import JsonObject
from retention.ledger import Event, Ledger
from retention.ledger.chain import iso_utc

SCC = {"2010/87/EU": "scc2010", "2021/914": "scc2021"}


class ElectionChange(TypedDict):
    choice: str
    at: str
    reference: str


class ElectionRecord(TypedDict):
    choice: str  # the election this run acts on
    given_at: str
    changed: bool
    history: list[ElectionChange]  # every election recorded for the account up to this run's


class Approval(TypedDict):
    by: str
    role: str
    at: str


class Request(Approval):
    reference: str


class Receipt(TypedDict):
    received_at: str
    manifest_sha256: str


class ReturnPackage(TypedDict):
    package_id: str
    format: str
    manifest_sha256: str
    records: int
    delivered_at: str
    receipt: Receipt | None
    window_elapsed_at: str | None
    package_deleted_at: str | None
    package_kept_under_holds: NotRequired[list[str]]  # only while a hold keeps the package


class BackupCopy(TypedDict):
    copy_id: str
    sha256: str


BackupStatus = Literal["pending", "held", "done"]


class KeyLine(TypedDict):
    """The account's key and the backup copies encrypted under it; the fields a state has not reached are absent."""

    line: Literal["per_account_copies"]
    method: str
    nist_800_88: str | None
    encrypted_copies: int
    copies: list[BackupCopy]
    destroyed_at: str | None
    status: BackupStatus
    keystore: NotRequired[str]  # scheduled: where the key is and how it is destroyed, and when
    key_destruction: NotRequired[str | None]
    scheduled_at: NotRequired[str]
    destroy_on: NotRequired[str]
    holds: NotRequired[list[str]]  # held: the holds that keep the key


class SnapshotLine(TypedDict):
    """Shared whole-database snapshots that hold the account among others: expiry only."""

    line: Literal["shared_snapshots"]
    method: str
    nist_800_88: None
    source: str
    snapshots: int
    no_copy_after: str | None
    policy: str
    status: BackupStatus
    confirmed_at: NotRequired[str]  # done: when the expiry was confirmed
    holds: NotRequired[list[str]]  # held: this account's holds that keep a snapshot past its expiry
    other_holds: NotRequired[int]  # held: how many holds on other data keep them (counted, never named)
    snapshots_held: NotRequired[int]


BackupLine = KeyLine | SnapshotLine

# The section's keys, "return" among them, which a class-based TypedDict cannot name.
TerminationSection = TypedDict("TerminationSection", {
    "contract_end": str | None,
    "effective_at": str,
    "election": ElectionRecord,
    "requested": Request,
    "approved": Approval | None,
    "return": ReturnPackage | None,
    "backups": list[BackupLine],
    "retained_under_law": list[JsonObject],  # as the offboarding request recorded them
})


def termination_section(ledger: Ledger, run_id: str, account_id: str) -> tuple[TerminationSection, list[JsonObject]]:
    """(the certificate's ``termination`` object, its exceptions) for an offboarding run.

    Subprocessor requests and holds are not here: the certificate's subprocessor section states them, and its
    exceptions come from that one list, so the two always agree (``content.subprocessor_results``)."""
    everything = list(ledger.events())
    mine = [e for e in everything if e.payload.get("account_id") == account_id or e.run_id == run_id]
    of_run = {e.kind: e for e in mine if e.run_id == run_id}  # the last event of each kind in this run
    requested = of_run["offboarding.requested"]
    approved = of_run.get("offboarding.approved")
    own_holds = {h.id for h in ledger.list_holds(include_released=True) if h.account_id in (None, account_id)}
    section: TerminationSection = {
        "contract_end": requested.payload.get("contract_end"),
        "effective_at": requested.payload["effective_at"],
        "election": _election(mine, requested),
        "requested": {"by": requested.payload["requested_by"], "role": "requester",
                      "reference": requested.payload["reference"], "at": iso_utc(requested.occurred_at)},
        "approved": {"by": approved.payload["approver_id"], "role": "approver (four eyes)",
                     "at": iso_utc(approved.occurred_at)} if approved else None,
        "return": _returned(of_run),
        "backups": _backups(mine, [e for e in everything if e.kind in SNAPSHOT_EVENTS], own_holds),
        "retained_under_law": requested.payload.get("isolated", []),
    }
    exceptions: list[JsonObject] = [
        {"kind": "retained_under_law", "location": i["location"], "data_class": i["data_class"], "law": i.get("law"),
         "retain_until": i["until"], "isolation": i.get("isolation")} for i in section["retained_under_law"]]
    exceptions += [_backup_exception(b) for b in section["backups"] if b["status"] != "done"]
    returned = section["return"]
    if returned and returned.get("package_kept_under_holds"):
        exceptions.append({"kind": "return_package_held", "package_id": returned["package_id"],
                           "holds": returned["package_kept_under_holds"]})
    return section, exceptions


def _election(events: Iterable[Event], requested: Event) -> ElectionRecord:
    """The election this run acts on, and every election recorded for the account before it."""
    history: list[ElectionChange] = [
        {"choice": e.payload["choice"], "at": iso_utc(e.occurred_at), "reference": e.payload["reference"]}
        for e in events if e.kind == "offboarding.requested" and e.seq <= requested.seq]
    return {"choice": requested.payload["choice"], "given_at": iso_utc(requested.occurred_at),
            "changed": len({h["choice"] for h in history}) > 1, "history": history}


def _returned(of_run: Mapping[str, Event]) -> ReturnPackage | None:
    delivered = of_run.get("return.delivered")
    if delivered is None:
        return None
    p = delivered.payload
    received, elapsed = of_run.get("return.received"), of_run.get("return.window_elapsed")
    removed = of_run.get("return.package_removed")
    held = of_run.get("return.removal_held") if removed is None else None  # kept: a copy of held data
    package: ReturnPackage = {
        "package_id": p["package_id"], "format": p["format"], "manifest_sha256": p["manifest_sha256"],
        "records": p["records"], "delivered_at": iso_utc(delivered.occurred_at),
        "receipt": {"received_at": iso_utc(received.occurred_at),
                    "manifest_sha256": received.payload["manifest_sha256"]} if received else None,
        "window_elapsed_at": iso_utc(elapsed.occurred_at) if elapsed else None,
        "package_deleted_at": iso_utc(removed.occurred_at) if removed else None}
    if held:
        package["package_kept_under_holds"] = held.payload["holds"]
    return package


SNAPSHOT_EVENTS = ("backup.snapshot_expiry_held", "backup.snapshot_expired")  # shared: no account_id
CRYPTO_ERASE = ("cryptographic erase: each per-account backup copy is encrypted (AES-256-GCM) under its own data "
                "key, kept only wrapped by the account's key; destroying that key leaves no means to decrypt them")
KEY_DESTRUCTION = {  # how the key itself is destroyed: the erase is only as strong as that
    "local": ("the local keystore (the embedded stack's stand-in for KMS) overwrites the key file with zeros, fsyncs "
              "and unlinks it; on journaling or copy-on-write file systems and SSDs old bytes may survive elsewhere "
              "on the device"),
    "kms": "AWS KMS destroys the key material itself at the end of the deletion window (AWS's statement, not ours)",
}
NO_COPIES = ("the account's key is destroyed, but no backup copy was encrypted under it: "
             "no cryptographic erase is claimed")
SNAPSHOT_EXPIRY = ("expiry: shared whole-database snapshots hold every account in the clear and cannot be edited "
                   "or crypto-erased; stated only by the date the last of them expires")


def _backups(events: Iterable[Event], snapshot_events: Iterable[Event], own_holds: set[str]) -> list[BackupLine]:
    """The latest state of each backup line: the per-account key with the copies encrypted under it
    (crypto-erase, NIST 800-88 purge once the key is destroyed) and the shared snapshots (expiry only)."""
    lines: dict[str, BackupLine] = {}  # "key" or a snapshot source, in the order each line first appeared
    snapshot_ids: dict[str, set[str]] = {}  # per source: the snapshots that hold the account's data
    for e in events:
        p = e.payload
        if e.kind == "backup.key_deletion_scheduled":
            copies: list[BackupCopy] = p.get("copies", [])
            lines["key"] = {"line": "per_account_copies", "method": CRYPTO_ERASE if copies else NO_COPIES,
                            "nist_800_88": "purge (cryptographic erase)" if copies else None,
                            "keystore": p["keystore"], "key_destruction": KEY_DESTRUCTION.get(p["keystore"]),
                            "encrypted_copies": len(copies), "copies": copies,
                            "scheduled_at": iso_utc(e.occurred_at), "destroy_on": p["deletion_date"],
                            "destroyed_at": None, "status": "pending"}
        elif e.kind == "backup.key_deletion_held":
            previous = lines.get("key")
            earlier = previous if previous is not None and previous["line"] == "per_account_copies" else None
            lines["key"] = {"line": "per_account_copies",
                            "method": "cryptographic erase withheld: a legal hold is in force; the account's key and "
                                      "its copies are kept", "nist_800_88": None, "holds": p["holds"],
                            "encrypted_copies": p.get("copies", earlier["encrypted_copies"] if earlier else 0),
                            "copies": earlier["copies"] if earlier else [], "destroyed_at": None, "status": "held"}
        elif e.kind == "backup.key_destroyed" and "key" in lines:
            key_line = lines["key"]
            if key_line["line"] == "per_account_copies":
                key_line["destroyed_at"] = p["destroyed_at"]
                key_line["status"] = "done"
        elif e.kind == "backup.copies_recorded":
            lines[p["source"]] = {"line": "shared_snapshots", "method": SNAPSHOT_EXPIRY, "nist_800_88": None,
                                  "source": p["source"], "snapshots": len(p["snapshots"]),
                                  "no_copy_after": p["last_expiry"], "policy": p["policy"],
                                  "status": "pending" if p["snapshots"] else "done"}
            snapshot_ids[p["source"]] = set(p["snapshots"])
        elif e.kind == "backup.copies_expired" and p["source"] in lines:
            expired_line = lines[p["source"]]
            if expired_line["line"] == "shared_snapshots":
                expired_line["status"] = "done"
                expired_line["confirmed_at"] = iso_utc(e.occurred_at)
    for line in lines.values():
        if line["line"] != "shared_snapshots" or line["status"] != "pending":
            continue  # a pending key line names no snapshot
        ids = snapshot_ids.get(line["source"], set())
        held: dict[str, list[str]] = {}  # snapshot -> the holds that keep it past its expiry
        for e in snapshot_events:  # the latest word on each of this line's snapshots
            snapshot = e.payload["snapshot"]
            if snapshot in ids:
                if e.kind == "backup.snapshot_expired":
                    held.pop(snapshot, None)
                else:
                    held[snapshot] = e.payload["holds"]
        if held:
            holds = sorted({h for named in held.values() for h in named})
            line["status"] = "held"
            line["holds"] = sorted(set(holds) & own_holds)
            line["other_holds"] = len(set(holds) - own_holds)
            line["snapshots_held"] = len(held)
    return list(lines.values())


def _backup_exception(line: BackupLine) -> JsonObject:
    if line["line"] == "per_account_copies":
        if line["status"] == "held":
            return {"kind": "backup_key_held", "holds": line["holds"], "copies": line["encrypted_copies"]}
        return {"kind": "backup_key_pending", "complete_by": line["destroy_on"], "keystore": line["keystore"],
                "copies": line["encrypted_copies"]}
    if line["status"] == "held":
        return {"kind": "backup_snapshots_held", "source": line["source"], "snapshots": line["snapshots_held"],
                "holds": line["holds"], "other_holds": line["other_holds"], "expiry_was": line["no_copy_after"]}
    return {"kind": "backup_copies_expiring", "source": line["source"], "snapshots": line["snapshots"],
            "complete_by": line["no_copy_after"]}
