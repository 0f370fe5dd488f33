"""One account's registry entry, as a data subject request's steps read it: the SQL source asks the application's
database for that id alone (real PostgreSQL, statements captured as they are sent), the file source keeps the
account from the whole file; the run records a snapshot that says it covers that one entry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pypdfium2
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from retention import embedded
from retention.certificates import rotate, verify_file
from retention.certificates.keys import load_signing_key
from retention.engine import tasks as engine_tasks
from retention.ledger import Ledger
from retention.registry import load_registry, summary_text
from retention.requests import tasks
from retention.settings import Settings
from retention.signing_keys import KeySet
from tests.fixtures.registry import DEMO, REPO, RULES, RULESET, execute, settings_for
from tests.fixtures.stack import ACCOUNTS

ACTOR = "airflow:subject_request"




@pytest.fixture
def sent() -> Iterator[list[tuple[str, object]]]:
    """Every statement (and its parameters) any engine of this process sends while the test runs."""
    statements: list[tuple[str, object]] = []

    def capture(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        statements.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", capture)
    yield statements
    event.remove(Engine, "before_cursor_execute", capture)


def pdf_text(pdf: bytes) -> str:
    document = pypdfium2.PdfDocument(pdf)
    return " ".join("".join(page.get_textpage().get_text_range() for page in document).split())


def reads_of_accounts(statements: list[tuple[str, object]]) -> list[tuple[str, object]]:
    """The registry's reads of the application's accounts table (not a test's own writes to it)."""
    return [(s, p) for s, p in statements if s.lstrip().startswith("SELECT") and "FROM accounts" in s]


def test_the_sql_source_reads_one_account_by_its_id_alone(app_db: str, tmp_path: Path, sent) -> None:
    settings = settings_for(tmp_path, "{kind: sql, conn_id: app_db, table: accounts, columns: {scc: scc}}")
    one = load_registry(settings, RULESET, "acct_2002")
    [(statement, parameters)] = reads_of_accounts(sent)
    assert "WHERE accounts.id = " in statement and parameters == {"account_id": "acct_2002"}
    whole = load_registry(settings, RULESET)
    assert one.accounts == {"acct_2002": DEMO["acct_2002"]} and one.scope == "acct_2002"
    assert one == whole.only("acct_2002")  # the same entry, whichever way it was read
    snapshot = one.snapshot("acct_2002")
    assert snapshot["scope"] == {"account_id": "acct_2002"} and snapshot["accounts"] == 1
    assert snapshot["account"] == {"account_id": "acct_2002", "sha256": whole.entry_sha256("acct_2002")}
    assert "scope" not in whole.snapshot()  # a sweep's snapshot is the whole registry's, as before
    assert summary_text(snapshot) == "registry: account acct_2002 only, its entry from sql:app_db/accounts, " \
                                     "no row refused"


def test_one_account_through_a_query_and_its_refused_or_duplicate_rows(app_db: str, tmp_path: Path) -> None:
    execute(app_db, "UPDATE accounts SET state = 'closed' WHERE id = 'acct_2002'")
    query = "SELECT * FROM accounts UNION ALL SELECT * FROM accounts WHERE id = 'acct_3003'"  # acct_3003 twice
    settings = settings_for(tmp_path, json.dumps({"kind": "sql", "conn_id": "app_db", "query": query}))
    one = load_registry(settings, RULESET, "acct_1001")
    assert list(one.accounts) == ["acct_1001"] and one == load_registry(settings, RULESET).only("acct_1001")
    refused = load_registry(settings, RULESET, "acct_2002")
    assert refused.accounts == {} and refused.knows("acct_2002")  # it exists: a hold on it stays possible
    assert [(r.account_id, r.reason) for r in refused.rejected] == [("acct_2002", "unknown_state")]
    assert summary_text(refused.snapshot()).startswith("registry: account acct_2002 only, no accepted entry from ")
    twice = load_registry(settings, RULESET, "acct_3003")
    assert twice.accounts == {} and [r.reason for r in twice.rejected] == ["duplicate_id", "duplicate_id"]
    unknown = load_registry(settings, RULESET, "acct_9999")
    assert unknown.accounts == {} and not unknown.rejected and not unknown.knows("acct_9999")


def test_the_accounts_file_keeps_the_one_account(tmp_path: Path) -> None:
    settings = Settings(rules_dir=RULES, accounts_file=REPO / "demo" / "accounts.yaml")
    one = load_registry(settings, RULESET, "acct_1001")
    assert one.accounts == {"acct_1001": DEMO["acct_1001"]} and one.source == "file:accounts.yaml"
    assert one.snapshot()["scope"] == {"account_id": "acct_1001"}


def test_a_requests_steps_read_their_accounts_entry_only_and_its_run_says_so(stack, tmp_path, monkeypatch,
                                                                              sent) -> None:
    """Through the steps the DAG runs, registry from the application's table (registry.yaml): every read of the
    accounts table asks for the request's account, and the preview's snapshot covers that entry."""
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RETENTION_PROCESSOR_NAME", "Demo Processor Inc.")  # the importer a certificate names
    key_file = tmp_path / "keys" / "signing.pem"
    rotate(key_file, tmp_path / "keys" / "jwks.json")
    monkeypatch.setenv("RETENTION_SIGNING_KEY_FILE", str(key_file))
    monkeypatch.delenv("RETENTION_ACCOUNTS_FILE")
    embedded.seed_accounts(stack.app_url, DEMO.values())
    Ledger.open(stack.ledger_url).close()
    who = embedded.person(ACCOUNTS, "acct_1001")
    opened = tasks.open_request({"account_id": "acct_1001", "request_type": "erasure",
                                 "identifiers": {"email": [who.email]}, "reference": "DSR-7",
                                 "received_on": "2026-11-20"}, filed_by="api:7", actor=ACTOR)
    request_id = opened["request_id"]
    tasks.expand(request_id, actor=ACTOR)
    preview = tasks.preview(request_id, actor=ACTOR, subprocessors=[])
    assert preview["total"] > 0 and tasks.approve_if_small(request_id, actor=ACTOR) is False
    for location in preview["all"]:
        done = engine_tasks.execute(preview["run_id"], location, account_id="acct_1001", actor=ACTOR)
        assert done["deleted"] + done["anonymized"] > 0
        checked = engine_tasks.verify(preview["run_id"], location, account_id="acct_1001", actor=ACTOR)
        assert checked["tasks_with_residue"] == 0
    assert tasks.close(request_id, actor=ACTOR)["status"] == "completed"
    pdf = Path(tasks.certify(request_id, actor=ACTOR)["pdf"]).read_bytes()
    reads = reads_of_accounts(sent)
    assert reads and all(p == {"account_id": "acct_1001"} for _, p in reads)  # never the whole table
    with Ledger.open(stack.ledger_url) as ledger:
        [snapshot] = ledger.run_events(preview["run_id"], "registry.snapshot")
    assert snapshot.payload["scope"] == {"account_id": "acct_1001"} and snapshot.payload["accounts"] == 1
    # The certificate states what was read: the account's entry, with its digest, never a count of 1 that would
    # read as the size of the customer base.
    key = load_signing_key(key_file)
    certified = verify_file(pdf, KeySet((key.jwk,))).certificate
    assert certified["registry"] == {"source": "sql:app_db/accounts", "scope": "account entry",
                                     "account_entry_sha256": snapshot.payload["account"]["sha256"]}
    text = pdf_text(pdf)
    assert "sql:app_db/accounts, this account's entry only" in text and "1 accounts" not in text
    with engine_tasks.context() as ctx:  # a sweep's context still reads the whole registry
        assert ctx.registry is not None and ctx.registry.scope is None and len(ctx.accounts) == len(DEMO)
