"""The two people `make demo` plays while Airflow's ``dag.test()`` runs an offboarding in the main thread: the
second staff member who approves it in Required Actions, and the customer who downloads its return package,
checks every file and confirms receipt. Each acts through the function its real route calls (Airflow's HITL
route; the receipt link's route), from a thread ``retention.demo`` starts.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyrage.x25519 import Identity

POLL_SECONDS = 0.5  # how often the people look at Airflow's database; bounded by each one's deadline


def approve(dag_id: str, task_id: str, user_name: str, timeout: float = 300) -> None:
    """Answer the approval as a second Airflow user, through the function Airflow's HITL REST route calls."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    approver = SimpleAuthManagerUser(username=user_name, role="op")  # as its JWT would give it
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        try:
            with create_session() as session:
                ti = session.query(TaskInstance).filter_by(dag_id=dag_id, task_id=task_id,
                                                           state=TaskInstanceState.AWAITING_INPUT).first()
                if ti is not None:
                    update_hitl_detail(dag_id=dag_id, dag_run_id=ti.run_id, task_id=task_id, map_index=-1,
                                       update_hitl_detail_payload=UpdateHITLDetailPayload(
                                           chosen_options=["Approve"], params_input={"reason": "contract ended"}),
                                       user=approver, session=session)
                    return
        except Exception:  # SQLite busy while the DAG run writes: try again
            continue


def confirm_return(identity: Identity) -> None:
    """The customer, elsewhere: downloads the package from the link it was sent, decrypts it, checks every
    file against the manifest and confirms receipt (what its receipt link's route records). Raises when any
    of that fails."""

    from retention.ledger import Ledger
    from retention.offboarding.returns import record_receipt

    delivered = returned_value("termination_offboarding", "deliver_return")
    files = open_package(delivered["url"], identity)
    mismatched = not_matching(files)
    if mismatched:
        raise ValueError(f"a file of the package does not match its manifest: {mismatched[0]}")
    with Ledger.open() as ledger:
        record_receipt(ledger, delivered["package_id"], hashlib.sha256(files["manifest.json"]).hexdigest(),
                       actor="customer-link", account_id=delivered["account_id"])


def open_package(url: str, identity: Identity) -> dict[str, bytes]:
    """What the customer does with a package's link: download it, decrypt it with its key, and read every file
    (path inside the package -> content)."""
    import pyrage

    with urllib.request.urlopen(url) as response:
        package = pyrage.decrypt(response.read(), [identity])
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(package)) as tar:
        for member in tar.getmembers():
            content = tar.extractfile(member) if member.isfile() else None
            if content is not None:
                files[member.name.split("/", 1)[1]] = content.read()
    return files


def not_matching(files: dict[str, bytes]) -> list[str]:
    """The files ``manifest.json`` lists whose sha256 differs from the manifest's (or which are missing)."""
    listed = json.loads(files["manifest.json"])["files"]
    return [f["path"] for f in listed
            if f["path"] not in files or hashlib.sha256(files[f["path"]]).hexdigest() != f["sha256"]]


def returned_value(dag_id: str, task_id: str, timeout: float = 300) -> dict[str, Any]:
    """What ``task_id`` returned in the DAG run in progress (polled: dag.test() runs in the main thread)."""
    import sqlalchemy as sa
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = sa.select(XComModel.value).where(XComModel.dag_id == dag_id, XComModel.task_id == task_id,
                                             XComModel.key == "return_value").order_by(XComModel.timestamp.desc())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        try:
            with create_session() as session:
                row = session.execute(query).first()
        except sa.exc.OperationalError:  # SQLite busy while the DAG run writes: try again
            continue
        value: dict[str, Any] | None = XComModel.deserialize_value(row) if row is not None else None
        if value:
            return value
    raise TimeoutError(f"{dag_id}.{task_id} returned nothing in {timeout} s")
