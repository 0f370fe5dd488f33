"""The termination part of a certificate, from the offboarding run's ledger events: the election and its
changes, who requested and who approved, the return package and its receipt, backups, and the data
kept under law. Each open item is an exception with its date, never a claim."""

from __future__ import annotations

from typing import Any

from retention.ledger import Ledger
from retention.ledger.chain import iso_utc

SCC = {"2010/87/EU": "scc2010", "2021/914": "scc2021"}


def termination_section(ledger: Ledger, run_id: str, account_id: str) -> tuple[dict, list[dict]]:
    """(the certificate's ``termination`` object, its exceptions) for an offboarding run."""
    mine = [e for e in ledger.events() if e.payload.get("account_id") == account_id or e.run_id == run_id]
    of_run = {e.kind: e for e in mine if e.run_id == run_id}  # the last event of each kind in this run
    requested = of_run["offboarding.requested"]
    approved = of_run.get("offboarding.approved")
    section = {
        "contract_end": requested.payload.get("contract_end"),
        "effective_at": requested.payload["effective_at"],
        "election": _election(mine, requested),
        "requested": {"by": requested.payload["requested_by"], "role": "requester", "reference": requested.payload["reference"],
                      "at": iso_utc(requested.occurred_at)},
        "approved": {"by": approved.payload["approver_id"], "role": "approver (four eyes)",
                     "at": iso_utc(approved.occurred_at)} if approved else None,
        "return": _returned(of_run),
        "backups": _backups(mine),
        "retained_under_law": requested.payload.get("isolated", []),
    }
    exceptions = [{"kind": "retained_under_law", "location": i["location"], "data_class": i["data_class"],
                   "law": i.get("law"), "retain_until": i["until"], "isolation": i.get("isolation")}
                  for i in section["retained_under_law"]]
    exceptions += [_backup_exception(b) for b in section["backups"] if b["status"] != "done"]
    exceptions += _unanswered_subprocessors(mine, requested)
    return section, exceptions


def _election(events: list, requested: Any) -> dict:
    """The election this run acts on, and every election recorded for the account before it."""
    history = [{"choice": e.payload["choice"], "at": iso_utc(e.occurred_at), "reference": e.payload["reference"]}
               for e in events if e.kind == "offboarding.requested" and e.seq <= requested.seq]
    return {"choice": requested.payload["choice"], "given_at": iso_utc(requested.occurred_at),
            "changed": len({h["choice"] for h in history}) > 1, "history": history}


def _returned(of_run: dict) -> dict | None:
    delivered = of_run.get("return.delivered")
    if delivered is None:
        return None
    p = delivered.payload
    received, elapsed = of_run.get("return.received"), of_run.get("return.window_elapsed")
    removed = of_run.get("return.package_removed")
    return {"package_id": p["package_id"], "format": p["format"], "manifest_sha256": p["manifest_sha256"],
            "records": p["records"], "delivered_at": iso_utc(delivered.occurred_at),
            "receipt": {"received_at": iso_utc(received.occurred_at), "manifest_sha256": received.payload["manifest_sha256"]}
            if received else None,
            "window_elapsed_at": iso_utc(elapsed.occurred_at) if elapsed else None,
            "package_deleted_at": iso_utc(removed.occurred_at) if removed else None}


def _backups(events: list) -> list[dict]:
    """The latest state of each backup line: a per-account key (crypto-erase) and snapshot copies (expiry)."""
    lines: dict[str, dict] = {}
    for e in events:
        p = e.payload
        if e.kind == "backup.key_deletion_scheduled":
            lines["key"] = {"method": "cryptographic erase (per-account data key destroyed)",
                            "nist_800_88": "purge", "keystore": p["keystore"], "scheduled_at": iso_utc(e.occurred_at),
                            "destroy_on": p["deletion_date"], "destroyed_at": None, "status": "pending"}
        elif e.kind == "backup.key_deletion_held":
            lines["key"] = {"method": "cryptographic erase withheld: legal hold in force", "nist_800_88": None,
                            "holds": p["holds"], "destroyed_at": None, "status": "held"}
        elif e.kind == "backup.key_destroyed" and "key" in lines:
            lines["key"].update(destroyed_at=p["destroyed_at"], status="done")
        elif e.kind == "backup.copies_recorded":
            lines[p["source"]] = {"method": "expiry under the backup retention policy", "source": p["source"],
                                  "snapshots": len(p["snapshots"]), "no_copy_after": p["last_expiry"],
                                  "policy": p["policy"], "status": "pending" if p["snapshots"] else "done"}
        elif e.kind == "backup.copies_expired" and p["source"] in lines:
            lines[p["source"]].update(status="done", confirmed_at=iso_utc(e.occurred_at))
    return list(lines.values())


def _backup_exception(line: dict) -> dict:
    if line["status"] == "held":
        return {"kind": "backup_key_held", "holds": line["holds"]}
    if "keystore" in line:
        return {"kind": "backup_key_pending", "complete_by": line["destroy_on"], "keystore": line["keystore"]}
    return {"kind": "backup_copies_expiring", "source": line["source"], "snapshots": line["snapshots"],
            "complete_by": line["no_copy_after"]}


def _unanswered_subprocessors(events: list, requested: Any) -> list[dict]:
    """Manual requests still waiting for the provider's confirmation (attested ones are results)."""
    attested = {e.payload["subprocessor"] for e in events if e.kind == "subprocessor.attested"}
    return [{"kind": "subprocessor_requested", "subprocessor": e.payload["subprocessor"], "resource": "manual",
             "complete_by": e.payload["deadline"]}
            for e in events if e.kind == "subprocessor.manual_requested" and e.seq > requested.seq
            and e.payload["subprocessor"] not in attested]
