"""`retention config show`: the effective settings and the Airflow Connections they name, every secret masked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from retention.cli.base import common
from retention.cli.output import emit

if TYPE_CHECKING:
    from retention.settings import Settings


@click.group()
def config() -> None:
    """The product's effective configuration."""


@config.command("show")
@common
def config_show(rules_dir: Path, as_json: bool) -> None:
    """Print the effective settings and the Airflow Connections they name, every secret masked."""
    from retention.masking import masked_connection
    from retention.settings import Settings, connection_from_env

    settings = Settings.from_env(rules_dir=rules_dir)
    conn_ids = sorted({settings.returns_conn_id, settings.backups_conn_id, *_inventory_conn_ids(settings)})
    given = {conn_id: connection_from_env(conn_id) for conn_id in conn_ids}
    connections = {conn_id: masked_connection(value) if value else "(Airflow metadata or secrets backend)"
                   for conn_id, value in given.items()}
    document: dict[str, dict[str, Any]] = {"settings": settings.masked(), "connections": connections}
    if as_json:
        return emit(document)
    for name, value in document["settings"].items():
        click.echo(f"{name:26} {value}")
    click.echo("\nConnections:")
    for conn_id, value in connections.items():
        click.echo(f"  {conn_id:24} {json.dumps(value) if isinstance(value, dict) else value}")


def _inventory_conn_ids(settings: Settings) -> list[str]:
    """The Connections systems.yaml and the subprocessor specs name."""
    from retention.rules import load_ruleset
    from retention.rules.inventory import load_inventory
    from retention.subprocessors.tasks import specs

    systems = load_inventory(settings.systems_file, load_ruleset(settings.rules_dir))
    return [loc.conn_id for loc in systems.locations.values()] + [
        conn_id for spec in specs(settings).values() if (conn_id := getattr(spec, "conn_id", None))]
