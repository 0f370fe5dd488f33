"""`retention config show`: the effective settings and Connections, with no secret in the output."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from retention.cli import main
from retention.settings import mask_url, masked_connection

REPO = Path(__file__).resolve().parents[2]
SECRETS = ["s3cr3t-db", "SG.topsecret", "tok-123", "l" * 40, "ledger-pw"]


def test_config_show_names_every_connection_and_masks_every_secret(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_APP_DB", "postgresql://app:s3cr3t-db@db:5432/app")
    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID", json.dumps({"conn_type": "http", "host": "api.sendgrid.com",
                                                           "password": "SG.topsecret",
                                                           "extra": {"api_token": "tok-123", "region": "eu"}}))
    monkeypatch.setenv("RETENTION_LINK_SECRET", "l" * 40)
    monkeypatch.setenv("RETENTION_DATABASE_URL", "postgresql+psycopg://ledger:ledger-pw@db/ledger")
    monkeypatch.setenv("RETENTION_KEY_DELETION_WINDOW_DAYS", "14")

    result = CliRunner().invoke(main, ["config", "show", "--rules-dir", str(REPO / "retention_rules"), "--json"])

    assert result.exit_code == 0, result.output
    assert not [secret for secret in SECRETS if secret in result.output]
    shown = json.loads(result.output)
    assert shown["settings"]["link_secret"] == "***" and shown["settings"]["key_deletion_window_days"] == 14
    assert shown["settings"]["database_url"] == "postgresql+psycopg://ledger:***@db/ledger"
    assert shown["connections"]["app_db"] == "postgresql://app:***@db:5432/app"
    assert shown["connections"]["sendgrid"]["extra"] == {"api_token": "***", "region": "eu"}
    assert {"object_store", "twilio", "salesforce"} <= set(shown["connections"])


def test_masking_leaves_what_is_not_secret() -> None:
    assert mask_url("sqlite:////var/ledger.db") == "sqlite:////var/ledger.db"
    assert masked_connection("aws://?region_name=eu-west-1") == "aws://?region_name=eu-west-1"
    assert masked_connection('{"login": "minio", "password": ""}') == {"login": "minio", "password": ""}
