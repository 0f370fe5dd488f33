"""The retention_sweep DAG through Airflow's dag.test(), on the embedded stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention.ledger import Ledger
from retention.stores.kinds import KINDS
from tests.rules_fixtures import PRESENCE

DAGS = Path(__file__).resolve().parents[2] / "dags"
ALL = 30  # records per account and table in the stack


def start_offboardings(*accounts: tuple[str, str]) -> None:
    """Offboardings planned (awaiting approval, nothing deleted yet): the terminations are no longer overdue."""
    import pendulum
    import pyrage

    from retention.engine.tasks import context
    from retention.offboarding.plan import plan_offboarding
    from retention.offboarding.request import OffboardingRequest

    for account_id, choice in accounts:
        extra = {"return_recipient": str(pyrage.x25519.Identity.generate().to_public())} if choice == "return" else {}
        request = OffboardingRequest(account_id=account_id, choice=choice, reference="TKT-1",
                                     **extra)
        with context() as ctx:
            plan_offboarding(ctx, request, pendulum.now("UTC"), requested_by="api:csm-3", actor="test")


TERMINATED = (("acct_4004", "delete"), ("acct_5005", "return"))


def conf(stack, **given) -> dict:
    """Every param spelt out: dag.test(run_conf=...) leaves its values in the module's DAG object, so a
    dry run's or an acknowledgement's conf would otherwise carry into the next test's run."""
    return {"at": stack.now.isoformat(), "dry_run": False, "acknowledge_mass_deletion": [], **given}


@pytest.fixture(scope="module")
def sweep_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.get_dag("retention_sweep")
    # Airflow 3.3.2's dag.test() fails a successful run of a DAG with a deadline alert ("'dict' object has no
    # attribute 'hex'": its in-memory scheduler DAG holds the encoded alert where the success path looks up an
    # alert row's id), so these
    # runs go without it; test_dag_integrity checks the alert, tests/e2e runs it under the real scheduler.
    dag.deadline = None
    return dag


def test_the_dag_maps_per_location_with_a_pool_per_store(sweep_dag):
    tasks = {t.task_id: t for t in sweep_dag.tasks}
    per_kind = {task_id for name in KINDS for task_id in (f"{name}_locations", f"execute_{name}")}
    assert set(tasks) == {"plan", "all_locations", "verify", "report", "overdue_terminations", *per_kind}
    assert (tasks["execute_sql"].pool, tasks["execute_s3"].pool) == ("retention_sql", "retention_s3")
    for name, kind in KINDS.items():
        assert (tasks[f"execute_{name}"].pool, tasks[f"execute_{name}"].max_active_tis_per_dag) == \
            (kind.pool, kind.max_active_tis_per_dag)
    assert tasks["report"].trigger_rule == "all_done"
    # the overdue check runs after the sweep's own work, whatever its outcome, and blocks none of it
    assert tasks["overdue_terminations"].upstream_task_ids == {"plan", "report"}
    overdue = tasks["overdue_terminations"]
    assert overdue.trigger_rule == "all_done" and not overdue.downstream_list
    assert sweep_dag.schedule == "@daily" or str(sweep_dag.timetable.summary) == "@daily"


def test_the_sweep_dag_runs_end_to_end(stack, airflow_db, sweep_dag):
    start_offboardings(*TERMINATED)
    run = sweep_dag.test(run_conf=conf(stack))
    assert str(run.state) == "success"
    states = worked(run)
    assert set(states.values()) == {"success"}, states
    with Ledger.open(stack.ledger_url) as ledger:
        run_id = ledger.last_run_id("sweep")
        swept = ledger.get_run(run_id)
        tasks = ledger.tasks(run_id)
        assert ledger.verify().ok
    assert (swept.status, swept.dag_id, swept.airflow_run_id) == ("succeeded", "retention_sweep", run.run_id)
    assert sum(t.affected_count for t in tasks) > 0
    assert stack.rows()[("chat_conversations", "acct_4004")] == ALL  # terminated: its offboarding's, not the sweep's

    # The UI names each mapped task by its location and shows that location's counts as its XCom.
    mapped = {(ti.task_id, ti.map_index): ti.rendered_map_index for ti in run.get_task_instances() if ti.map_index >= 0}
    counts = location_counts(run.run_id)
    assert counts.keys() == mapped.keys() and {t.location for t in tasks} == set(mapped.values())
    for key, summary in counts.items():
        assert summary["location"] == mapped[key]
        assert summary["deleted"] + summary["anonymized"] == sum(
            t.affected_count for t in tasks
            if t.location == summary["location"] and t.action in ("delete", "anonymize"))
    verified = [c for (task_id, _), c in counts.items() if task_id == "verify"]
    assert sum(c["deleted"] for c in verified) == sum(t.affected_count for t in tasks if t.action == "delete")
    assert all(c["tasks_with_residue"] == 0 and "residue" not in c["tasks"] for c in verified)


