"""Settings: every variable the product reads, its name, its default, and a refusal that names the variable
without repeating its value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from retention.cli import main
from retention.settings import PROCESSOR_NAME_UNSET, Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"RETENTION_{name.upper()}", raising=False)
    for name in ("RETENTION_LINK_SECRET_PREVIOUS", "AIRFLOW_API_TOKEN", "PGCONNECT_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.from_env()
    assert (settings.rules_dir, settings.home, settings.database_url) == (Path("retention_rules"), Path("var"), None)
    assert (settings.return_poll_seconds, settings.airflow_api_url) == (900, "http://localhost:8080")
    assert (settings.airflow_api_token, settings.pgconnect_timeout) == (None, None)
    assert settings.processor_name == PROCESSOR_NAME_UNSET and settings.link_secrets_previous == ()


def test_each_setting_is_read_from_its_variable(monkeypatch) -> None:
    monkeypatch.setenv("RETENTION_HOME", "/srv/retention")
    monkeypatch.setenv("RETENTION_RETURN_POLL_SECONDS", "2")
    monkeypatch.setenv("RETENTION_AIRFLOW_API_URL", "https://airflow.example/")
    monkeypatch.setenv("AIRFLOW_API_TOKEN", "tok-1")
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "3")
    monkeypatch.setenv("RETENTION_BACKUPS_KMS_CONN_ID", "kms")
    monkeypatch.setenv("RETENTION_CHECKPOINT_DIR", "/srv/checkpoints")

    settings = Settings.from_env()

    assert settings.keystore_dir == Path("/srv/retention/keystore") and settings.return_poll_seconds == 2
    assert (settings.airflow_api_url, settings.airflow_api_token) == ("https://airflow.example/", "tok-1")
    assert (settings.pgconnect_timeout, settings.backups_kms_conn_id) == ("3", "kms")
    assert settings.checkpoint_dir == Path("/srv/checkpoints")


def test_an_empty_variable_counts_as_unset_and_an_override_wins_unless_it_is_none(monkeypatch) -> None:
    monkeypatch.setenv("RETENTION_ACCOUNTS_FILE", "")
    monkeypatch.setenv("RETENTION_RULES_DIR", "/etc/rules")
    assert Settings.from_env().accounts_file is None
    assert Settings.from_env(rules_dir=None).rules_dir == Path("/etc/rules")
    assert Settings.from_env(rules_dir=Path("/other")).systems_file == Path("/other/systems.yaml")


@pytest.mark.parametrize(("variable", "value"), [("RETENTION_RETURN_POLL_SECONDS", "soon"),
                                                  ("RETENTION_KEY_DELETION_WINDOW_DAYS", "a week")])
def test_a_value_that_is_not_a_number_is_refused_naming_only_the_variable(monkeypatch, variable, value) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"^{variable}: ") as refused:
        Settings.from_env()
    assert value not in str(refused.value)


def test_config_show_masks_the_airflow_token_and_shows_the_new_settings(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_API_TOKEN", "eyJ-secret-token")
    monkeypatch.setenv("RETENTION_RETURN_POLL_SECONDS", "60")

    result = CliRunner().invoke(main, ["config", "show", "--rules-dir", str(REPO / "retention_rules"), "--json"])

    assert result.exit_code == 0, result.output
    assert "eyJ-secret-token" not in result.output
    shown = json.loads(result.output)["settings"]
    assert (shown["airflow_api_token"], shown["return_poll_seconds"]) == ("***", 60)
    assert set(shown) == set(Settings.model_fields)  # every setting is shown


def test_notification_settings_default_to_no_recipients_and_the_standard_smtp_connection() -> None:
    settings = Settings.from_env()
    assert (settings.alert_recipients, settings.alert_from, settings.smtp_conn_id) == ((), None, "smtp_default")
    assert (settings.attestation_reminder_hours, settings.sweep_deadline_hours) == (48.0, 6.0)


def test_alert_recipients_are_read_comma_separated(monkeypatch) -> None:
    monkeypatch.setenv("RETENTION_ALERT_RECIPIENTS", " oncall@example.com, dpo@example.com ,")
    monkeypatch.setenv("RETENTION_SWEEP_DEADLINE_HOURS", "0.5")
    settings = Settings.from_env()
    assert settings.alert_recipients == ("oncall@example.com", "dpo@example.com")
    assert settings.sweep_deadline_hours == 0.5


@pytest.mark.parametrize(("variable", "value"), [("RETENTION_ALERT_RECIPIENTS", "oncall@example.com, on call"),
                                                  ("RETENTION_ALERT_RECIPIENTS", "pager"),
                                                  ("RETENTION_ATTESTATION_REMINDER_HOURS", "-3"),
                                                  ("RETENTION_SWEEP_DEADLINE_HOURS", "inf"),
                                                  ("RETENTION_SWEEP_DEADLINE_HOURS", "six"),
                                                  ("RETENTION_RETRY_DELAY_SECONDS", "-1"),
                                                  ("RETENTION_RETRY_DELAY_SECONDS", "nan")])
def test_an_unusable_notification_setting_is_refused_naming_the_variable(monkeypatch, variable, value) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=f"^{variable}") as refused:
        Settings.from_env()
    assert value not in str(refused.value)


def test_the_retry_delay_defaults_to_two_minutes_and_reaches_every_dags_default_args(monkeypatch) -> None:
    from datetime import timedelta

    from retention.dagkit.defaults import default_args

    assert Settings.from_env().retry_delay_seconds == 120.0
    assert default_args()["retry_delay"] == timedelta(minutes=2)
    monkeypatch.setenv("RETENTION_RETRY_DELAY_SECONDS", "5")
    assert default_args()["retry_delay"] == timedelta(seconds=5)
