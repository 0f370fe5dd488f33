"""The restore guard: after a database is restored from a backup, deletions the ledger recorded since the
backup was taken are applied again, so restored data does not come back to life.

A replay is a run of its own (kind ``replay``) whose tasks are the started destructive tasks of every
run active since the date (one that began before the backup may have deleted after it), with the same
selectors (account, anchor, cutoff) and actions: it deletes nothing the original runs did not, and a
legal hold in force now still stops it. Executed, verified and reported like a sweep.
"""

from __future__ import annotations

from datetime import datetime

import pendulum

from retention.engine.context import SweepContext
from retention.engine.executor import execute_location, selector_of
from retention.engine.report import Report, finish_sweep
from retention.engine.steplog import Progress, quietly
from retention.engine.verifier import reclaim, verify_location

# A subject request's erasures are not replayed from here: their tasks select by the person's identifiers, which
# are erased once the request closes (see retention.requests).
REPLAYED_KINDS = ("sweep", "offboarding")
DESTRUCTIVE = ("delete", "anonymize", "isolate")


def replay(ctx: SweepContext, since: datetime, *, actor: str, progress: Progress = quietly) -> Report:
    now = pendulum.now("UTC")
    done = [t for run in ctx.ledger.runs_since(since) if run.kind in REPLAYED_KINDS and not run.dry_run
            for t in ctx.ledger.tasks(run.id, statuses=("running", "done", "verified", "residue"))
            if t.action in DESTRUCTIVE]
    run_id = ctx.ledger.start_run("replay", dry_run=False, as_of=now, rules_digest=ctx.ruleset.digest, actor=actor)
    seen = set()
    with ctx.ledger.session() as s:
        for task in done:
            key = (task.location, task.account_id, task.action, task.anchor, task.cutoff)
            if key in seen or task.location not in ctx.inventory.locations:
                continue
            seen.add(key)
            held = ctx.ledger.holds_in_force(task.account_id, task.data_class)  # and again before every batch
            remaining = ctx.store(task.location).count(selector_of(task, ctx.ledger))
            ctx.ledger.add_planned_task(run_id, account_id=task.account_id, data_class=task.data_class,
                                        location=task.location, action=task.action, rule_id=task.rule_id,
                                        anchor=task.anchor, cutoff=task.cutoff, total_count=remaining,
                                        estimated_count=remaining,
                                        skip_reason=f"legal hold {', '.join(held)} in force" if held else None,
                                        session=s)
        ctx.ledger.append("run.planned", {"tasks": len(seen), "replays_since": since.isoformat()},
                          actor=actor, run_id=run_id, session=s)
    for location_id in progress(sorted({t.location for t in ctx.ledger.tasks(run_id)}), "re-deleting"):
        execute_location(ctx, run_id, location_id, actor=actor)
        verify_location(ctx, run_id, location_id, actor=actor)
    reclaim(ctx, run_id, actor=actor)
    return finish_sweep(ctx.ledger, run_id, actor=actor)
