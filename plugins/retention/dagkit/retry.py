"""Which failures Airflow tries again: transient faults yes, after a delay; refusals never.

``RETRY_POLICY`` is an Airflow ``ExceptionRetryPolicy``. Its rules are checked in order and the first whose
exception class matches wins, subclasses included (``isinstance``); a failure no rule names takes the task's
standard retries. Refusals come first, so that a refusal which also happens to subclass a transient fault can
never be tried again. The policy only shortens retries: RETRY still stops at the task's ``retries``.

Exceptions are named by dotted path, as Airflow serializes them. Naming them so does not keep their modules out of
DAG parsing: ``RetryRule`` imports each path when the rule is made, to warn about a typo (a warning only; the unit
test fails on one). Importing this module takes about a second, most of it ``retention.engine`` and Airflow's task
runner, which the DAG files' own tasks import too.
Input refusals that are ``ValueError``s are already failed at once by ``retention.failfast``
(``AirflowFailException``, which Airflow never retries and never asks a policy about).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule
from airflow.sdk.definitions.retry_policy import ExceptionSpec

# Trying again cannot help: a person has to act (release a hold, fix rules or a spec, grant a permission,
# acknowledge a mass deletion, start an overdue offboarding, investigate the ledger).
REFUSALS: dict[str, list[ExceptionSpec]] = {
    "a legal hold keeps the data": [
        "retention.engine.executor.HeldMidBatch",
        "retention.subprocessors.context.Held",
    ],
    "not permitted": [
        "retention.engine.executor.NotPermitted",
        "retention.offboarding.tasks.SelfApproval",
        "retention.offboarding.tasks.ApprovalNotPermitted",
    ],
    # A refused mass deletion ends the sweep as SweepFailed (so do unfinished tasks and unexplained residue, which
    # a retry of the report does not finish either); a delete-all switch in a spec is refused as a RulesError.
    "a refused mass deletion or an unfinished sweep": ["retention.engine.tasks.SweepFailed"],
    "more records than the resource's max_records": ["retention.subprocessors.errors.RecordsBoundExceeded"],
    "rules, specs or parameters are invalid": [
        "retention.rules.errors.RulesError",
        "retention.rules.resolver.ResolutionError",
        "retention.offboarding.request.RequestError",
        "retention.ledger.fields.FieldError",
        "retention.ledger.guard.PersonalDataError",
    ],
    "the ledger's schema, chain or checkpoints are not as expected": [
        "retention.ledger.database.LedgerSchemaError",
        "retention.ledger.chain.PayloadError",
        "retention.ledger.checkpoints.CheckpointInvalid",
        "retention.ledger.roles.LedgerRoleError",
    ],
    "the provider refused the Connection's credentials": ["retention.subprocessors.errors.CredentialsRefused"],
    "terminations are overdue: on-call must start their offboarding": ["retention.engine.tasks.TerminationsOverdue"],
    "the manual attestation's deadline passed without an answer":
        ["airflow.providers.standard.exceptions.HITLTimeoutError"],
}

# Passing faults, and how long to let them pass before the next try.
TRANSIENT: dict[str, tuple[timedelta, list[ExceptionSpec]]] = {
    "a batch met the application's locks": (timedelta(minutes=2), ["retention.stores.base.BatchLocked"]),
    "the ledger is busy": (timedelta(minutes=1), ["retention.ledger.transactions.LedgerBusy",
                                                  "retention.ledger.runs.TaskBusy"]),
    "throttled or connection lost": (timedelta(minutes=1), [
        "retention.subprocessors.http.Retryable",
        "httpx.TransportError",
        "sqlalchemy.exc.OperationalError",
        "psycopg.OperationalError",
        "botocore.exceptions.EndpointConnectionError",
        "botocore.exceptions.ConnectionClosedError",
        "botocore.exceptions.ReadTimeoutError",
        "redis.exceptions.ConnectionError",
        "redis.exceptions.TimeoutError",
        "builtins.ConnectionError",
        "builtins.TimeoutError",
    ]),
}

RETRY_POLICY = ExceptionRetryPolicy(rules=[
    *(RetryRule(exception=paths, action=RetryAction.FAIL, reason=reason) for reason, paths in REFUSALS.items()),
    *(RetryRule(exception=paths, action=RetryAction.RETRY, retry_delay=delay, reason=reason)
      for reason, (delay, paths) in TRANSIENT.items()),
])
