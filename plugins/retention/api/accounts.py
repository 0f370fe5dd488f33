"""The account picker's search: accounts of the registry by id or customer name, so staff choose an account rather
than type one. Accounts whose registry row was refused are found too (by id, without a name): they exist, and a
hold on them must be possible (as ``POST /holds`` accepts them)."""

from __future__ import annotations

from typing import Annotated, TypedDict

from fastapi import APIRouter, Query

from retention.api.credentials import account_registry
from retention.api.operators import Reader
from retention.registry import Registry

DEFAULT_LIMIT = 20


class AccountChoice(TypedDict):
    account_id: str
    customer: str | None
    state: str | None  # None for an account whose registry row was refused
    jurisdiction: str | None


router = APIRouter()


# response_model=None: the answer's TypedDict types it for mypy; pydantic takes only typing_extensions' TypedDict on
# Python 3.11 as a response model, and the answer needs no second validation.
@router.get("/accounts", response_model=None)
def accounts(user: Reader, q: Annotated[str, Query(max_length=200)] = "",
             limit: Annotated[int, Query(ge=1, le=100)] = DEFAULT_LIMIT) -> list[AccountChoice]:
    """Accounts whose id or customer name contains ``q`` (any case), by customer name then id, at most ``limit``."""
    return matching(account_registry(), q, limit)


def matching(registry: Registry, q: str, limit: int) -> list[AccountChoice]:
    choices: dict[str, AccountChoice] = {
        r.account_id: {"account_id": r.account_id, "customer": None, "state": None, "jurisdiction": None}
        for r in registry.rejected if r.account_id is not None}
    choices |= {account_id: {"account_id": account_id, "customer": a.customer, "state": a.state.value,
                             "jurisdiction": a.jurisdiction} for account_id, a in registry.accounts.items()}
    needle = q.strip().casefold()
    found = [c for c in choices.values()
             if needle in c["account_id"].casefold() or needle in (c["customer"] or "").casefold()]
    # Named accounts first, by name; those without a name after them, by id.
    found.sort(key=lambda c: (c["customer"] is None, (c["customer"] or "").casefold(), c["account_id"]))
    return found[:limit]
