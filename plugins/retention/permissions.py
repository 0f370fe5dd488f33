"""Who among Airflow's users may do what with retention data, decided by Airflow's auth manager.

Each ``Permission`` is an Airflow custom view: an action (HTTP method) on a resource name of our own.
An auth manager with real permissions (FAB, Keycloak) answers ``is_authorized_custom_view`` for
exactly that pair, so production grants e.g. "Retention Hold Release" to the roles that may release.

Airflow's SimpleAuthManager (the development default) ignores the method and resource name there and
lets every Viewer through, which would let a read-only user release a legal hold. For its users the
product adds the minimal role each permission needs (``SIMPLE_MINIMAL_ROLE``), on top of the auth
manager's own answer. Releasing a hold removes protection from data that must be kept, so it needs a
higher role than placing one.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Literal

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager, SimpleAuthManagerRole
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

Method = Literal["GET", "POST"]  # the custom-view actions of ours, among Airflow's ResourceMethod


class Permission(enum.Enum):
    """value = (HTTP method for the custom view, Airflow custom-view resource name)."""

    _value_: tuple[Method, str]
    READ = ("GET", "Retention Data")  # forecast, holds, offboardings, certificates, data classes, the page
    PLACE_HOLD = ("POST", "Retention Holds")
    RELEASE_HOLD = ("POST", "Retention Hold Release")
    CERTIFICATES = ("POST", "Retention Certificates")  # issue, revoke, make customer links
    APPROVE_OFFBOARDING = ("POST", "Retention Offboarding Approval")
    CUSTOMER_CREDENTIALS = ("POST", "Retention Customer Credentials")  # issue and revoke customer API credentials

    @property
    def method(self) -> Method:
        return self.value[0]

    @property
    def resource_name(self) -> str:
        return self.value[1]


# SimpleAuthManager's roles are ordered viewer < user < op < admin; a user holds every permission whose
# minimal role is at or below theirs.
SIMPLE_MINIMAL_ROLE: dict[Permission, SimpleAuthManagerRole] = {
    Permission.READ: SimpleAuthManagerRole.VIEWER,
    Permission.PLACE_HOLD: SimpleAuthManagerRole.OP,
    Permission.CERTIFICATES: SimpleAuthManagerRole.OP,
    Permission.APPROVE_OFFBOARDING: SimpleAuthManagerRole.OP,
    Permission.RELEASE_HOLD: SimpleAuthManagerRole.ADMIN,
    # A credential is standing access to file erasure requests for every person of an account: more than a link.
    Permission.CUSTOMER_CREDENTIALS: SimpleAuthManagerRole.ADMIN,
}


def is_allowed(user: BaseUser | None, permission: Permission) -> bool:
    """Whether this Airflow user (as ``GetUserDep`` gives it) holds ``permission``."""
    if user is None:
        return False
    manager = _auth_manager()
    # Our minimal role first: SimpleAuthManager raises on a role it does not know instead of refusing.
    if isinstance(manager, SimpleAuthManager) and not _simple_role_reaches(user, SIMPLE_MINIMAL_ROLE[permission]):
        return False
    return manager.is_authorized_custom_view(method=permission.method, resource_name=permission.resource_name,
                                             user=user)


def user_for(user_id: str, user_name: str) -> BaseUser | None:
    """The Airflow user with this id and name (e.g. a HITL responder's ``{"id", "name"}``), so code outside
    a request can ask ``is_allowed``; None if the auth manager knows no such user."""
    manager = _auth_manager()
    user: BaseUser | None
    if isinstance(manager, SimpleAuthManager):
        user = _simple_user(manager, user_id)
    else:
        try:
            # FAB looks the id up in its user table; a manager that cannot rebuild a user from its id alone
            # (Keycloak needs the user's tokens) raises, and an unknown user is no one's permission.
            user = manager.deserialize_user({"sub": user_id})
        except Exception:
            return None
    if user is None or user.get_id() != user_id or user.get_name() != user_name:
        return None
    return user


def _simple_user(manager: SimpleAuthManager, user_id: str) -> SimpleAuthManagerUser | None:
    from airflow.configuration import conf

    if conf.getboolean("core", "simple_auth_manager_all_admins"):
        # Airflow itself then makes every request an admin's; a rebuilt user gets no less and no more.
        return SimpleAuthManagerUser(username=user_id, role=SimpleAuthManagerRole.ADMIN.name.lower())
    return next((u for u in manager.get_users() if u.get_id() == user_id), None)


def _simple_role_reaches(user: BaseUser, minimal: SimpleAuthManagerRole) -> bool:
    role = (getattr(user, "role", None) or "").upper()
    if role not in SimpleAuthManagerRole.__members__:
        return False
    # The roles are a namedtuple Enum, whose fields Airflow leaves untyped: each order is an int.
    held: int = SimpleAuthManagerRole[role].order
    needed: int = minimal.order
    return held >= needed


def _auth_manager() -> BaseAuthManager[BaseUser]:
    # The api-server has made it already; outside a request (a worker task) this makes the same singleton.
    from airflow.api_fastapi.app import create_auth_manager

    return create_auth_manager()
