"""Identity expansion: from the identifiers the customer gave to every identifier linked to them in the account.

Each location that can find records by an identifier (``stores.base.SubjectFinding``) and keeps one of the
subject's kinds answers with the identifiers of every kind it keeps on the records the subject selects there (the
visitor ids of the conversations an e-mail address wrote, say). The union is asked again while it grows, for at
most ``ROUNDS`` rounds. Once more than ``MAX_EXPANDED`` identifiers are reached the expansion stops there and is
marked bounded: such a request always waits for a person's approval, whatever its size.

Expansion adds identifiers of the kinds the customer did not give (from an e-mail address: the visitor ids and
phone numbers on the person's records), never more of a kind it gave: a second e-mail address reached through a
shared visitor id (a kiosk, a shared browser) is most likely another person. Meeting one marks the expansion
ambiguous, and an ambiguous request waits for a person's approval whatever its size: the linked identifier it
shares may select that other person's records too. Recorded as ``subject.expanded`` with counts and keyed hashes
only.
"""

from __future__ import annotations

from dataclasses import dataclass

from retention.engine.context import SweepContext
from retention.identifier_hashes import identifier_hash
from retention.rules.subjects import MAX_EXPANDED, Subject
from retention.stores.base import Store, SubjectFinding

# Statuses from which a request is (re)started: nothing has acted on it yet, and an earlier preview nobody approved
# is replaced by the next one (a request the CLI found too large is taken over by the DAG's approval form).
# A held request (a legal hold kept some of it) is run again once the hold ends: its erasure is still owed.
TAKEN_OVER = ("filed", "expanded", "previewed", "awaiting_approval", "held")
ROUNDS = 3  # a link of a link of a link: e-mail -> visitor id -> the phone on that visitor's contact, say


class ExpansionRefused(ValueError):
    """The request is approved and acting, or closed: its identifiers are what its approved preview counted."""


@dataclass(frozen=True)
class Expansion:
    given: Subject
    expanded: Subject
    rounds: int
    bounded: bool
    ambiguous: bool = False  # a linked identifier led to another value of a kind the customer gave

    def by_kind(self) -> dict[str, int]:
        return {kind: len(values) for kind, values in self.expanded.identifiers.items()}

    def added(self) -> list[tuple[str, str]]:
        """(kind, value) of every identifier the expansion added to the given ones."""
        return [(kind, value) for kind, values in self.expanded.identifiers.items() for value in values
                if value not in self.given.values(kind)]


def expand_subject(ctx: SweepContext, account_id: str, given: Subject) -> Expansion:
    """The identifiers linked to ``given`` within the account, through every finding location."""
    subject, rounds, bounded, ambiguous = given, 0, False, False
    stores: dict[str, Store] = {}  # each opened (its table reflected) once, however many rounds ask it
    while rounds < ROUNDS and not bounded:
        rounds += 1
        found = subject
        for location_id, spec in ctx.inventory.locations.items():
            if not spec.subject_kinds() & found.kinds():
                continue
            if location_id not in stores:
                stores[location_id] = ctx.store(location_id)
            store = stores[location_id]
            if not isinstance(store, SubjectFinding):
                continue
            linked = store.linked(account_id, found, MAX_EXPANDED)
            if linked is None:
                continue
            others = [kind for kind in given.kinds() if set(linked.values(kind)) - set(given.values(kind))]
            ambiguous = ambiguous or bool(others)
            added = {kind: values for kind, values in linked.identifiers.items() if kind not in given.kinds()}
            if added:
                found = found.union(Subject(added))
            if found.size > MAX_EXPANDED:
                bounded = True
                break
        if found == subject:
            break
        subject = found
    return Expansion(given, subject, rounds, bounded, ambiguous)


def record_expansion(ctx: SweepContext, request_id: str, key: bytes, *, actor: str) -> Expansion:
    """Expand the request's given identifiers and keep the result with the request (``subject.expanded``)."""
    row = ctx.ledger.subject_request(request_id)
    if row.status not in TAKEN_OVER:
        raise ExpansionRefused(f"subject request {request_id} is {row.status}: its identifiers are the ones its "
                               "approved preview counted")
    expansion = expand_subject(ctx, row.account_id, ctx.ledger.request_subject(request_id, given_only=True))
    payload = {"given": expansion.given.size, "expanded": expansion.expanded.size, "by_kind": expansion.by_kind(),
               "added_hashes": sorted(identifier_hash(key, row.account_id, kind, value)
                                      for kind, value in expansion.added()),
               "rounds": expansion.rounds, "bounded": expansion.bounded, "ambiguous": expansion.ambiguous}
    ctx.ledger.record_expansion(request_id, expansion.expanded, payload, actor=actor)
    return expansion
