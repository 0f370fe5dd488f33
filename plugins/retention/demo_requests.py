"""`make demo`'s data subject requests (DPA 5(a)): one erasure and one access request, each filed by the customer's
system as the customer API files it (a credential staff issued, the request kept in the ledger, the DAG run by its
id alone), run by the `subject_request` DAG (``dag.test()``), and printed in plain words from the ledger and the
stores: what was found where, what was erased, anonymized or kept and why, the certificate, and the package the
customer opens and checks against its manifest.

The people are synthetic (``embedded.person``): a record group of the newest age, which the sweep left in place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pendulum

STAFF = "demo.staff"  # issues the customer's API credential
ERASED_BY = "acct_2002"  # US-CA: CCPA, 45 days
ACCESSED_BY = "acct_1001"  # EEA: GDPR, one month


def run(number: int, account_ids: list[str], requester: str, run_dag: Any) -> bool:
    """``run_dag(conf) -> DagRun``: the demo's way to run ``subject_request`` as ``requester``."""
    from retention.demo import section

    section(f"{number}. Data subject requests (DPA 5(a)): one erasure, one access")
    erased = _erasure(account_ids, requester, run_dag)
    accessed = _access(account_ids, run_dag)
    return erased and accessed


def _file(account_id: str, request_type: str, identifiers: dict[str, list[str]], reference: str,
          recipient: str | None = None) -> tuple[str, str]:
    """The request as the customer API's route files it: under the customer's credential, in the ledger only."""
    from retention.engine.tasks import context
    from retention.requests.filing import file_request
    from retention.requests.request import parse_subject_request
    from retention.settings import Settings

    settings = Settings.from_env()
    with context() as ctx:
        credential_id, _token = ctx.ledger.issue_credential(account_id, issued_by=STAFF)
        spec = parse_subject_request({"account_id": account_id, "request_type": request_type,
                                      "identifiers": identifiers, "reference": reference,
                                      "received_on": pendulum.today("UTC").to_date_string(), "recipient": recipient})
        if ctx.registry is None:  # SweepContext.load always reads one; a test's hand-made context would not
            raise RuntimeError("no account registry was read")
        request_id = file_request(ctx.ledger, settings, ctx.registry, spec, filed_by=f"customer:{credential_id}")
        row = ctx.ledger.subject_request(request_id)
    return request_id, f"{pendulum.instance(row.deadline_at).to_date_string()}, {row.regime.upper()}"


def _erasure(account_ids: list[str], requester: str, run_dag: Any) -> bool:
    from retention import embedded

    person = embedded.person(account_ids, ERASED_BY)
    request_id, deadline = _file(ERASED_BY, "erasure", {"email": [person.email]}, "DSR-2002-1")
    print(f"{ERASED_BY}'s customer received an erasure request from a chat visitor ({person.email}) today; its "
          f"system filed it through the customer API with a credential staff issued (request {request_id[:12]}…, "
          f"answer due by {deadline}). The DAG runs it by its id: the e-mail never enters Airflow's database.")
    run = run_dag({"request_id": request_id, "subprocessors": []})
    print(f"DAG run finished: {run.state}.")
    lines, ok = _outcome(request_id)
    print("\n".join(lines))
    certified = _task_value(run, "certify")
    if certified:
        ok = _verify_certificate(certified["certificate_id"]) and ok
    return str(run.state) == "success" and bool(certified) and ok


