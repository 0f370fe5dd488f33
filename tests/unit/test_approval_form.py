"""The four-eyes approval form: a form that does not say what records its answer is refused where the DAG is
parsed, not when a person has answered it (an answer nothing records would fail the task with nothing ledgered)."""

from __future__ import annotations

import pytest

from retention.dagkit.approval import FourEyesApproval, LedgeredApproval


def test_the_form_itself_is_refused_and_a_form_that_records_its_answer_is_built() -> None:
    with pytest.raises(TypeError, match="must say what records its answer"):
        LedgeredApproval(task_id="approve", subject="Approve?", actor="dag-test")
    form = FourEyesApproval(task_id="approve", subject="Approve?", actor="dag-test", run_id="run-1")
    assert (form.run_id, form.actor, list(form.params)) == ("run-1", "dag-test", ["reason"])
