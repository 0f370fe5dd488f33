"""The PDF of a data subject erasure certificate (``certificates.subject``): the account certificate's page,
fonts, signature and attached original (``certificates.pdf``), with the request's own sections. The person is
named only by the keyed hashes of their identifiers, as in the signed JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from retention.certificates.pdf import _Layout, _registry_rows, _short, exception_text

STATUS = {
    "complete": "COMPLETE: everything of this person found at the locations below was erased or anonymized and the "
                "location re-queried, or is kept under the law named; nothing is pending",
    "nothing_found": "COMPLETE: nothing of this person was found at any location or subprocessor checked below",
    "partial": "PARTIAL: what is certified is below; every exception is listed with its reason",
}


class SubjectLayout(_Layout):
    TITLE = "Certificate of erasure"
    SIGNING_REASON = "Certificate of a data subject's erasure (DPA 5(a))"

    def _body(self) -> None:
        c = self.c
        self.set_font(self.family, "B", 17)
        self.cell(0, 10, self.text_of("Certificate of erasure: one data subject"), new_x="LMARGIN", new_y="NEXT")
        self.set_font(self.family, "", 9)
        status = "nothing_found" if c["status"] == "complete" and c["scope"]["nothing_found"] else c["status"]
        self.multi_cell(0, 5, self.text_of(f"{STATUS[status]}. Issued {_short(c['issued_at'])} under "
                                           f"{'; '.join(c['legal_basis'])}."), align="L",
                        new_x="LMARGIN", new_y="NEXT")
        self._request()
        self.heading("Locations checked")
        self.grid(("Location", "Data class", "Found", "Action", "NIST 800-88", "Affected", "Finished", "Verification"),
                  [(line["location"], line["data_class"], line["found"], line["action"],
                    line["nist_800_88"]["category"], line["records_affected"], _short(line["finished_at"]),
                    f"{line['verification']['result']}, {line['verification']['remaining']} left"
                    if line["verification"]["remaining"] is not None else line["verification"]["result"])
                   for line in c["locations"]],
                  (28, 26, 14, 17, 22, 14, 33, 26))
        self.nist_notes(c["locations"])
        if c["not_searchable"]:
            self.heading("Not searchable for one person")
            self.pairs([(n["location"], f"{n['data_class']} ({n['store']}): declares "
                                        f"{', '.join(n['identifier_kinds']) or 'no identifier'} to find a person by; "
                                        "nothing is stated about it here: its data follows the account's rules")
                        for n in c["not_searchable"]])
        self.heading("Kept under law")
        if c["kept_under_law"]:
            self.pairs([(k["location"], f"{k['records']} record(s) of {k['data_class']} kept, not erased: "
                                        f"{k['basis']}") for k in c["kept_under_law"]])
        else:
            self.pairs([("", "Nothing of this person is kept under a legal obligation.")])
        self.heading("Subprocessors")
        if c["subprocessors"]:
            self.grid(("Subprocessor", "Subject search", "Matched", "Outcome", "Count", "Recorded"),
                      [(s["subprocessor"], s["scope"], s["matched"], outcome_text(s), s["count"],
                        _short(s["recorded_at"])) for s in c["subprocessors"]],
                      (34, 26, 18, 34, 16, 52))
        else:
            self.pairs([("", "No subprocessor was checked for this request.")])
        self.heading("Exceptions")
        if c["exceptions"]:
            for e in c["exceptions"]:
                self.multi_cell(0, 4.5, self.text_of(f"- {subject_exception_text(e)}"), align="L", new_x="LMARGIN",
                                new_y="NEXT")
        else:
            self.pairs([("", "None: nothing of this person was held, left pending or found after erasure.")])
        self.how_to_verify()

    def _request(self) -> None:
        c, r, run = self.c, self.c["request"], self.c["run"]
        approval = r["approval"]
        rows: list[tuple[str, object]] = [
            ("Certificate id", c["certificate_id"]), ("Data exporter", c["data_exporter"]),
            ("Data importer", c["data_importer"]), ("Account", c["account_id"]),
            ("Request", f"{r['type']} {r['request_id']} under {r['regime'].upper()}, received "
                        f"{_short(r['received_at'])}, legal deadline {_short(r['deadline_at'])}"),
            ("Filed", f"{_short(r['filed_at'])} by {r['filed_by']}; the customer's reference: sha256 "
                      f"{r['reference_sha256']}"),
            ("Identifiers", f"{len(r['identifier_hashes'])} given, named only by their keyed hashes "
                            f"(HMAC-SHA256 per account): {', '.join(r['identifier_hashes'])}"),
            ("Expansion", expansion_text(c["expansion"])),
            ("Approval", "none recorded" if approval is None else
             f"by {approval['by']}, {_short(approval['at'])}" if approval["required"] else
             f"not required ({approval['total']} record(s), at most {approval['threshold']}); "
             f"recorded by {approval['by']}"),
            ("Run", f"{run['kind']} {run['run_id']}, {run['status']}"),
            ("Tool", f"{run['tool']['product']} {run['tool']['version']}, " + (
                f"DAG {run['tool']['dag_id']}, Airflow run {run['tool']['airflow_run_id']}"
                if run["tool"]["dag_id"] else "run from the command line")),
            ("Rules digest", run["rules_digest"]),
            *_registry_rows(c.get("registry"))]
        self.heading("Request")
        self.pairs(rows)


def expansion_text(expansion: Mapping[str, Any] | None) -> str:
    if expansion is None:
        return "none recorded: the request acted on the identifiers given"
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(expansion["by_kind"].items()))
    bounded = ("; stopped at its bound, so a person approved it" if expansion["bounded"] else "")
    return (f"{expansion['given']} given, {expansion['expanded']} after {expansion['rounds']} round(s) of linked "
            f"identifiers ({kinds}){bounded}; added: {', '.join(expansion['added_hashes']) or 'none'}")


def outcome_text(line: Mapping[str, Any]) -> str:
    outcome = {"not_applicable": "holds no personal data of people",
               "unsupported": "cannot be searched by the request's identifiers"}.get(line["outcome"],
                                                                                     line["outcome"].replace("_", " "))
    unsupported = line.get("unsupported")
    return f"{outcome}; not searchable: {', '.join(unsupported)}" if unsupported else outcome


def subject_exception_text(e: Mapping[str, Any]) -> str:
    """One sentence a DPO reads for an exception of a subject certificate; the attached JSON keeps every field."""
    kind = e["kind"]
    if kind == "held":
        return (f"{e['data_class']} at {e['location']}: not erased, kept under legal hold(s) "
                f"{', '.join(e['holds']) or 'in force'} ({e['erased_before_hold']} record(s) erased before it).")
    if kind == "legal_hold":
        return f"{e['data_class']} at {e['location']}: not erased, {e['reason']}."
    if kind == "not_planned":
        return f"{e['data_class']} at {e['location']}: {e['found']} record(s) matched, none was planned for erasure."
    if kind == "subprocessor_manual":
        return (f"Subprocessor {e['subprocessor']}: it has no API to find one person's records; a person must file "
                "the erasure with the provider and record its confirmation; a supplement follows.")
    if kind == "subprocessor_not_run":
        return f"Subprocessor {e['subprocessor']}: {e['matched']} record(s) matched; its erasure was not run."
    if kind == "subprocessor_held":
        return f"Subprocessor {e['subprocessor']}: not erased, kept under a legal hold."
    if kind.startswith("subprocessor_"):
        return f"Subprocessor {e['subprocessor']}: {kind.removeprefix('subprocessor_').replace('_', ' ')}."
    return exception_text(e)  # residue, records retained at verification: every field as is