def worked(run) -> dict[str, str]:
    """Task states, less the execute tasks of the store kinds the shipped inventory has no location of (mapped
    over nothing, Airflow skips them): each of those is checked to be skipped."""
    from retention.rules import load_ruleset
    from retention.rules.inventory import load_inventory

    rules = DAGS.parent / "retention_rules"
    used = {spec.kind for spec in load_inventory(rules / "systems.yaml", load_ruleset(rules)).locations.values()}
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    for name in set(KINDS) - used:
        assert states.pop(f"execute_{name}") == "skipped", states
    return states


def location_counts(airflow_run_id: str) -> dict[tuple[str, int], dict]:
    """The return values of the mapped execute and verify tasks, as the UI shows them."""
    import sqlalchemy as sa
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(sa.select(XComModel.task_id, XComModel.map_index, XComModel.value).where(
            XComModel.dag_id == "retention_sweep", XComModel.run_id == airflow_run_id, XComModel.key == "return_value",
            XComModel.task_id.in_([*(f"execute_{name}" for name in KINDS), "verify"]))).all()
    return {(row.task_id, row.map_index): XComModel.deserialize_value(row) for row in rows}


def test_dry_run_through_the_dag_deletes_nothing(stack, airflow_db, sweep_dag):
    start_offboardings(*TERMINATED)
    before = stack.rows()
    run = sweep_dag.test(run_conf=conf(stack, dry_run=True))
    assert str(run.state) == "success"
    assert stack.rows() == before


def test_invalid_conf_is_refused_before_any_task_runs(stack, airflow_db, sweep_dag):
    before = stack.rows()
    with pytest.raises(Exception, match="dry_run"):
        sweep_dag.test(run_conf={"dry_run": "yes please"})
    with pytest.raises(Exception, match="acknowledge_mass_deletion"):  # a list of location ids, not one string
        sweep_dag.test(run_conf=conf(stack, acknowledge_mass_deletion="chat_conversations"))
    assert stack.rows() == before


def test_an_overdue_termination_fails_the_last_task_after_the_sweep_did_its_work(stack, airflow_db, sweep_dag):
    """acct_4004 terminated 2026-09-30 and elected deletion; nobody started its offboarding. (acct_5005's
    offboarding, due 2026-12-15 by the demo registry's dates, is started first: the test holds on any date.)"""
    start_offboardings(("acct_5005", "return"))
    before = stack.rows()
    run = sweep_dag.test(run_conf=conf(stack))

    states = worked(run)
    assert states.pop("overdue_terminations") == "failed"
    assert set(states.values()) == {"success"}, states  # the sweep itself ran and finished
    assert str(run.state) == "failed"  # on-call sees it
    after = stack.rows()
    assert after[("chat_conversations", "acct_1001")] < before[("chat_conversations", "acct_1001")]
    assert after[("chat_conversations", "acct_4004")] == ALL
    with Ledger.open(stack.ledger_url) as ledger:
        run_id = ledger.last_run_id("sweep")
        assert ledger.get_run(run_id).status == "succeeded"
        (checked,) = ledger.run_events(run_id, "terminations.checked")
    assert [o["account_id"] for o in checked.payload["overdue"]] == ["acct_4004"]
    assert checked.payload["overdue"][0]["due_at"].startswith("2026-10-30")

    start_offboardings(("acct_4004", "delete"))
    again = sweep_dag.test(run_conf=conf(stack))
    assert str(again.state) == "success"
    assert set(worked(again).values()) == {"success"}


def test_a_mass_deletion_waits_for_the_acknowledgement_param(stack, airflow_db, sweep_dag, tmp_path, monkeypatch):
    import re
    import shutil

    rules = tmp_path / "rules"
    shutil.copytree(stack.env["RETENTION_RULES_DIR"], rules)
    text = (rules / "rules.yaml").read_text()
    (rules / "rules.yaml").write_text(re.sub(r"(id: chat-transcripts-in-service\n(?:.*\n){2}    retain_for: )P2Y",
                                             r"\1P10D", text))  # a typo: ten days instead of two years
    monkeypatch.setenv("RETENTION_RULES_DIR", str(rules))
    monkeypatch.setenv("RETENTION_MASS_DELETION_MIN_RECORDS", "100")
    start_offboardings(*TERMINATED)
    before = stack.rows()

    refused = sweep_dag.test(run_conf=conf(stack))
    states = {ti.task_id: str(ti.state) for ti in refused.get_task_instances() if ti.map_index < 1}
    assert states["plan"] == "success" and states["report"] == "failed"
    plan = refused.get_task_instance("plan").xcom_pull(task_ids="plan")
    flagged = [m["location"] for m in plan["mass_deletion"] if not m["acknowledged"]]
    assert "chat_conversations" in flagged and "chat_conversations" not in plan["all"]
    assert all("due at once" in m["sentence"] for m in plan["mass_deletion"])
    assert stack.rows()[("chat_conversations", "acct_1001")] == before[("chat_conversations", "acct_1001")]

    acknowledged = sweep_dag.test(run_conf=conf(stack, acknowledge_mass_deletion=flagged))
    assert str(acknowledged.state) == "success"
    assert stack.rows()[("chat_conversations", "acct_1001")] == 3  # only the records a day old are left


