"""Plan -> execute -> verify -> report. DAG tasks and the CLI call these functions and nothing else."""

from __future__ import annotations

import pendulum

from retention.engine.context import SweepContext
from retention.engine.executor import execute_location
from retention.engine.planner import Plan, plan_sweep
from retention.engine.report import Report, build_report, finish_sweep
from retention.engine.steplog import Progress, quietly
from retention.engine.verifier import reclaim, verify_location

__all__ = ["Plan", "Report", "SweepContext", "build_report", "execute_location", "finish_sweep", "plan_sweep",
           "sweep", "verify_location"]


def sweep(ctx: SweepContext, at: pendulum.DateTime, *, dry_run: bool, actor: str, run_id: str | None = None,
          progress: Progress = quietly, acknowledged: tuple[str, ...] = ()) -> Report:
    """The whole sweep in one process (the CLI); ``run_id`` resumes an interrupted run instead of planning;
    ``acknowledged``: locations the run may delete a large share of."""
    if run_id is None:
        plan = plan_sweep(ctx, at, dry_run=dry_run, actor=actor, acknowledged=acknowledged)
        run_id, locations = plan.run_id, [loc for ids in plan.locations.values() for loc in ids]
    else:
        run = ctx.ledger.get_run(run_id)
        if run is None:
            raise LookupError(f"no run {run_id!r} in the ledger")
        if run.status != "running":  # finished: nothing to resume, nothing to record again
            return build_report(ctx.ledger, run_id)
        locations = sorted({task.location for task in ctx.ledger.tasks(run_id)})
    for location_id in progress(locations, "deleting"):
        execute_location(ctx, run_id, location_id, actor=actor)
    for location_id in progress(locations, "verifying"):
        verify_location(ctx, run_id, location_id, actor=actor)
    reclaim(ctx, run_id, actor=actor)
    return finish_sweep(ctx.ledger, run_id, actor=actor)
