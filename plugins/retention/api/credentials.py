"""Staff routes that issue, list and revoke customer API credentials (``retention.api.customers`` checks them).

Issuing and revoking need ``Permission.CUSTOMER_CREDENTIALS`` and are recorded in the name of the signed-in
Airflow user (``staff_id``), never a name in the body; listing needs ``Permission.READ`` and shows no secret.
A credential is issued only for an account the registry knows. The token is in the issuing answer only
(``Cache-Control: no-store``); the ledger keeps its digest.
"""

from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi import Path as FastApiPath
from pydantic import BaseModel, Field

from retention.api.operators import json_body, open_ledger, requires, staff_id
from retention.ids import ACCOUNT_ID
from retention.permissions import Permission
from retention.registry import Registry, load_registry
from retention.rules import load_ruleset
from retention.settings import Settings

CREDENTIAL_ID = "^[0-9a-f]{32}$"
CredentialStaff = Annotated[BaseUser, requires(Permission.CUSTOMER_CREDENTIALS)]
Reader = Annotated[BaseUser, requires(Permission.READ)]


class IssueCredential(BaseModel):
    account_id: str = Field(pattern=ACCOUNT_ID, description="The account the credential acts for, and only it")


router = APIRouter(prefix="/customer-credentials")


@router.post("", status_code=201, dependencies=[Depends(json_body)])
def issue(body: IssueCredential, user: CredentialStaff, response: Response) -> dict[str, str]:
    """A new credential for one account: its token is in this answer and nowhere else."""
    if not account_registry(body.account_id).knows(body.account_id):
        raise HTTPException(422, f"account_id: no account {body.account_id!r} in the account registry")
    with open_ledger() as ledger:
        credential_id, token = ledger.issue_credential(body.account_id, issued_by=staff_id(user))
    response.headers["Cache-Control"] = "no-store"
    return {"credential_id": credential_id, "account_id": body.account_id, "token": token,
            "use": "send it as 'Authorization: Bearer <token>' to /retention/customer/v1; it is shown only once"}


@router.get("")
def listed(user: Reader, account_id: Annotated[str | None, Query(pattern=ACCOUNT_ID)] = None
           ) -> list[dict[str, str | None]]:
    """Credentials (of one account), newest first, revoked ones included; never a secret."""
    with open_ledger() as ledger:
        return [c.as_dict() for c in ledger.credentials(account_id)]


@router.post("/{credential_id}/revoke", dependencies=[Depends(json_body)])
def revoke(credential_id: Annotated[str, FastApiPath(pattern=CREDENTIAL_ID)],
           user: CredentialStaff) -> dict[str, str | None]:
    """Stop a credential at once: its next call answers 401."""
    with open_ledger() as ledger:
        try:
            return ledger.revoke_credential(credential_id, revoked_by=staff_id(user)).as_dict()
        except LookupError:
            raise HTTPException(404, "no such credential") from None
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None


def account_registry(account_id: str | None = None) -> Registry:
    """The account registry as runs read it (``RETENTION_ACCOUNTS_FILE`` or ``registry.yaml``'s source); with
    ``account_id``, that account's entry alone (``load_registry``'s)."""
    settings = Settings.from_env()
    try:
        return load_registry(settings, load_ruleset(settings.rules_dir), account_id)
    except Exception as exc:  # the application's database or endpoint: say which setting, not what it answered
        raise HTTPException(503, f"the account registry could not be read ({type(exc).__name__}); "
                                 "nothing was done") from None