# --- a Redis location, added to the inventory only (issue 16: a kind is one module and one registry entry) ---

def with_redis_location(stack, redis_server, tmp_path, monkeypatch) -> None:
    """The shipped rules with one Redis location for chat transcripts (keys dated by their third segment)."""
    import shutil

    rules = tmp_path / "rules_with_redis"
    shutil.copytree(stack.env["RETENTION_RULES_DIR"], rules)
    systems = (rules / "systems.yaml").read_text()
    (rules / "systems.yaml").write_text(systems.replace("\nlocations:\n", "\nlocations:\n" + PRESENCE, 1))
    monkeypatch.setenv("RETENTION_RULES_DIR", str(rules))
    for name, value in redis_server.connection("presence_cache").items():
        monkeypatch.setenv(name, value)


def seed_presence(client, now, accounts) -> dict[str, list[str]]:
    """Per account, three keys three years old and three a day old; and keys of an id that extends acct_1001's."""
    client.flushall()
    made: dict[str, list[str]] = {}
    for account in [*accounts, "acct_10011"]:
        for day in (now.subtract(years=3), now.subtract(days=1)):
            for i in range(3):
                key = f"presence:{account}:{day.format('YYYY-MM-DD')}:{i}"
                client.set(key, "online", ex=30 * 24 * 3600)  # the application's own TTL: not a deletion
                made.setdefault(account, []).append(key)
    return made


def test_a_redis_location_is_swept_like_the_others(stack, airflow_db, sweep_dag, redis_server, tmp_path, monkeypatch):
    from tests.fixtures.stack import ACCOUNTS

    with_redis_location(stack, redis_server, tmp_path, monkeypatch)
    client = redis_server.client()
    made = seed_presence(client, stack.now, ACCOUNTS)
    start_offboardings(*TERMINATED)

    run = sweep_dag.test(run_conf=conf(stack))

    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success" and states["execute_redis"] == "success", states
    left = {account: sorted(k for k in keys if client.exists(k)) for account, keys in made.items()}
    assert left["acct_1001"] == made["acct_1001"][3:]  # the three-year-old keys went, the young ones stay
    assert left["acct_4004"] == made["acct_4004"]  # terminated: its offboarding's, not the sweep's
    assert left["acct_10011"] == made["acct_10011"]  # not a registered account: never matched by acct_1001's pattern
    assert all(0 < client.ttl(k) <= 30 * 24 * 3600 for keys in left.values() for k in keys)  # TTLs untouched
    with Ledger.open(stack.ledger_url) as ledger:
        tasks = [t for t in ledger.tasks(ledger.last_run_id("sweep")) if t.location == "presence"]
    done = {t.account_id: t for t in tasks if t.action == "delete"}
    assert done["acct_1001"].affected_count == 3 and done["acct_1001"].status == "verified"
    assert all(t.status in ("verified", "skipped") for t in tasks)


# --- the kind registry is the one place kinds are listed ---

def test_a_registered_kind_grows_both_dags_an_execute_task_in_its_pool(airflow_db, monkeypatch):
    from dataclasses import replace

    from airflow.dag_processing.dagbag import DagBag

    throwaway = replace(KINDS["s3"], name="memo", pool="retention_memo", max_active_tis_per_dag=3)
    monkeypatch.setitem(KINDS, "memo", throwaway)
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    for dag_id in ("retention_sweep", "termination_offboarding"):
        tasks = {t.task_id: t for t in bag.get_dag(dag_id).tasks}
        assert "memo_locations" in tasks, dag_id
        assert (tasks["execute_memo"].pool, tasks["execute_memo"].max_active_tis_per_dag) == ("retention_memo", 3)
        assert tasks["execute_memo"].downstream_task_ids == tasks["execute_sql"].downstream_task_ids


def test_no_kind_is_named_outside_the_registry_and_the_stores():
    """The engine, offboarding, certificates and the DAGs name no store kind: they read retention.stores.kinds."""
    import re

    plugins = DAGS.parent / "plugins" / "retention"
    sources = [*(plugins / "engine").glob("*.py"), plugins / "offboarding" / "plan.py",
               plugins / "offboarding" / "tasks.py", plugins / "certificates" / "content.py",
               plugins / "certificates" / "__init__.py", DAGS / "retention_sweep.py",
               DAGS / "termination_offboarding.py"]
    named = re.compile("|".join(rf"[\"']{re.escape(name)}[\"']" for name in KINDS))
    found = {path.name: named.findall(path.read_text()) for path in sources}
    assert {name: hits for name, hits in found.items() if hits} == {}
    assert len(sources) > 10
