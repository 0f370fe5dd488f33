"""The ledger_checkpoint DAG through Airflow's dag.test(): it publishes a signed checkpoint of the chain head."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention.certificates import KeySet
from retention.ledger import Ledger
from retention.ledger.checkpoint_stores import DirectoryStore
from retention.ledger.checkpoints import create_key, verify

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "ledger_checkpoint.py"


@pytest.fixture(scope="module")
def checkpoint_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))  # this DAG only: others are edited in parallel
    assert bag.import_errors == {}
    return bag.get_dag("ledger_checkpoint")


@pytest.fixture
def ledger(tmp_path, monkeypatch) -> Ledger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("RETENTION_DATABASE_URL", url)
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path))
    for name in ("RETENTION_CHECKPOINT_KEY_FILE", "RETENTION_CHECKPOINT_JWKS_FILE", "RETENTION_CHECKPOINT_DIR",
                 "RETENTION_CHECKPOINT_CONN_ID"):
        monkeypatch.delenv(name, raising=False)
    with Ledger.open(url) as opened:
        for i in range(3):
            opened.append("test.event", {"i": i}, actor="staff:1")
        yield opened


def test_the_dag_is_daily_with_an_owner_and_retries(checkpoint_dag):
    assert checkpoint_dag.schedule == "@daily" or str(checkpoint_dag.timetable.summary) == "@daily"
    assert checkpoint_dag.default_args["owner"] == "privacy-engineering" and checkpoint_dag.default_args["retries"] > 0
    assert "ledger" in checkpoint_dag.tags and checkpoint_dag.doc_md


def test_the_dag_publishes_a_checkpoint_of_the_chain_head(checkpoint_dag, ledger, tmp_path):
    create_key(tmp_path / "checkpoint-key.pem", tmp_path / "checkpoint-key.jwks")

    run = checkpoint_dag.test()

    assert run.state == "success"
    published = sorted((tmp_path / "checkpoints" / "checkpoints").iterdir())
    assert [p.name for p in published] == [f"{ledger.head()[0]:020d}.json"]
    report = verify(ledger, DirectoryStore(tmp_path / "checkpoints"), KeySet.read(tmp_path / "checkpoint-key.jwks"),
                    ledger.verify())
    assert report.ok and report.last_checkpoint_seq == ledger.head()[0], report.reason


def test_the_dag_fails_without_a_checkpoint_key(checkpoint_dag, ledger, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_dag.get_task("publish"), "retries", 0)  # dag.test() would wait out each retry

    run = checkpoint_dag.test()

    assert run.state == "failed"
    assert not (tmp_path / "checkpoints").exists()
