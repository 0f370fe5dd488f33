"""A request at the subprocessors: which specs it covers, and the subject scope of each
(``retention.subprocessors.subjects``: find, erase, export one person's records at a provider)."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from retention.ledger import Ledger
from retention.rules.subjects import Subject
from retention.settings import Settings
from retention.subprocessors.spec import ConnectorSpec

if TYPE_CHECKING:
    from retention.subprocessors.subjects import SubjectMatch

SUBJECT_SCOPE = "retention.subprocessors.subjects"


class SubjectScopeMissing(RuntimeError):
    """This installation has no subject scope at subprocessors: a request cannot say what they hold."""


@contextmanager
def _scope() -> Iterator[None]:
    """Turn a missing subject scope into a SubjectScopeMissing naming it (never a silent skip: a request that did
    not ask its subprocessors must not look as if they held nothing)."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name != SUBJECT_SCOPE:
            raise
        raise SubjectScopeMissing(f"{SUBJECT_SCOPE} is not installed: subprocessors cannot be asked about one "
                                  "person; run the request without subprocessors only if none holds the account's "
                                  "data") from None


def preview(spec_name: str, account_id: str, subject: Subject) -> SubjectMatch:
    """What the provider holds of the person (counts only; nothing deleted)."""
    with _scope():
        from retention.subprocessors.subjects import preview as find
    return find(spec_name, account_id, subject)


def erase(ledger: Ledger, request_id: str, spec_name: str, account_id: str, subject: Subject, *, run_id: str,
          actor: str) -> dict[str, Any]:
    """Erase the person's records at the provider (holds checked before each delete; ``subject.subprocessor`` in
    the request's run ``run_id``)."""
    with _scope():
        from retention.subprocessors.subjects import erase as erase_at
    return erase_at(ledger, request_id, spec_name, account_id, subject, run_id=run_id, actor=actor)


def covered_specs(settings: Settings, names: Collection[str] | None) -> dict[str, ConnectorSpec]:
    """The specs a request covers: all of them (``names`` None) or the ones named (an unknown name is refused)."""
    from retention.subprocessors.tasks import specs

    if names is not None and not names:  # none asked: no need to read and check every spec (most of a preview's time)
        return {}
    every = specs(settings)
    if names is None:
        return every
    unknown = sorted(set(names) - set(every))
    if unknown:
        raise ValueError(f"subprocessors: no spec for {', '.join(unknown)} under {settings.rules_dir / 'subprocessors'}"
                         f" (known: {', '.join(sorted(every))})")
    return {name: every[name] for name in sorted(set(names))}
