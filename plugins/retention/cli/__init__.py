"""The `retention` command line: one module per command group, assembled here into ``main``.

Exit codes: 0 ok, 1 invalid input or failed check, 2 usage error or a setting that cannot be used
(``retention.cli.base``).
"""

from __future__ import annotations

import click

from retention.cli.base import RetentionGroup
from retention.cli.certificates import certificate
from retention.cli.config import config
from retention.cli.credentials import customer_credential
from retention.cli.holds import hold
from retention.cli.ledger import ledger
from retention.cli.offboard import offboard_command
from retention.cli.pools import pools
from retention.cli.requests import request
from retention.cli.rules import rules
from retention.cli.runs import forecast_command, replay_command, report_command, sweep_command


@click.group(cls=RetentionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="retention-orchestrator")
def main() -> None:
    """Retention rules, legal holds and the deletion ledger."""


for command in (rules, hold, sweep_command, forecast_command, replay_command, offboard_command, report_command,
                config, ledger, certificate, pools, customer_credential, request):
    main.add_command(command)
