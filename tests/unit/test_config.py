"""`retention config show`: the effective settings and Connections, with no secret in the output."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from retention.cli import main
from retention.masking import mask_url, masked_connection

REPO = Path(__file__).resolve().parents[2]
LINK_SECRET = "Hk3_vQ9xLm2pZr7TnW4yBc8dFg1jKs6uEa0oIi5eXtR"
SECRETS = ["s3cr3t-db", "SG.topsecret", "tok-123", LINK_SECRET, "ledger-pw"]


def test_config_show_names_every_connection_and_masks_every_secret(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_APP_DB", "postgresql://app:s3cr3t-db@db:5432/app")
    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID", json.dumps({"conn_type": "http", "host": "api.sendgrid.com",
                                                           "password": "SG.topsecret",
                                                           "extra": {"api_token": "tok-123", "region": "eu"}}))
    monkeypatch.setenv("RETENTION_LINK_SECRET", LINK_SECRET)
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


def test_config_show_masks_secrets_in_query_parameters_nested_extras_and_embedded_urls(monkeypatch) -> None:
    hidden = ["pg-pass@with:at", "ssl-pw-1", "AKIA-SECRET-2", "nested-tok-3", "Bearer hdr-4", "str-extra-5",
              "uri-extra-6", "inner-url-7", "prev-link-secret"]
    monkeypatch.setenv("RETENTION_DATABASE_URL",
                       "postgresql+psycopg://ledger:pg-pass@with:at@db/ledger?sslmode=verify-full&sslpassword=ssl-pw-1")
    monkeypatch.setenv("AIRFLOW_CONN_OBJECT_STORE", "aws://?region_name=eu-west-1&aws_secret_access_key=AKIA-SECRET-2"
                       "&__extra__=%7B%22session%22%3A%20%7B%22token%22%3A%20%22uri-extra-6%22%7D%7D")
    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID", json.dumps({
        "conn_type": "http", "host": "https://proxy:inner-url-7@api.sendgrid.com", "login": "apikey",
        "extra": {"retry": {"limit": 3, "auth": {"token": "nested-tok-3"}},
                  "headers": {"Authorization": "Bearer hdr-4"}, "endpoints": [{"url": "https://u:inner-url-7@h/x"}]}}))
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO", json.dumps({"conn_type": "http",
                                                         "extra": json.dumps({"api_secret": "str-extra-5"})}))
    monkeypatch.setenv("RETENTION_LINK_SECRET", LINK_SECRET)
    monkeypatch.setenv("RETENTION_LINK_SECRET_PREVIOUS", "prev-link-secret" + LINK_SECRET)

    for args in (["--json"], []):
        result = CliRunner().invoke(main, ["config", "show", "--rules-dir", str(REPO / "retention_rules"), *args])
        assert result.exit_code == 0, result.output
        assert not [secret for secret in hidden if secret.split()[-1] in result.output], result.output
    shown = json.loads(CliRunner().invoke(main, ["config", "show", "--rules-dir", str(REPO / "retention_rules"),
                                                 "--json"]).output)
    assert shown["settings"]["database_url"] == \
        "postgresql+psycopg://ledger:***@db/ledger?sslmode=verify-full&sslpassword=***"
    assert shown["settings"]["link_secrets_previous"] == ["***"]
    assert shown["connections"]["object_store"].startswith("aws://?region_name=eu-west-1&aws_secret_access_key=***&")
    sendgrid = shown["connections"]["sendgrid"]
    assert sendgrid["host"] == "https://proxy:***@api.sendgrid.com" and sendgrid["login"] == "apikey"
    assert sendgrid["extra"] == {"retry": {"limit": 3, "auth": "***"}, "headers": {"Authorization": "***"},
                                 "endpoints": [{"url": "https://u:***@h/x"}]}
    assert json.loads(shown["connections"]["twilio"]["extra"]) == {"api_secret": "***"}
