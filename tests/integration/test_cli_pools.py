"""`retention pools sync` against Airflow's real metadata database (the session's, set up by ``airflow_db``): every
pool the DAGs use exists afterwards with the slots its declaration gives, a changed declaration resizes its pool on
the next run, and a dry run changes nothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from retention.cli import main
from retention.settings import Settings
from retention.stores.kinds import KINDS
from retention.subprocessors.tasks import specs

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "retention_rules"


def sync(*args: str) -> dict:
    result = CliRunner().invoke(main, ["pools", "sync", "--rules-dir", str(RULES), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def airflow_pools() -> dict[str, tuple[int, str]]:
    """What Airflow's metadata database holds: each pool's slots and description."""
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return {p.pool: (p.slots, p.description) for p in session.scalars(select(Pool))}


def expected() -> dict[str, tuple[int, str]]:
    """From the declarations, not from the command: each store kind's pool, and each API subprocessor's."""
    wanted = {kind.pool: (kind.pool_slots, kind.pool_description) for kind in KINDS.values()}
    for name, spec in specs(Settings.from_env(rules_dir=RULES)).items():
        if spec.manual is None and spec.resources:
            wanted[f"subprocessor_{name}"] = (spec.rate_limit.concurrency,
                                              f"retention: subprocessor {name} (its API's rate limit)")
    return wanted


def test_every_pool_the_dags_use_is_created_then_a_changed_one_resized(airflow_db, monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    shown = sync()
    assert shown["dry_run"] is False
    want = expected()
    assert {"retention_sql", "retention_s3", "subprocessor_sendgrid"} <= set(want)
    assert {name: pool for name, pool in airflow_pools().items() if name in want} == want
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    used = {task.pool for dag in bag.dags.values() for task in dag.tasks}
    assert used - {"default_pool"} <= set(airflow_pools())  # no task of a DAG names a pool nobody created

    sql = KINDS["sql"]
    monkeypatch.setitem(KINDS, "sql", dataclasses.replace(sql, pool_slots=sql.pool_slots + 3))
    sync()
    assert airflow_pools()["retention_sql"] == (sql.pool_slots + 3, sql.pool_description)
    assert airflow_pools()["retention_s3"] == want["retention_s3"]  # the unchanged one as it was


def test_a_dry_run_shows_the_pools_and_changes_nothing(airflow_db, monkeypatch) -> None:
    sync()
    before = airflow_pools()
    s3 = KINDS["s3"]
    monkeypatch.setitem(KINDS, "s3", dataclasses.replace(s3, pool_slots=s3.pool_slots + 5))

    shown = sync("--dry-run")

    assert shown["dry_run"] is True and shown["pools"]["retention_s3"]["slots"] == s3.pool_slots + 5
    assert airflow_pools() == before
    text = CliRunner().invoke(main, ["pools", "sync", "--rules-dir", str(RULES), "--dry-run"])
    assert text.exit_code == 0 and "dry run: Airflow was not changed" in text.output
    assert all(name in text.output for name in expected())


@pytest.mark.usefixtures("airflow_db")
def test_a_failing_import_is_one_error_naming_airflow(monkeypatch, tmp_path) -> None:
    """Airflow pointed at a metadata database it cannot open: exit 1 with what `airflow pools import` said."""
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{tmp_path / 'missing' / 'airflow.db'}")
    result = CliRunner().invoke(main, ["pools", "sync", "--rules-dir", str(RULES)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: airflow pools import failed (exit 1): "), result.output
    assert "unable to open database file" in result.output and len(result.output.splitlines()) == 1
