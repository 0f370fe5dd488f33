"""The operator views: one page in Airflow's UI (the plugin's ``external_views``) and the staff routes it
reads: open offboardings, the data classes a hold can name and the page's settings. Legal holds are
``retention.api.holds``, the account picker ``retention.api.accounts``; the chart and the list of terminations
waiting for their offboarding (overdue ones marked) come from ``GET /retention/forecast``.

Every staff route declares the permission it needs (``requires``, see ``retention.permissions``): an
anonymous call answers 401, a signed-in user without the permission 403. In the UI the browser sends
Airflow's own session cookie (SameSite=Lax). Writes also demand a JSON body, which a form on another site
cannot send without a CORS preflight that this app never grants. Every write is recorded in the name of the
Airflow user (``staff_id``), never a name typed into a form.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypedDict

import pendulum
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, Header, HTTPException, Response
from fastapi.params import Depends as DependsParam

from retention.api.airflow_ui import (
    REFRESH_SECONDS,
    SWEEP_DAG_ID,
    default_time_zone,
    required_actions_path,
    run_path,
)
from retention.api.customer_names import customers_of, registry_accounts
from retention.engine.tasks import context
from retention.ledger import Ledger
from retention.offboarding.status import AWAITING_APPROVAL, OffboardingStatus, open_offboardings
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


router = APIRouter()


@router.get("/ui/{name:path}", include_in_schema=False)
def operator_page(name: str, user: Reader) -> Response:
    if name not in PAGE_FILES:
        raise HTTPException(404, "no such file")
    file, media_type = PAGE_FILES[name]
    return Response((STATIC / file).read_bytes(), media_type=media_type, headers=PAGE_HEADERS)


class OffboardingView(OffboardingStatus):
    customer: str | None
    run_url: str | None  # the Airflow run's page (a path under Airflow's base URL); None for a CLI run
    required_actions_url: str | None  # where the approver responds, while the stage is awaiting approval


class PageSettings(TypedDict):
    default_time_zone: str
    sweep_dag_id: str
    refresh_seconds: int


# response_model=None: the answer's TypedDict types it for mypy; pydantic takes only typing_extensions' TypedDict on
# Python 3.11 as a response model, and the answer needs no second validation.
@router.get("/offboardings", response_model=None)
def offboardings(user: Reader) -> list[OffboardingView]:
    """Offboardings not finished yet, with the stage each one is at and where in Airflow to follow or approve it."""
    with open_ledger() as ledger:
        found = open_offboardings(ledger, pendulum.now("UTC"))
    names = customers_of(registry_accounts(), (o["account_id"] for o in found))
    return [{**o, "customer": names[o["account_id"]], "run_url": run_path(o["dag_id"], o["airflow_run_id"]),
             # Approval is a step of the DAG's run in Required Actions; a run no DAG made has none.
             "required_actions_url": required_actions_path(o["dag_id"])
             if o["stage"] == AWAITING_APPROVAL and o["dag_id"] else None}
            for o in found]


@router.get("/page-settings", response_model=None)
def page_settings(user: Reader) -> PageSettings:
    """What the page takes from Airflow's configuration: the time zone to show times in when the user chose none
    in Airflow's UI, the sweep DAG, and how often to reload."""
    return {"default_time_zone": default_time_zone(), "sweep_dag_id": SWEEP_DAG_ID,
            "refresh_seconds": REFRESH_SECONDS}


@router.get("/data-classes")
def data_classes(user: Reader) -> list[dict[str, str]]:
    with context() as ctx:
        return [{"name": name, "description": spec.description}
                for name, spec in sorted(ctx.ruleset.data_classes.data_classes.items())]


def staff_id(user: BaseUser) -> str:
    return f"api:{user.get_id()}"


@contextmanager
def open_ledger() -> Iterator[Ledger]:
    with Ledger.open(Settings.from_env().database_url) as ledger:
        yield ledger
