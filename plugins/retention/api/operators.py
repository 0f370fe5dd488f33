"""The operator views: one page in Airflow's UI (the plugin's ``external_views``) and the staff routes it
reads: open offboardings, legal holds and the data classes a hold can name. The chart and the list of
terminations waiting for their offboarding (overdue ones marked) come from ``GET /retention/forecast``.

Every staff route declares the permission it needs (``requires``, see ``retention.permissions``): an
anonymous call answers 401, a signed-in user without the permission 403. In the UI the browser sends
Airflow's own session cookie (SameSite=Lax). Writes also demand a JSON body, which a form on another site
cannot send without a CORS preflight that this app never grants. Holds are placed and released in the name
of the Airflow user, never a name typed into a form.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pendulum
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from fastapi.params import Depends as DependsParam
from pydantic import BaseModel, Field

from retention.engine.tasks import context
from retention.ledger import Ledger
from retention.offboarding.backups import keep_keys_for_new_hold
from retention.offboarding.status import open_offboardings
from retention.permissions import Permission, is_allowed
from retention.settings import Settings

STATIC = Path(__file__).with_name("static")
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}
# The page's files, listed once at import: every file of static/ with a known type (no name from the request reaches the
# file system), and the page itself at the folder's root.
PAGE_FILES = {path.name: (path.name, MEDIA_TYPES[path.suffix]) for path in sorted(STATIC.iterdir())
              if path.suffix in MEDIA_TYPES} | {"": ("operators.html", MEDIA_TYPES[".html"])}
# The page loads only its own script and style, and only Airflow's UI (same origin) may frame it.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'self'; form-action 'self'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def json_body(content_type: Annotated[str, Header()] = "") -> None:
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, "send the body as application/json")


@dataclass(frozen=True)
class PermittedUser:
    """The signed-in Airflow user if they hold ``permission``, else 403 naming it. A callable FastAPI
    dependency that carries its permission, so a test can read every route's from the app."""

    permission: Permission

    def __call__(self, user: GetUserDep) -> BaseUser:
        if not is_allowed(user, self.permission):
            raise HTTPException(403, f"missing permission: {self.permission.name} "
                                     f"({self.permission.method} on {self.permission.resource_name!r})")
        return user


def requires(permission: Permission) -> DependsParam:
    """A dependency giving the signed-in Airflow user if they hold ``permission``, else 403 naming it
    (``.dependency.permission`` names it)."""
    return DependsParam(dependency=PermittedUser(permission))


Reader = Annotated[BaseUser, requires(Permission.READ)]


class HoldRequest(BaseModel):
    account_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    data_class: str | None = Field(default=None, max_length=200)
    reason: str = Field(min_length=3, max_length=500, description="Why (no personal data)")
    reference: str = Field(min_length=1, max_length=200, description="Ticket or matter reference")


class ReleaseRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=500)


router = APIRouter()


@router.get("/ui/{name:path}", include_in_schema=False)
def operator_page(name: str, user: Reader) -> Response:
    if name not in PAGE_FILES:
        raise HTTPException(404, "no such file")
    file, media_type = PAGE_FILES[name]
    return Response((STATIC / file).read_bytes(), media_type=media_type, headers=PAGE_HEADERS)


@router.get("/offboardings")
def offboardings(user: Reader) -> Sequence[Mapping[str, object]]:
    """Offboardings not finished yet, with the stage each one is at."""
    with open_ledger() as ledger:
        return open_offboardings(ledger, pendulum.now("UTC"))


@router.get("/data-classes")
def data_classes(user: Reader) -> list[dict[str, str]]:
    with context() as ctx:
        return [{"name": name, "description": spec.description}
                for name, spec in sorted(ctx.ruleset.data_classes.data_classes.items())]


@router.get("/holds")
def holds(user: Reader, include_released: Annotated[bool, Query(alias="all")] = False) -> list[dict[str, str | None]]:
    with open_ledger() as ledger:
        return [h.as_dict() for h in ledger.list_holds(include_released=include_released)]


@router.post("/holds", status_code=201, dependencies=[Depends(json_body)])
def place_hold(body: HoldRequest, user: Annotated[BaseUser, requires(Permission.PLACE_HOLD)]) -> dict[str, object]:
    """Place a legal hold; the next sweep or offboarding keeps what it covers."""
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
            raise HTTPException(422, str(exc)) from None
        # Now, not at the next daily run: a scheduled key deletion the hold covers is cancelled.
        keys = keep_keys_for_new_hold(ctx.ledger, Settings.from_env(), actor=staff_id(user))
    return {**placed.as_dict(), **keys}


@router.post("/holds/{hold_id}/release", dependencies=[Depends(json_body)])
def release_hold(hold_id: str, body: ReleaseRequest,
                 user: Annotated[BaseUser, requires(Permission.RELEASE_HOLD)]) -> dict[str, str | None]:
    with open_ledger() as ledger:
        try:
            released = ledger.release_hold(hold_id, released_by=staff_id(user), reason=body.reason)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
    return released.as_dict()


def staff_id(user: BaseUser) -> str:
    return f"api:{user.get_id()}"


@contextmanager
def open_ledger() -> Iterator[Ledger]:
    with Ledger.open(Settings.from_env().database_url) as ledger:
        yield ledger
