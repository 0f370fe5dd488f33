"""Heroku hosts the application's shared PostgreSQL: the spec and systems.yaml describe one tenancy.

systems.yaml models app_db as one database for every customer, rows keyed by account_id; the Heroku
spec says the same (hosted:, shared) and makes no API call, because the only Platform API deletion there
is (destroying the database add-on) would erase every customer. The loader refuses a Heroku spec that
disagrees with systems.yaml, and the DAGs schedule no Heroku API task."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from retention.rules.errors import RulesError
from retention.rules.inventory import SqlLocation, load_inventory
from retention.rules.loader import load_ruleset
from retention.settings import Settings
from retention.subprocessors import load_spec
from retention.subprocessors.spec import check_hosted, waves
from retention.subprocessors.tasks import specs
from tests.fixtures.subprocessors import RULES


def test_the_heroku_spec_and_systems_yaml_describe_the_same_shared_database() -> None:
    ruleset = load_ruleset(RULES)
    inventory = load_inventory(RULES / "systems.yaml", ruleset)
    spec = load_spec(RULES / "subprocessors" / "heroku.yaml", inventory=inventory)

    assert spec.hosted is not None and (spec.hosted.conn_id, spec.hosted.tenancy) == ("app_db", "shared")
    assert spec.resources == {} and waves(spec) == []  # no Platform API call: nothing could erase one customer
    on_app_db = [loc for loc in inventory.locations.values()
                 if isinstance(loc, SqlLocation) and loc.conn_id == "app_db"]
    assert on_app_db and all(loc.account_column == "account_id" for loc in on_app_db)
    assert check_hosted(spec, inventory) == []


def test_no_heroku_resource_deletes_a_database(tmp_path) -> None:
    """The earlier spec deleted an add-on named '<account id>-db': a per-customer database systems.yaml never had."""
    text = (RULES / "subprocessors" / "heroku.yaml").read_text()
    assert "DELETE" not in text and "addons" not in text.split("subprocessor: heroku", 1)[1]


def _rules_copy(tmp_path: Path, systems: str) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    (rules / "systems.yaml").write_text(systems)
    return rules


def test_a_systems_yaml_without_the_hosted_database_is_refused_when_specs_load(tmp_path) -> None:
    # Move every app_db location to another Connection: nothing would erase the rows Heroku hosts.
    systems = (RULES / "systems.yaml").read_text().replace("conn_id: app_db", "conn_id: warehouse_db")
    rules = _rules_copy(tmp_path, systems)
    with pytest.raises(RulesError) as refused:
        specs(Settings.from_env(rules_dir=rules))
    [issue] = refused.value.issues
    assert issue.file.endswith("heroku.yaml") and issue.field == "hosted"
    assert "names no SQL location" in issue.message


def test_a_hosted_spec_cannot_also_call_the_api(tmp_path) -> None:
    path = tmp_path / "heroku.yaml"
    path.write_text((RULES / "subprocessors" / "heroku.yaml").read_text()
                    + "\nmanual:\n  data_class: chat_transcripts\n"
                    "  request_channel: support\n  evidence: [ticket]\n  deadline: P30D\n")
    with pytest.raises(RulesError, match="a hosted spec"):
        load_spec(path)


def test_the_shipped_specs_load_with_the_inventory() -> None:
    loaded = specs(Settings.from_env(rules_dir=RULES))
    assert loaded["heroku"].hosted is not None
