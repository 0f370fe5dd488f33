"""Legal holds as staff place, review and release them on the operator page, with what each action means.

Placing a hold answers what it now keeps (``keeps``): the records in its scope that the next sweep would delete if
the hold were not there (``null`` and ``keeps_not_counted`` naming the error when a store could not be counted: the
hold stands all the same). Before a release, ``release-preview`` says what deletion resumes: the records in the
hold's scope that are due now once it is gone, and when the sweep next runs. Both counts are day 0 of a one-day
forecast (``retention.engine.forecast``) that counts this hold as released, the same figure ``GET /forecast``
shows for that scope once the hold is released; other holds in force still hold.

Holds are placed and released in the name of the signed-in Airflow user, never a name typed into a form. A
hold's reason is free text kept in its row (never in an event); staff who may read see it. Invalid input answers
422 with the field first ("reason: must be at least 3 characters", ``retention.api.worded_errors``).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Annotated, Literal, TypedDict

import pendulum
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from retention.api.airflow_ui import next_sweep
from retention.api.customer_names import Names, customers_of, registry_accounts
from retention.api.operators import Reader, json_body, open_ledger, requires, staff_id
from retention.api.worded_errors import WordedValidation, field_first
from retention.engine.context import SweepContext
from retention.engine.forecast import Due, forecast
from retention.engine.tasks import context
from retention.ids import ACCOUNT_ID
from retention.ledger import HoldRecord, Ledger
from retention.offboarding.backups import keep_keys_for_new_hold
from retention.permissions import Permission
from retention.settings import Settings

_log = logging.getLogger(__name__)

Releaser = Annotated[BaseUser, requires(Permission.RELEASE_HOLD)]
CHANNELS = {"api": "Airflow", "cli": "CLI"}  # a staff id's prefix -> where the person acted


class HoldRequest(BaseModel):
    account_id: str | None = Field(default=None, pattern=ACCOUNT_ID)
    data_class: str | None = Field(default=None, max_length=200)
    reason: str = Field(min_length=3, max_length=500, description="Why (no personal data)")
    reference: str = Field(min_length=1, max_length=200, description="Ticket or matter reference")


class ReleaseRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=500)


class HoldView(TypedDict):
    id: str
    account_id: str | None
    customer: str | None
    data_class: str | None
    reference: str
    reason: str
    placed_by: str  # the staff id as the ledger has it ("api:dpo-7")
    placed_by_user: str  # the person's id without the channel ("dpo-7")
    placed_via: str | None  # "Airflow", "CLI", another channel's prefix, or None
    placed_at: str
    released_at: str | None


class Kept(TypedDict):
    records: int
    accounts: int


class AccountRecords(TypedDict):
    account_id: str
    customer: str | None
    records: int


class Resumes(TypedDict):
    records: int
    by_account: list[AccountRecords]  # most records first
    by_data_class: dict[str, int]


class ReleasePreview(TypedDict):
    hold: HoldView
    resumes: Resumes
    next_sweep: str | None
    next_sweep_source: Literal["airflow", "unknown"]
    sweep_paused: bool | None


router = APIRouter(route_class=WordedValidation)


# response_model=None: the answer's TypedDict types it for mypy; pydantic takes only typing_extensions' TypedDict on
# Python 3.11 as a response model, and the answer needs no second validation.
@router.get("/holds", response_model=None)
def holds(user: Reader, include_released: Annotated[bool, Query(alias="all")] = False) -> list[HoldView]:
    with open_ledger() as ledger:
        found = ledger.list_holds(include_released=include_released)
    names = customers_of(registry_accounts(), (h.account_id for h in found))
    return [hold_view(h, names) for h in found]


@router.post("/holds", status_code=201, dependencies=[Depends(json_body)])
def place_hold(body: HoldRequest, user: Annotated[BaseUser, requires(Permission.PLACE_HOLD)]) -> dict[str, object]:
    """Place a legal hold; the next sweep or offboarding keeps what it covers. The answer says what it keeps."""
    if body.account_id is None and body.data_class is None:
        raise HTTPException(422, "account_id: choose an account, a data class, or both (a hold on everything "
                                 "is not a hold)")
    with context() as ctx:
        # A misspelt account or class would hold nothing while looking like protection: refuse it. An account whose
        # registry row was refused exists: it may be held.
        known = ctx.registry.knows if ctx.registry is not None else ctx.accounts.__contains__
        if body.account_id is not None and not known(body.account_id):
            raise HTTPException(422, f"account_id: no account {body.account_id!r} in the account registry")
        if body.data_class is not None and body.data_class not in ctx.ruleset.data_classes.data_classes:
            raise HTTPException(422, f"data_class: unknown data class {body.data_class!r}")
        try:
            placed = ctx.ledger.place_hold(account_id=body.account_id, data_class=body.data_class,
                                           reason=body.reason, reference=body.reference, placed_by=staff_id(user))
        except ValueError as exc:
            raise HTTPException(422, field_first(str(exc), list(HoldRequest.model_fields)) or str(exc)) from None
        # Now, not at the next daily run: a scheduled key deletion the hold covers is cancelled.
        keys = keep_keys_for_new_hold(ctx.ledger, Settings.from_env(), actor=staff_id(user))
        view = hold_view(placed, customers_of(ctx.accounts, [placed.account_id]))
        try:
            kept = due_now_in_scope(ctx, placed)
        except Exception as exc:  # noqa: BLE001 - a store could not be counted; the hold is recorded and in force
            _log.warning("hold %s placed, but what it keeps was not counted: %s", placed.id, type(exc).__name__)
            return {**view, **keys, "keeps": None, "keeps_not_counted": type(exc).__name__}
    keeps: Kept = {"records": sum(line.records for line in kept), "accounts": len({line.account_id for line in kept})}
    return {**view, **keys, "keeps": keeps}


@router.get("/holds/{hold_id}/release-preview", response_model=None)
def release_preview(hold_id: str, user: Releaser) -> ReleasePreview:
    """What releasing the hold would let the next sweep delete, and when that sweep runs. Changes nothing."""
    with context() as ctx:
        hold = hold_in_force(ctx.ledger, hold_id)
        resumed = due_now_in_scope(ctx, hold)
        names = customers_of(ctx.accounts, [hold.account_id, *(line.account_id for line in resumed)])
    per_account = Counter[str]()
    per_class = Counter[str]()
    for line in resumed:
        per_account[line.account_id] += line.records
        per_class[line.data_class] += line.records
    by_account: list[AccountRecords] = [
        {"account_id": account_id, "customer": names.get(account_id), "records": records}
        for account_id, records in sorted(per_account.items(), key=lambda item: (-item[1], item[0]))]
    sweep = next_sweep()
    return {"hold": hold_view(hold, names),
            "resumes": {"records": sum(per_account.values()), "by_account": by_account,
                        "by_data_class": dict(sorted(per_class.items()))},
            "next_sweep": sweep.at, "next_sweep_source": sweep.source, "sweep_paused": sweep.paused}


@router.post("/holds/{hold_id}/release", dependencies=[Depends(json_body)])
def release_hold(hold_id: str, body: ReleaseRequest, user: Releaser) -> dict[str, str | None]:
    with open_ledger() as ledger:
        try:
            released = ledger.release_hold(hold_id, released_by=staff_id(user), reason=body.reason)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        except ValueError as exc:  # the reason refused by the ledger's checks (422), or the hold's state (409)
            worded = field_first(str(exc), ["reason"])
            raise HTTPException(422 if worded else 409, worded or str(exc)) from None
    return released.as_dict()


def hold_view(hold: HoldRecord, names: Names) -> HoldView:
    # A staff id is "<channel>:<person>" or a bare person (the ledger's check_staff refuses anything else).
    channel, colon, person = hold.placed_by.partition(":")
    if not colon:  # a staff id without a channel
        channel, person = "", hold.placed_by
    return {"id": hold.id, "account_id": hold.account_id,
            "customer": None if hold.account_id is None else names.get(hold.account_id),
            "data_class": hold.data_class, "reference": hold.reference, "reason": hold.reason,
            "placed_by": hold.placed_by, "placed_by_user": person, "placed_via": CHANNELS.get(channel, channel or None),
            "placed_at": hold.placed_at.isoformat(),
            "released_at": hold.released_at.isoformat() if hold.released_at else None}


def hold_in_force(ledger: Ledger, hold_id: str) -> HoldRecord:
    """The hold, 404 when there is none, 409 when it was released already."""
    hold = next((h for h in ledger.list_holds(include_released=True) if h.id == hold_id), None)
    if hold is None:
        raise HTTPException(404, f"no legal hold with id {hold_id!r}")
    if hold.released_at is not None:
        raise HTTPException(409, f"legal hold {hold_id} was already released at {hold.released_at.isoformat()}")
    return hold


def due_now_in_scope(ctx: SweepContext, hold: HoldRecord) -> list[Due]:
    """The forecast's day-0 lines in the hold's scope, with the hold counted as released: what the next sweep
    deletes there if the hold is not in force."""
    start = pendulum.now("UTC")
    today = start.to_date_string()
    return [line for line in forecast(ctx, start, 1, ignore_holds={hold.id})
            if line.day == today and hold.account_id in (None, line.account_id)
            and hold.data_class in (None, line.data_class)]
