"""An offboarding's outcome in words, as `make demo` prints it: the return package, the certificate's link,
its backup lines (crypto-erase only for the copies under the account's key, expiry for shared snapshots) and
its exceptions; read from the ledger and the signed certificate, never from what the demo intended."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retention.ledger import Ledger
    from retention.offboarding.certify import Certified


def print_return(ledger: Ledger, run_id: str) -> None:
    """The return package of the run, if it had one, and whether the customer confirmed it."""
    delivered = ledger.run_events(run_id, "return.delivered")
    if not delivered:
        return
    package = delivered[0].payload
    receipt = ledger.run_events(run_id, "return.received")
    print(f"\nReturned first: package {package['package_id']}, {package['records']:,} records from "
          f"{package['locations']} locations ({package['bytes']:,} bytes), encrypted for the customer's key; "
          f"manifest sha256 {package['manifest_sha256'][:16]}…")
    print("The customer " + ("confirmed it by quoting the manifest's sha256, so deletion went ahead; the package "
                             "itself was then removed." if receipt else "did not confirm it in the window."))


def print_certificate(certified: Certified) -> None:
    """The certificate the offboarding issued: its link, its backup lines and its exceptions."""
    from retention.certificates.pdf import exception_text

    print(f"\nCertificate {certified['certificate_id']}: {certified['pdf']}")
    if certified["link"]:  # made when a link secret is set, as the demo sets one
        print("Customer's download link (30 days; serve it with `airflow api-server`):\n"
              f"  http://localhost:8080{certified['link']['path']}")
    certificate = json.loads(Path(certified["pdf"]).with_suffix(".json").read_bytes())["certificate"]
    print("Backups, as the certificate states them:")
    for line in certificate["termination"]["backups"]:
        print(f"  - {backup_line(line)}")
    print("Exceptions the certificate states (each is dated; the daily backup_expiry DAG adds supplements):")
    for exception in certificate["exceptions"]:
        print(f"  - {exception_text(exception)}")


def backup_line(line: dict[str, Any]) -> str:
    """One backup line in words: crypto-erase only for the copies encrypted under the account's key, expiry only
    for the shared snapshot."""
    from retention.certificates.pdf import _short

    if line["line"] == "per_account_copies":
        copies = line.get("encrypted_copies", 0)
        if line["status"] == "held":
            return f"per-account copies ({copies}): not erased, kept under legal hold(s) {', '.join(line['holds'])}"
        if not copies:
            return (f"per-account key scheduled for destruction on {_short(line['destroy_on'])}; "
                    "no copy was encrypted under it")
        when = (f"done: key destroyed {_short(line['destroyed_at'])}" if line["destroyed_at"]
                else f"takes effect when the account's key is destroyed on {_short(line['destroy_on'])}")
        digests = ", ".join(c["sha256"][:16] + "…" for c in line["copies"])
        return (f"crypto-erase (NIST 800-88 purge) of {copies} encrypted per-account copy(ies) [sha256 {digests}]: "
                f"{when}")
    if line["status"] == "held":
        return f"shared snapshot(s) of {line['source']}: kept past expiry under a legal hold"
    if line["status"] == "done":
        return f"shared snapshot(s) of {line['source']}: expired"
    return (f"shared snapshot(s) of {line['source']} ({line['snapshots']}): not crypto-erased (every customer in the "
            f"clear); expire by {_short(line['no_copy_after'])}, confirmed then by a signed supplement")
