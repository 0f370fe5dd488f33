"""The account registry read from the application: its PostgreSQL table or a SELECT (real PostgreSQL, through an
Airflow Connection, in a READ ONLY transaction) and its JSON endpoint (a real HTTP server on 127.0.0.1, paged,
with a passing fault), each row checked on its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from retention import embedded
from retention.registry import load_registry
from retention.registry.http import RegistrySourceError
from retention.settings import Settings
from tests.emulators.base import Call, Emulator, Reply, bearer
from tests.fixtures.registry import DEMO, REPO, RULES, RULESET, execute, settings_for


def test_the_sql_table_source_reads_the_accounts_as_the_file_has_them(app_db: str, tmp_path: Path) -> None:
    registry = load_registry(settings_for(tmp_path, "{kind: sql, conn_id: app_db, table: accounts, "
                                                    "columns: {scc: scc}}"), RULESET)
    assert registry.source == "sql:app_db/accounts" and not registry.rejected
    assert registry.accounts == DEMO  # the same accounts, field for field, as demo/accounts.yaml
    assert registry.sha256 == load_registry(Settings(rules_dir=RULES, accounts_file=REPO / "demo" / "accounts.yaml"),
                                            RULESET).sha256


def test_bad_rows_in_the_table_are_refused_one_by_one(app_db: str, tmp_path: Path) -> None:
    execute(app_db,
            "UPDATE accounts SET state = 'closed' WHERE id = 'acct_2002'",
            "UPDATE accounts SET election = NULL, elected_at = NULL WHERE id = 'acct_4004'",
            "UPDATE accounts SET instructions = '{\"chat_transcripts\": \"P99Y\"}' WHERE id = 'acct_6006'",
            "UPDATE accounts SET jurisdiction = 'ATLANTIS' WHERE id = 'acct_1001'")
    registry = load_registry(settings_for(tmp_path, "{kind: sql, conn_id: app_db, table: accounts}"), RULESET)
    assert sorted(registry.accounts) == ["acct_3003", "acct_5005"]
    assert sorted((r.account_id, r.reason, r.field) for r in registry.rejected) == [
        ("acct_1001", "unknown_jurisdiction", "jurisdiction"), ("acct_2002", "unknown_state", "state"),
        ("acct_4004", "missing_election", "election"),
        ("acct_6006", "bad_instruction", "instructions.chat_transcripts")]


CRM_COLUMNS = ("{id: account_ref, state: lifecycle, jurisdiction: region, created_at: signed_up, "
               "contract_end: ended, terminated_at: null, election: null, elected_at: null, customer: null, "
               "instructions: null}")


def test_a_customer_schema_with_naive_timestamps_and_text_dates_refuses_those_rows(app_db: str,
                                                                                   tmp_path: Path) -> None:
    execute(app_db,
            "CREATE SCHEMA crm",
            "CREATE TABLE crm.customers (account_ref text, lifecycle text, region text, signed_up timestamp, "
            "ended text)",
            "INSERT INTO crm.customers VALUES ('acct_a', 'active', 'EEA', '2024-01-01 00:00', NULL), "
            "('acct_b', 'active', 'EEA', '2024-01-01 00:00', '2025-01-01'), "
            "('acct_c', 'active', 'UK', '2024-01-01 00:00', '2025-01-01 10:00'), "
            "('acct_d', 'active', 'UK', '2024-01-01 00:00', 'soon')")
    as_stored = load_registry(settings_for(tmp_path, f"{{kind: sql, conn_id: app_db, table: crm.customers, "
                                                     f"columns: {CRM_COLUMNS}}}"), RULESET)
    assert as_stored.accounts == {}  # a timestamp without time zone: its instant is unknown
    assert {(r.reason, r.field) for r in as_stored.rejected} == {("naive_timestamp", "created_at")}

    query = ("SELECT account_ref, lifecycle, region, signed_up AT TIME ZONE 'UTC' AS signed_up, ended "
             "FROM crm.customers")  # the application's own statement of its clock
    source = json.dumps({"kind": "sql", "conn_id": "app_db", "query": query})[:-1] + f", columns: {CRM_COLUMNS}}}"
    registry = load_registry(settings_for(tmp_path, source), RULESET)
    assert registry.source == "sql:app_db/query"
    assert sorted(registry.accounts) == ["acct_a", "acct_b"]  # a text date is its midnight UTC
    assert registry.accounts["acct_b"].contract_end is not None
    assert registry.accounts["acct_b"].contract_end.isoformat() == "2025-01-01T00:00:00+00:00"
    assert sorted((r.account_id, r.reason, r.field) for r in registry.rejected) == [
        ("acct_c", "naive_timestamp", "contract_end"), ("acct_d", "bad_timestamp", "contract_end")]


def test_the_query_runs_read_only_whatever_it_says(app_db: str, tmp_path: Path) -> None:
    execute(app_db, "CREATE FUNCTION purge() RETURNS int LANGUAGE sql AS $$ DELETE FROM accounts; SELECT 1 $$")
    query = "SELECT a.* FROM accounts a WHERE purge() = 1"  # a SELECT, by its text
    with pytest.raises(sa.exc.DBAPIError, match="cannot execute DELETE in a read-only transaction"):
        load_registry(settings_for(tmp_path, json.dumps({"kind": "sql", "conn_id": "app_db", "query": query})),
                      RULESET)
    engine = sa.create_engine(app_db)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM accounts")).scalar_one() == len(DEMO)
    engine.dispose()


# --- HTTP --------------------------------------------------------------------------------------------------------

class AccountsApi(Emulator):
    """The application's accounts endpoint: pages of ``page_size`` items behind a bearer token, a cursor to the
    next page, and ``faults`` answers of 503 before the page they were put on."""

    name = "accounts-api"
    token = "registry-token"

    def __init__(self, items: list[dict[str, Any]], page_size: int = 2) -> None:
        super().__init__()
        self.items, self.page_size = items, page_size
        self.faults_at: dict[str, int] = {}  # cursor -> 503s still to give
        self.route("GET", "/internal/accounts", self.page)

    def authorized(self, call: Call) -> bool:
        return bearer(call, self.token)

    def remaining(self, tenant: str) -> dict[str, int]:
        return {}

    def page(self, call: Call) -> Reply:
        cursor = call.arg("cursor") or "0"
        if self.faults_at.get(cursor):
            self.faults_at[cursor] -= 1
            return Reply(503, {"error": "try again"})
        start = int(cursor)
        end = start + self.page_size
        return Reply(200, {"accounts": self.items[start:end], "next": str(end) if end < len(self.items) else None})


def api_items() -> list[dict[str, Any]]:
    items = [json.loads(json.dumps(embedded.account_row(a), default=lambda d: d.isoformat())) for a in DEMO.values()]
    items[1]["created_at"] = "2024-06-15T00:00:00"  # no timezone
    return items


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("RETENTION_ACCOUNTS_FILE", raising=False)
    with AccountsApi(api_items()) as server:
        host, port = server.url.removeprefix("http://").split(":")
        monkeypatch.setenv("AIRFLOW_CONN_APP_API", json.dumps({
            "conn_type": "http", "host": host, "port": int(port), "schema": "http",
            "extra": {"token": AccountsApi.token}}))
        yield server


def test_the_http_source_follows_every_page_and_retries_a_passing_fault(api: AccountsApi, tmp_path: Path) -> None:
    api.faults_at["2"] = 1  # the second page answers 503 once
    registry = load_registry(settings_for(tmp_path, "{kind: http, conn_id: app_api, path: /internal/accounts}"),
                             RULESET)
    assert registry.source == "http:app_api/internal/accounts"
    assert sorted(registry.accounts) == sorted(set(DEMO) - {"acct_2002"})
    [refused] = registry.rejected
    assert (refused.account_id, refused.reason, refused.field, refused.row) == (
        "acct_2002", "naive_timestamp", "created_at", "http:app_api/internal/accounts page 1 item 2")
    pages = [status for method, path, status in api.calls if path == "/internal/accounts"]
    assert pages == [200, 503, 200, 200]  # three pages of two, the second one retried


def test_the_http_source_stops_on_an_answer_that_is_not_a_page(api: AccountsApi, tmp_path: Path) -> None:
    api.faults_at["2"] = 99  # never recovers: after its attempts the whole read stops, nothing half-read is used
    with pytest.raises(RegistrySourceError, match="HTTP 503"):
        load_registry(settings_for(tmp_path, "{kind: http, conn_id: app_api, path: /internal/accounts, attempts: 2}"),
                      RULESET)


def test_the_http_source_without_the_token_is_refused(api: AccountsApi, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    host, port = api.url.removeprefix("http://").split(":")
    monkeypatch.setenv("AIRFLOW_CONN_APP_API", json.dumps({"conn_type": "http", "host": host, "port": int(port),
                                                           "schema": "http", "extra": {"token": "wrong"}}))
    with pytest.raises(RegistrySourceError, match="HTTP 401"):
        load_registry(settings_for(tmp_path, "{kind: http, conn_id: app_api, path: /internal/accounts}"), RULESET)
