"""Who may do what, in Airflow's real api-server app: every staff route of the retention API declares a
permission, read from the app's own route table (a new route without one fails here); a Viewer or a
``user`` reads but writes nothing (nor previews a release); an ``op`` places a hold but only an admin releases
it or previews what releasing it would delete; every state-changing route refuses a form-encoded body. Under
SimpleAuthManager the decision is the product's minimal role per permission; under any other auth manager it is
that manager's answer for the permission's custom view."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount

from retention.ledger import Ledger
from retention.permissions import Permission, is_allowed, user_for
from retention.settings import Settings
from tests.fixtures.api import bearer

ACCOUNT = "acct_1001"
# Customers hold a signed link or a customer credential, not an Airflow login; the JWKS is public. Nothing else is.
TOKEN_OR_PUBLIC = {("GET", "/retention/.well-known/jwks.json"),
                   ("GET", "/retention/certificates/{certificate_id}/download"),
                   ("POST", "/retention/returns/{package_id}/receipt"),
                   # The customer API: a customer credential's bearer token (tests/integration/test_customer_api.py).
                   ("POST", "/retention/customer/v1/requests"), ("GET", "/retention/customer/v1/requests"),
                   ("GET", "/retention/customer/v1/requests/{request_id}"),
                   ("GET", "/retention/customer/v1/certificates"),
                   ("GET", "/retention/customer/v1/certificates/{certificate_id}.{fmt}"),
                   ("POST", "/retention/customer/v1/certificates/{certificate_id}/link")}
READ_METHODS = {"GET", "HEAD"}
# Reads that show what a write would do, for the people who may do it: they need the write's permission.
PREVIEWS = {("GET", "/retention/holds/{hold_id}/release-preview"): Permission.RELEASE_HOLD}


def retention_routes(app) -> Iterator[tuple[str, str, APIRoute]]:
    """(method, full path, route) for every route the plugin mounted under /retention."""
    def walk(routes, prefix: str) -> Iterator[tuple[str, str, APIRoute]]:
        for route in routes:
            if isinstance(route, Mount):
                yield from walk(route.routes, prefix + route.path)
            elif isinstance(route, APIRoute):
                for method in sorted(route.methods):
                    yield method, prefix + route.path, route

    return ((m, p, r) for m, p, r in walk(app.routes, "") if p.startswith("/retention/"))


def permissions_of(dependant) -> list[Permission]:
    found = []
    for sub in dependant.dependencies:
        if isinstance(getattr(sub.call, "permission", None), Permission):
            found.append(sub.call.permission)
        found += permissions_of(sub)
    return found


def write_routes(app) -> list[tuple[str, str, Permission | None]]:
    """(method, path, the permission it declares or None) for every staff route that changes state."""
    return [(method, path, next(iter(permissions_of(route.dependant)), None))
            for method, path, route in retention_routes(app)
            if method not in READ_METHODS and (method, path) not in TOKEN_OR_PUBLIC]


def events() -> int:
    with Ledger.open(Settings.from_env().database_url) as ledger:
        return len(list(ledger.events()))


@pytest.fixture
def held_and_issued(api) -> dict:
    """A hold in force and a certificate in issue, made by an admin: what a lesser user would try to undo."""
    hold = api.post("/retention/holds", headers=api.staff,
                    json={"account_id": ACCOUNT, "reason": "litigation", "reference": "LEGAL-14"})
    certificate = api.post("/retention/certificates", headers=api.staff, json={
        "run_id": api.run_id, "account_id": ACCOUNT, "exporter": "Acme Ltd", "importer": "Service Inc."})
    assert hold.status_code == 201 and certificate.status_code == 201, (hold.text, certificate.text)
    return {"hold_id": hold.json()["id"], "certificate_id": certificate.json()["certificate_id"]}


def valid_body(path: str, run_id: str) -> dict:
    """A body each known write route would accept, so a refusal is the permission's doing; a route added
    later gets ``{}``, still refused by its permission before the body is read."""
    return {"/retention/holds": {"account_id": ACCOUNT, "reason": "no longer needed", "reference": "T-9"},
            "/retention/holds/{hold_id}/release": {"reason": "matter closed"},
            "/retention/certificates": {"run_id": run_id, "account_id": ACCOUNT, "exporter": "Acme Ltd",
                                        "importer": "Service Inc."},
            "/retention/certificates/{certificate_id}/revoke": {"reason": "reissued after a correction"},
            "/retention/certificates/{certificate_id}/links": {"hours": 720}}.get(path, {})


def refusal(permission: Permission) -> str:
    """The 403's message: the missing permission, never the user's role."""
    return f"missing permission: {permission.name} ({permission.method} on {permission.resource_name!r})"


def filled(path: str, ids: dict) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: ids.get(m.group(1), "x"), path)


def test_every_staff_route_declares_one_permission_and_writes_need_more_than_read(api) -> None:
    routes = list(retention_routes(api.app))
    assert {(m, p) for m, p, _ in routes} >= TOKEN_OR_PUBLIC  # the table is the real one
    for method, path, route in routes:
        permissions = permissions_of(route.dependant)
        if (method, path) in TOKEN_OR_PUBLIC:
            assert permissions == [], path
        else:
            assert len(permissions) == 1, f"{method} {path} declares {permissions}: give it requires(Permission.X)"
            if (method, path) in PREVIEWS:
                assert permissions == [PREVIEWS[method, path]], f"{method} {path}"
            else:
                assert (permissions[0] == Permission.READ) == (method in READ_METHODS), f"{method} {path}"
    assert {p for _, _, p in write_routes(api.app)} >= {
        Permission.PLACE_HOLD, Permission.RELEASE_HOLD, Permission.CERTIFICATES}


@pytest.mark.parametrize("role", ["viewer", "user"])
def test_a_reader_is_refused_every_write_and_nothing_reaches_the_ledger(api, held_and_issued, role) -> None:
    reader = bearer("reader-1", role)
    before = events()
    for method, path, permission in write_routes(api.app):
        answer = api.request(method, filled(path, held_and_issued), headers=reader,
                             json=valid_body(path, api.run_id))
        assert answer.status_code == 403, (path, answer.text)
        assert permission is not None and answer.json() == {"detail": refusal(permission)}
    for (method, path), permission in PREVIEWS.items():
        answer = api.request(method, filled(path, held_and_issued), headers=reader)
        assert (answer.status_code, answer.json()) == (403, {"detail": refusal(permission)}), path
    assert events() == before
    (hold,) = api.get("/retention/holds", headers=reader).json()
    assert hold["id"] == held_and_issued["hold_id"] and hold["released_at"] is None
    (certificate,) = api.get("/retention/certificates", headers=reader).json()
    assert not certificate["revoked"]


def test_a_viewer_reads_every_staff_view(api) -> None:
    viewer = bearer("auditor-2", "viewer")
    reads = [path for method, path, _ in retention_routes(api.app)
             if method == "GET" and (method, path) not in TOKEN_OR_PUBLIC | PREVIEWS.keys()]
    assert {"/retention/holds", "/retention/forecast", "/retention/accounts", "/retention/page-settings"} <= set(reads)
    for path in reads:
        answer = api.get(filled(path, {"name": ""}), headers=viewer)
        assert answer.status_code == 200, (path, answer.text)


def test_an_op_places_a_hold_but_only_an_admin_releases_it(api) -> None:
    op = bearer("legal-ops-3", "op")
    placed = api.post("/retention/holds", headers=op,
                      json={"account_id": ACCOUNT, "reason": "litigation", "reference": "LEGAL-15"})
    assert placed.status_code == 201, placed.text
    release = f"/retention/holds/{placed.json()['id']}/release"
    before = events()
    refused = api.post(release, headers=op, json={"reason": "matter closed"})
    assert (refused.status_code, refused.json()) == (403, {"detail": refusal(Permission.RELEASE_HOLD)})
    assert events() == before
    preview = api.get(f"/retention/holds/{placed.json()['id']}/release-preview", headers=op)
    assert (preview.status_code, preview.json()) == (403, {"detail": refusal(Permission.RELEASE_HOLD)})
    assert api.post(release, headers=bearer("dpo-7", "admin"), json={"reason": "matter closed"}).status_code == 200
    with Ledger.open(Settings.from_env().database_url) as ledger:
        (hold,) = ledger.list_holds(include_released=True)
    assert (hold.placed_by, hold.released_by) == ("api:legal-ops-3", "api:dpo-7")


def test_every_state_changing_route_refuses_a_form_encoded_body(api, held_and_issued) -> None:
    before = events()
    changing = [(m, p) for m, p, _ in retention_routes(api.app) if m not in READ_METHODS]
    assert ("POST", "/retention/returns/{package_id}/receipt") in changing
    for method, path in changing:
        form = {k: str(v) for k, v in valid_body(path, api.run_id).items()} or {"reason": "matter closed"}
        answer = api.request(method, filled(path, held_and_issued), headers=api.staff, data=form)
        assert answer.status_code == 415, (path, answer.text)
    assert events() == before


# Under SimpleAuthManager, the whole role x permission table (written out, not read from the product).
SIMPLE_TABLE = {
    "viewer": {Permission.READ},
    "user": {Permission.READ},
    "op": {Permission.READ, Permission.PLACE_HOLD, Permission.CERTIFICATES, Permission.APPROVE_OFFBOARDING},
    "admin": set(Permission),
}


@pytest.mark.parametrize("permission", list(Permission), ids=lambda p: p.name)
@pytest.mark.parametrize("role", [*SIMPLE_TABLE, None, "superuser"])
def test_simple_auth_managers_roles_hold_their_permissions(role, permission) -> None:
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    assert isinstance(create_auth_manager(), SimpleAuthManager)  # the real one decides
    user = SimpleAuthManagerUser(username="someone", role=role)
    assert is_allowed(user, permission) == (permission in SIMPLE_TABLE.get(role, set()))


def test_a_configured_simple_user_is_rebuilt_with_their_role(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "alice:op,bob:admin")
    alice = user_for("alice", "alice")
    assert is_allowed(alice, Permission.APPROVE_OFFBOARDING) and not is_allowed(alice, Permission.RELEASE_HOLD)
    assert is_allowed(user_for("bob", "bob"), Permission.RELEASE_HOLD)
    assert user_for("mallory", "mallory") is None and user_for("alice", "bob") is None
    assert not is_allowed(None, Permission.READ)


@pytest.fixture
def custom_view_manager(monkeypatch):
    """Airflow configured with an auth manager that has real per-view permissions (as FAB or Keycloak):
    a small BaseAuthManager that grants only what it was told and records what it was asked."""
    from airflow.api_fastapi.app import _AuthManagerState

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", f"{__name__}.GrantsAuthManager")
    monkeypatch.setattr(_AuthManagerState, "instance", None)  # restored after the test
    GrantsAuthManager.asked.clear()
    return GrantsAuthManager


def test_another_auth_manager_decides_by_the_permissions_custom_view(custom_view_manager) -> None:
    granted = user_for("7", "Legal Ops")
    assert granted is not None and user_for("8", "Nobody") is None and user_for("7", "Someone Else") is None
    assert is_allowed(granted, Permission.PLACE_HOLD) and not is_allowed(granted, Permission.RELEASE_HOLD)
    assert custom_view_manager.asked == [("7", "POST", "Retention Holds"), ("7", "POST", "Retention Hold Release")]
    assert {p.resource_name for p in Permission} == {"Retention Data", "Retention Holds", "Retention Hold Release",
                                                      "Retention Certificates", "Retention Offboarding Approval",
                                                      "Retention Customer Credentials"}


def _grants_auth_manager():
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

    class GrantedUser(BaseUser):
        def __init__(self, user_id: str, name: str) -> None:
            self.user_id, self.name = user_id, name

        def get_id(self) -> str:
            return self.user_id

        def get_name(self) -> str:
            return self.name

    class GrantsAuthManager(BaseAuthManager):
        users = {"7": "Legal Ops"}
        grants = {("7", "POST", "Retention Holds")}
        asked: list = []

        def deserialize_user(self, token):
            return GrantedUser(token["sub"], self.users[token["sub"]])  # KeyError for an unknown user

        def is_authorized_custom_view(self, *, method, resource_name, user) -> bool:
            self.asked.append((user.get_id(), method, resource_name))
            return (user.get_id(), method, resource_name) in self.grants

        def serialize_user(self, user):
            return {"sub": user.get_id()}

        def get_url_login(self, **kwargs) -> str:
            return "/login"

        def filter_authorized_menu_items(self, menu_items, *, user):
            return []

        def _nothing(self, **kwargs) -> bool:
            return False

        is_authorized_configuration = is_authorized_connection = is_authorized_dag = _nothing
        is_authorized_asset = is_authorized_asset_alias = is_authorized_pool = _nothing
        is_authorized_variable = is_authorized_view = _nothing

    return GrantsAuthManager


GrantsAuthManager = _grants_auth_manager()
