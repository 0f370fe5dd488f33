"""What a run deleted, what it kept and why — read back from the ledger, never from memory."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from retention.engine.planner import MassDeletion
from retention.engine.steplog import log_step
from retention.ledger import Ledger
from retention.ledger.models import PlannedTask
from retention.registry import summary_text

UNFINISHED = ("planned", "running", "done")  # "done": executed, not yet verified


@dataclass(frozen=True)
class Line:
    location: str
    account_id: str
    data_class: str
    rule_id: str
    action: str
    status: str
    affected: int
    kept: int
    why_kept: str
    exceptions: list[dict[str, Any]]


@dataclass(frozen=True)
class Report:
    run_id: str
    dry_run: bool
    status: str
    lines: list[Line]
    # Locations where the plan would have made more than the threshold's share due at once, as the plan
    # recorded them (counts; acknowledged or refused), and the threshold it applied.
    mass_deletions: tuple[dict[str, Any], ...] = ()
    mass_deletion_share: float | None = None
    # The run's ``registry.snapshot``: which registry it acted on, and the rows refused (ids and reason codes).
    registry: dict[str, Any] | None = None

    @property
    def refused(self) -> list[dict[str, Any]]:
        """Locations the run deleted nothing of because nobody acknowledged a mass deletion there."""
        return [m for m in self.mass_deletions if not m["acknowledged"]]

    @property
    def deleted(self) -> int:
        return sum(line.affected for line in self.lines if line.action == "delete")

    @property
    def anonymized(self) -> int:
        return sum(line.affected for line in self.lines if line.action == "anonymize")

    @property
    def isolated(self) -> int:
        """Records moved to an isolated table, kept under law (termination offboarding)."""
        return sum(line.affected for line in self.lines if line.action == "isolate")

    @property
    def kept(self) -> int:
        return sum(line.kept for line in self.lines)

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "dry_run": self.dry_run, "status": self.status, "deleted": self.deleted,
                "anonymized": self.anonymized, "isolated": self.isolated, "kept": self.kept,
                "mass_deletion": [{**m, "sentence": self.mass_deletion_text(m)} for m in self.mass_deletions],
                "registry": self.registry, "lines": [asdict(line) for line in self.lines]}

    def mass_deletion_text(self, found: dict[str, Any]) -> str:
        return MassDeletion(**found).outcome(self.mass_deletion_share or 0, self.dry_run)


def build_report(ledger: Ledger, run_id: str, location: str | None = None) -> Report:
    """The run's report (of one location, if given)."""
    run = ledger.get_run(run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r} in the ledger")
    tasks = ledger.tasks(run_id, location=location)
    lines = [_line(task, run.dry_run) for task in tasks]
    planned = ledger.run_events(run_id, "run.planned")
    plan = planned[-1].payload if planned else {}
    mass = tuple(m for m in plan.get("mass_deletion", ()) if location in (None, m["location"]))
    share = float(plan["mass_deletion_policy"]["share"]) if "mass_deletion_policy" in plan else None
    snapshots = ledger.run_events(run_id, "registry.snapshot")
    registry = snapshots[-1].payload if snapshots else None
    return Report(run_id, run.dry_run, _status(tasks, run.dry_run, mass), lines, mass, share, registry)


def location_summary(ledger: Ledger, run_id: str, location_id: str) -> dict[str, Any]:
    """One location's counts in a run (ids and counts only): what Airflow shows for its mapped task."""
    part = build_report(ledger, run_id, location_id)
    return {"location": location_id, "accounts": len(part.lines), "deleted": part.deleted,
            "anonymized": part.anonymized, "isolated": part.isolated, "kept": part.kept,
            "tasks": dict(sorted(Counter(line.status for line in part.lines).items()))}


def finish_sweep(ledger: Ledger, run_id: str, *, actor: str) -> Report:
    """Record the run's totals in the chain and close it: failed if anything is unfinished or unexplained."""
    report = build_report(ledger, run_id)
    totals = {"deleted": report.deleted, "anonymized": report.anonymized, "isolated": report.isolated,
              "kept": report.kept,
              "exceptions": sum(e["count"] for line in report.lines for e in line.exceptions),
              "tasks": len(report.lines), "mass_deletion_refused": len(report.refused), "status": report.status}
    ledger.append("run.totals", totals, actor=actor, run_id=run_id)
    ledger.finish_run(run_id, report.status, actor=actor)
    log_step("run.finished", run_id=run_id, **totals)
    return report


def _status(tasks: list[PlannedTask], dry_run: bool, mass_deletions: tuple[dict[str, Any], ...] = ()) -> str:
    if dry_run:
        return "succeeded"
    bad = [t for t in tasks if t.status in UNFINISHED or t.status == "residue"]
    # A refused mass deletion left data the rules say is due: the run did not do its job, and on-call must
    # see it (a person decides whether the rule change was meant), so the run fails.
    refused = [m for m in mass_deletions if not m["acknowledged"]]
    return "failed" if bad or refused else "succeeded"


def _line(task: PlannedTask, dry_run: bool) -> Line:
    affected = task.estimated_count if dry_run else task.affected_count
    total = task.total_count or 0
    return Line(task.location, task.account_id, task.data_class, task.rule_id, task.action, task.status,
                affected or 0, max(0, total - (affected or 0)), _why_kept(task, dry_run), task.retained or [])


def _why_kept(task: PlannedTask, dry_run: bool) -> str:
    if task.skip_reason:
        return task.skip_reason
    if task.status == "held":
        return "legal hold placed during the run"
    if task.retained:
        return "; ".join(f"{r['count']} under {r['reason']}"
                         + (f" until {r['retain_until']}" if r["retain_until"] else "")
                         for r in task.retained)
    if task.cutoff is not None:
        return f"{task.anchor} after {task.cutoff.strftime('%Y-%m-%d %H:%M')} UTC: not yet due ({task.rule_id})"
    return "" if not dry_run else "dry run: nothing deleted"


def render(report: Report) -> str:
    """The report as a person reads it: per location and account, what went, what stayed and why."""
    verb = "would delete" if report.dry_run else "deleted"
    header = f"{'location':20} {'account':10} {'action':9} {'affected':>12} {'kept':>8}  why kept"
    rows = [f"{ln.location:20} {ln.account_id:10} {ln.action:9} {ln.affected:>12,} {ln.kept:>8,}  {ln.why_kept}"
            for ln in report.lines]
    totals = (f"{'dry run: ' if report.dry_run else ''}{report.deleted:,} record(s) {verb}, "
              f"{report.anonymized:,} anonymized, {report.isolated:,} isolated under law, {report.kept:,} kept; "
              f"run {report.run_id} {report.status}")
    mass = [f"mass deletion at {report.mass_deletion_text(m)}" for m in report.mass_deletions]
    registry = [summary_text(report.registry)] if report.registry is not None else []
    return "\n".join([*registry, header, *rows, *([""] + mass if mass else []), "", totals])
