"""Filing a data subject request: the one way a request enters the ledger, whoever files it (the customer's API
credential, staff through the CLI or the DAG's form). Refuses an account the registry does not hold."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from retention.identifier_hashes import load_key, subject_hashes
from retention.ledger import Ledger
from retention.registry import Registry
from retention.requests.request import RequestError, SubjectRequestSpec
from retention.rules.subjects import deadline, regime_of
from retention.settings import Settings


def file_request(ledger: Ledger, settings: Settings, registry: Registry, spec: SubjectRequestSpec, *,
                 filed_by: str) -> str:
    """Record the request (status ``filed``, event ``subject.filed`` with keyed hashes); returns its id. Its legal
    deadline is the end (23:59:59 UTC) of the last day its regime allows from the day the customer received it."""
    account = registry.accounts.get(spec.account_id)
    if account is None:
        why = "its registry row was refused" if registry.knows(spec.account_id) else "no such account"
        raise RequestError(f"invalid subject request: account_id: {spec.account_id} cannot be acted on ({why} in "
                           f"{registry.source})")
    regime = spec.regime or regime_of(account.jurisdiction)
    received_at = datetime.combine(spec.received_on, time(), tzinfo=UTC)
    last_day = deadline(spec.received_on, regime)
    deadline_at = datetime.combine(last_day, time(), tzinfo=UTC) + timedelta(days=1, microseconds=-1)
    subject = spec.subject
    return ledger.file_subject_request(
        account_id=spec.account_id, request_type=spec.request_type, regime=regime, received_at=received_at,
        deadline_at=deadline_at, reference=spec.reference, subject=subject,
        identifier_hashes=subject_hashes(load_key(settings), spec.account_id, subject), filed_by=filed_by,
        recipient=spec.recipient)
