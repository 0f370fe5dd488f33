"""`retention pools sync`: the Airflow pools the DAGs run their tasks in, created or resized from what declares them.

One pool per store kind (``retention.stores.kinds.KINDS``: its pool, slots and description) and one per subprocessor
with a deletion API (``subprocessor_<name>``, sized to its spec's ``rate_limit.concurrency``), so a sweep cannot flood
a production database and one provider's rate limit never slows another.

Written with Airflow's own ``airflow pools import FILE`` (its pool-import JSON), which writes to Airflow's metadata
database directly: it works in docker-compose's airflow-init, before the api-server that the REST API needs is up,
and creates a missing pool or updates an existing one's slots and description in place.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import click

from retention.cli.base import Failure, common
from retention.cli.output import emit

if TYPE_CHECKING:
    from retention.settings import Settings

SUBPROCESSOR_POOL = "subprocessor_{name}"  # the pool dags/subprocessor_erasure.py runs a subprocessor's erasures in
IMPORT_TIMEOUT_SECONDS = 300
_EXCEPTION = re.compile(r"^[\w.]+(Error|Exception|Exit): ")


class Pool(TypedDict):
    """One entry of Airflow's pool-import JSON (keyed by the pool's name)."""

    slots: int
    description: str
    include_deferred: bool


@click.group()
def pools() -> None:
    """The Airflow pools the retention DAGs use."""


@pools.command("sync")
@click.option("--dry-run", is_flag=True, help="Show the pools; change nothing in Airflow.")
@common
def pools_sync(dry_run: bool, rules_dir: Path, as_json: bool) -> None:
    """Create or resize, in Airflow, every pool the retention DAGs use (a pool of another name is left as it is)."""
    from retention.settings import Settings

    wanted = pools_the_dags_use(Settings.from_env(rules_dir=rules_dir))
    if not dry_run:
        import_pools(wanted)
    if as_json:
        return emit({"ok": True, "dry_run": dry_run, "pools": wanted})
    for name, pool in wanted.items():
        click.echo(f"{name:32} {pool['slots']:>3} slot(s)  {pool['description']}")
    click.echo("dry run: Airflow was not changed" if dry_run else f"{len(wanted)} pool(s) set in Airflow")


def pools_the_dags_use(settings: Settings) -> dict[str, Pool]:
    """Every pool a retention DAG names, with the slots and description its declaration gives."""
    from retention.stores.kinds import KINDS
    from retention.subprocessors.tasks import specs

    wanted = {kind.pool: Pool(slots=kind.pool_slots, description=kind.pool_description, include_deferred=False)
              for kind in KINDS.values()}
    for name, spec in sorted(specs(settings).items()):
        if spec.manual is None and spec.resources:  # a manual or hosted spec runs no erasure task in a pool
            wanted[SUBPROCESSOR_POOL.format(name=name)] = Pool(
                slots=spec.rate_limit.concurrency, include_deferred=False,
                description=f"retention: subprocessor {name} (its API's rate limit)")
    return wanted


def import_pools(wanted: dict[str, Pool]) -> None:
    """``airflow pools import`` of ``wanted``, run by this interpreter's Airflow against its configured metadata
    database; a failure raises ``Failure`` with what Airflow said."""
    with tempfile.TemporaryDirectory(prefix="retention-pools-") as directory:
        pools_file = Path(directory) / "pools.json"
        pools_file.write_text(json.dumps(wanted, indent=2, sort_keys=True))
        try:
            done = subprocess.run([sys.executable, "-m", "airflow", "pools", "import", str(pools_file)],
                                  capture_output=True, text=True, timeout=IMPORT_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise Failure(f"airflow pools import did not finish in {IMPORT_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        raise Failure(f"airflow pools import failed (exit {done.returncode}): {_what_airflow_said(done)}")


def _what_airflow_said(done: subprocess.CompletedProcess[str]) -> str:
    """The exception a failed ``airflow`` command ended with, else its last line (its own message, e.g. a pool it
    refused); the log lines Airflow writes around it are left out."""
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()] or [
        line.strip() for line in done.stdout.splitlines() if line.strip()]
    raised = [line for line in lines if _EXCEPTION.match(line)]
    return (raised or lines or ["(no output)"])[-1]