def _access(account_ids: list[str], run_dag: Any) -> bool:
    import pyrage

    from retention import embedded
    from retention.demo_people import not_matching, open_package

    person = embedded.person(account_ids, ACCESSED_BY)
    identity = pyrage.x25519.Identity.generate()  # the customer's age key; we only ever see its public half
    request_id, deadline = _file(ACCESSED_BY, "access", {"email": [person.email]}, "DSR-1001-1",
                                 recipient=str(identity.to_public()))
    print(f"\n{ACCESSED_BY}'s customer asks, for a data subject ({person.email}), for a copy of everything held "
          f"(request {request_id[:12]}…, due by {deadline}); the package is encrypted to the customer's own key.")
    run = run_dag({"request_id": request_id, "subprocessors": []})
    delivered = _task_value(run, "package")
    if not delivered:
        print(f"DAG run finished: {run.state}; no package was made.")
        return False
    files = open_package(delivered["url"], identity)  # what the customer does with its link
    matching = not not_matching(files)
    print(f"DAG run finished: {run.state}. The customer downloaded the package ({delivered['records']} records in "
          f"{delivered['files']} files, link valid until {delivered['expires_at'][:10]}), decrypted it with its key "
          f"and checked every file against manifest.json: {'all match' if matching else 'A FILE DOES NOT MATCH'}.")
    return str(run.state) == "success" and matching


def _outcome(request_id: str) -> tuple[list[str], bool]:
    """What the preview found, what the run did, and a re-count of the person's records in the stores."""
    from retention.engine.tasks import context
    from retention.stores import Selector

    with context() as ctx:
        row = ctx.ledger.subject_request(request_id)
        expanded = [e for e in ctx.ledger.events_of_kind("subject.expanded") if e.payload["request_id"] == request_id]
        previewed = ctx.ledger.run_events(row.run_id, "subject.previewed")[-1].payload if row.run_id else {}
        tasks = ctx.ledger.tasks(row.run_id) if row.run_id else []
        subject = ctx.ledger.request_subject(request_id)
        left = {t.location: ctx.store(t.location).count(Selector(row.account_id, subject=subject))
                for t in tasks}
    lines = []
    if expanded:
        by_kind = expanded[-1].payload.get("by_kind", {})
        lines.append("Identity expansion through linked records: " +
                     ", ".join(f"{n} {kind}" for kind, n in sorted(by_kind.items())) + " (keyed hashes in the ledger).")
    found = [f"{p['location']} {p['matched']}" for p in previewed.get("locations", []) if p["matched"]]
    lines.append("Found: " + (", ".join(found) or "nothing") + ".")
    done = {"delete": "deleted", "anonymize": "anonymized"}
    acted = [f"{t.affected_count} {done[t.action]} at {t.location}" for t in tasks if t.action in done and
             t.status in ("verified", "done")]
    kept = [f"{t.location} ({left[t.location]} kept: {t.skip_reason})" for t in tasks if t.status == "skipped"]
    lines.append("Erased: " + ("; ".join(acted) or "nothing") + ".")
    if kept:
        lines.append("Kept: " + "; ".join(kept) + ".")
    still = {loc: n for loc, n in left.items() if n and not any(t.location == loc and t.status == "skipped"
                                                                   for t in tasks)}
    anonymized = {t.location for t in tasks if t.action == "anonymize"}
    unexpected = {loc: n for loc, n in still.items() if loc not in anonymized}
    lines.append(f"Re-counted in the stores: {'none' if not unexpected else unexpected} of the person's records left "
                 f"where they were erased; request {row.status}.")
    return lines, not unexpected and row.status == "completed"


def _task_value(run: Any, task_id: str) -> dict[str, Any] | None:
    ti = run.get_task_instance(task_id)
    value: dict[str, Any] | None = ti.xcom_pull(task_ids=task_id) if ti is not None else None
    return value


def _verify_certificate(certificate_id: str) -> bool:
    from retention.certificates import KeySet, verify_file
    from retention.certificates.archive import Archive
    from retention.settings import Settings

    settings = Settings.from_env()
    archive = Archive(settings.certificates_dir)
    pdf = archive.load(certificate_id, "pdf")
    jwks = Path(os.environ["RETENTION_JWKS_FILE"])
    if pdf is None:
        print(f"{certificate_id}: the archive did not keep its PDF")
        return False
    certificate = verify_file(pdf, KeySet.read(jwks)).certificate
    print(f"Certificate {certificate_id} ({certificate['status']}), signed and verified offline; it names the "
          f"person only by keyed hashes. Check it: .venv/bin/retention certificate verify "
          f"{archive.directory / f'{certificate_id}.pdf'} --jwks {jwks}")
    return True
