"""`retention offboard`: trigger the termination_offboarding DAG through Airflow's REST API, signed in as the caller."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from retention.cli.base import EXIT_USAGE, common
from retention.cli.output import emit

if TYPE_CHECKING:
    from retention.settings import Settings


@click.command("offboard")
@click.argument("account_id")
@click.option("--choice", type=click.Choice(["delete", "return"]), required=True, help="The customer's election.")
@click.option("--reference", required=True, help="The ticket of the request.")
@click.option("--effective-date", help="When the contract ends (ISO-8601 with timezone; default now).")
@click.option("--return-recipient", help="For a return: the customer's age public key (age1...).")
@click.option("--return-window-days", type=int, help="Days the customer has to confirm receipt (0..30, default 14).")
@click.option("--subprocessor", "subprocessors", multiple=True,
              help="A subprocessor holding its data (repeat; default all).")
@click.option("--api-url", help="Airflow's api-server (default: $RETENTION_AIRFLOW_API_URL, else http://localhost:8080).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="A file holding your Airflow access token (default: $AIRFLOW_API_TOKEN).")
@click.option("--username", help="Sign in to Airflow as this user (the password is prompted) instead of a token.")
@common
def offboard_command(account_id: str, choice: str, reference: str, effective_date: str | None,
                     return_recipient: str | None, return_window_days: int | None, subprocessors: tuple[str, ...],
                     api_url: str | None, token_file: Path | None, username: str | None, rules_dir: Path,
                     as_json: bool) -> None:
    """Trigger the termination_offboarding DAG through Airflow's REST API, signed in as you: Airflow records you
    as the run's requester, and another user with the approval permission must approve it."""
    from retention.offboarding.request import parse_request
    from retention.settings import Settings

    conf = {"account_id": account_id, "choice": choice, "reference": reference, "effective_date": effective_date,
            "return_recipient": return_recipient, "return_window_days": return_window_days,
            "subprocessors": list(subprocessors) or None}
    parse_request(conf)  # refuse a bad request before Airflow sees it
    settings = Settings.from_env(airflow_api_url=api_url)
    api = settings.airflow_api_url.rstrip("/")
    token = _airflow_token(api, token_file, username, settings)
    run = _airflow_call("POST", f"{api}/api/v2/dags/termination_offboarding/dagRuns", token=token,
                        body={"logical_date": None, "conf": {k: v for k, v in conf.items() if v is not None}})
    result = {"ok": True, "dag_id": "termination_offboarding", "dag_run_id": run.get("dag_run_id"),
              "requested_by": run.get("triggering_user_name")}
    emit(result) if as_json else click.echo(f"triggered termination_offboarding run {result['dag_run_id']} as "
                                             f"{result['requested_by']}; it waits for another person's approval "
                                             "under Required Actions")


class AirflowApiError(click.ClickException):
    """Airflow's API cannot be reached or refused the call: one ``Error: ...`` line, exit 2."""

    exit_code = EXIT_USAGE


def _airflow_token(api: str, token_file: Path | None, username: str | None, settings: Settings) -> str:
    """The caller's Airflow access token: from --token-file, from a sign-in as --username (password prompted),
    or from $AIRFLOW_API_TOKEN. Never a name the caller types for someone else."""
    if token_file is not None and username is not None:
        raise click.UsageError("give --token-file or --username, not both")
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise AirflowApiError(f"--token-file: cannot read {token_file}: {exc.strerror}") from None
        if not token:
            raise AirflowApiError(f"--token-file: {token_file} is empty")
        return token
    if username is not None:
        password = click.prompt(f"Airflow password for {username}", hide_input=True, err=True)
        answer = _airflow_call("POST", f"{api}/auth/token", body={"username": username, "password": password})
        return str(answer["access_token"])
    token = (settings.airflow_api_token or "").strip()
    if not token:
        raise AirflowApiError("no Airflow credentials: set AIRFLOW_API_TOKEN, or give --token-file or --username")
    return token


def _airflow_call(method: str, url: str, *, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    """One call to Airflow's API; any failure becomes an AirflowApiError naming the status and Airflow's detail."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise AirflowApiError(f"cannot reach Airflow's API at {url}: {exc}") from None
    if response.is_success:
        answer: dict[str, Any] = response.json()
        return answer
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = response.text[:200]
    detail = detail if isinstance(detail, str) else json.dumps(detail)
    hint = " (is the DAG deployed, and is --api-url Airflow's api-server?)" if response.status_code == 404 else ""
    raise AirflowApiError(f"Airflow's API answered {response.status_code} to {method} {url}: {detail}{hint}")
