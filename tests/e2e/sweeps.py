"""What a finished retention_sweep run must have done, read from the ledger, the stores and Airflow's REST API."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.e2e.conftest import E2E
from tests.e2e.product import TERMINATED, Product

DAG_ID = "retention_sweep"
DONE = {"verified", "skipped", "held"}  # a planned task's end states in a successful run


def sweep_conf(product: Product) -> dict[str, Any]:
    return {"at": product.data.now.isoformat(), "dry_run": False, "acknowledge_mass_deletion": []}


def check_swept(e2e: E2E, run_id: str, before: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    """Zero residue, the ledger's counts equal what left the database, terminated accounts untouched; returns
    the records affected per (location, account)."""
    ledger_run, totals = e2e.product.sweep_totals(run_id)
    with e2e.product.ledger() as ledger:
        tasks = ledger.tasks(ledger_run.id)
        assert ledger.verify().ok
    assert (ledger_run.status, ledger_run.dag_id) == ("succeeded", DAG_ID)
    assert sum(totals.values()) > 0
    unfinished = [(t.location, t.account_id, t.status, t.residue) for t in tasks
                  if t.status not in DONE or t.residue not in (None, 0)]
    assert unfinished == []

    after = e2e.product.data.rows()
    deleted: Counter[tuple[str, str]] = Counter()
    for t in tasks:
        if t.action == "delete" and (t.location, t.account_id) in before:  # a SQL location: its table's name
            deleted[(t.location, t.account_id)] += t.affected_count
    assert deleted and all(before[key] - after[key] == n for key, n in deleted.items()), (deleted, before, after)
    for account, _ in TERMINATED:  # their conversations are their offboardings' to delete, not the sweep's
        assert after[("chat_conversations", account)] == before[("chat_conversations", account)]

    verified = [ti for ti in e2e.api.task_instances(DAG_ID, run_id) if ti["task_id"] == "verify"]
    assert verified and all(ti["state"] == "success" for ti in verified)
    for ti in verified:
        counts = e2e.api.xcom(DAG_ID, run_id, "verify", ti["map_index"])
        assert counts["tasks_with_residue"] == 0, counts
    return totals
