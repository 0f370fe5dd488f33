"""Airflow's REST API v2 as an operator or a script uses it: each call as one SimpleAuthManager user, with the
JWT that user's password buys at POST /auth/token."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.airflow_stack import AirflowStack, login

FINISHED = {"success", "failed"}
RUN_TIMEOUT = 300.0  # seconds for a DAG run to finish


@dataclass
class AirflowApi:
    stack: AirflowStack
    _tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, user: str) -> dict[str, str]:
        if user not in self._tokens:
            self._tokens[user] = login(self.stack.url, user, self.stack.passwords[user])
        return {"Authorization": f"Bearer {self._tokens[user]}"}

    def call(self, method: str, path: str, user: str = "admin", **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.stack.url}/api/v2{path}", headers=self.headers(user), timeout=30,
                             **kwargs)

    def json(self, method: str, path: str, user: str = "admin", **kwargs: Any) -> Any:
        answer = self.call(method, path, user, **kwargs)
        if answer.is_error:
            raise AssertionError(f"{method} {path} as {user}: {answer.status_code} {answer.text}")
        return answer.json()

    # -- runs ---------------------------------------------------------------------------------------

    def trigger(self, dag_id: str, conf: dict[str, Any], user: str = "alice") -> str:
        """POST .../dagRuns with no logical date (a manual run): its run id."""
        run = self.json("POST", f"/dags/{dag_id}/dagRuns", user, json={"logical_date": None, "conf": conf})
        run_id: str = run["dag_run_id"]
        return run_id

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.json("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return run

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run, mapped ones one by one."""
        found: list[dict[str, Any]] = self.json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                                                params={"limit": 1000})["task_instances"]
        return found

    def states(self, dag_id: str, run_id: str) -> dict[tuple[str, int], str | None]:
        return {(ti["task_id"], ti["map_index"]): ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def wait_until_finished(self, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """The run once its state is success or failed; its task states and the processes' logs otherwise."""
        def finished() -> dict[str, Any] | None:
            run = self.run(dag_id, run_id)
            return run if run["state"] in FINISHED else None

        try:
            return self.stack.wait(f"{dag_id} {run_id} finished", finished, timeout, every=1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\ntask states: {self.states(dag_id, run_id)}") from None

    def wait_for_task(self, dag_id: str, run_id: str, state: str, task_prefix: str = "",
                      timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """The first task instance (whose id starts with ``task_prefix``) seen in ``state``."""
        def seen() -> dict[str, Any] | None:
            return next((ti for ti in self.task_instances(dag_id, run_id)
                         if ti["state"] == state and ti["task_id"].startswith(task_prefix)), None)

        try:
            return self.stack.wait(f"a task {task_prefix}* of {run_id} in state {state}", seen, timeout, every=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\ntask states: {self.states(dag_id, run_id)}") from None

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        entry = self.json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                          params={"map_index": map_index, "deserialize": True})
        return entry["value"]

    # -- human in the loop ----------------------------------------------------------------------------

    def wait_until_paused(self, dag_id: str, run_id: str, task_id: str, timeout: float = RUN_TIMEOUT) -> None:
        """Once a task awaits input, until the scheduler has taken the exit of the process that paused it. An
        answer before that races Airflow 3.3.2's scheduler: it reschedules the task on the answer, then reads the
        pausing process's success for a task now queued and fails it ("finished with state success, but the task
        instance's state attribute is queued"; seen once in CI)."""
        key = f"TaskInstanceKey(dag_id='{dag_id}', task_id='{task_id}', run_id='{run_id}', try_number="
        log = self.stack.home / "scheduler.log"

        def taken() -> bool:
            return any("Received executor event" in line and key in line
                       for line in log.read_text(errors="replace").splitlines())

        self.stack.wait(f"the scheduler to take the pause of {task_id} in {run_id}", taken, timeout)

    def answer(self, dag_id: str, run_id: str, task_id: str, chosen: list[str], params: dict[str, Any],
               user: str, map_index: int = -1) -> httpx.Response:
        """PATCH the task's hitlDetails as ``user``: the answer its Required Actions form would send."""
        return self.call("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails",
                         user, json={"chosen_options": chosen, "params_input": params})

    # -- pools ----------------------------------------------------------------------------------------

    def pool_slots(self, name: str) -> int:
        slots: int = self.json("GET", f"/pools/{name}")["slots"]
        return slots

    def set_pool_slots(self, name: str, slots: int) -> None:
        """PATCH the pool's slots (Airflow's body needs the pool's name and include_deferred as well)."""
        pool = self.json("GET", f"/pools/{name}")
        self.json("PATCH", f"/pools/{name}", params={"update_mask": "slots"},
                  json={"name": name, "slots": slots, "include_deferred": pool["include_deferred"]})
