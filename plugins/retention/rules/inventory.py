"""``systems.yaml``: where each data class lives (SQL tables, S3 prefixes), validated like the rules.

Kept apart from the rules on purpose (what data lives where vs what to do with it): a new table is a
diff here, a new retention period a diff in rules.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from retention.rules.errors import Issue, RulesError
from retention.rules.loader import RuleSet, load_model
from retention.rules.model import Identifier, Strict, Text
from retention.rules.yamlsource import SourceMap

SqlName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$", max_length=128)]
RecordAnchor = Literal["created_at", "last_activity_at"]
# A destructive SQL transaction waits at most this long for an application's row lock, and runs no
# statement longer than this (SqlLocation.lock_timeout_ms / statement_timeout_ms override them).
DEFAULT_LOCK_TIMEOUT_MS = 2_000
DEFAULT_STATEMENT_TIMEOUT_MS = 30_000


class ChildTable(Strict):
    """A table whose rows reference the location's rows and must go first (foreign keys)."""

    table: SqlName
    foreign_key: SqlName  # column in the child pointing at the parent's key
    key_column: SqlName = "id"


class Anonymize(Strict):
    set_null: list[SqlName] = Field(default_factory=list)  # set to NULL
    hash: list[SqlName] = Field(default_factory=list)  # replaced by a salted hash (the salt is discarded)

    @model_validator(mode="after")
    def _not_empty(self) -> "Anonymize":
        if not self.set_null and not self.hash:
            raise ValueError("name at least one column under set_null or hash")
        return self


class SqlLocation(Strict):
    kind: Literal["sql"]
    data_class: Identifier
    conn_id: Identifier  # an Airflow Connection (AIRFLOW_CONN_<ID> in the embedded stack)
    table: SqlName
    account_column: SqlName
    key_column: SqlName = "id"  # ascending unique key: the keyset cursor
    timestamps: dict[RecordAnchor, SqlName] = Field(min_length=1)  # rule anchor -> column
    children: list[ChildTable] = Field(default_factory=list)
    anonymize: Anonymize | None = None
    # retain_isolated: at termination the account's rows move to this table, which application roles
    # cannot read (DPA 7(b)); the sweep deletes them there when their statutory period ends.
    isolate_to: SqlName | None = None
    # Bounds of each destructive transaction (PostgreSQL SET LOCAL). lock_timeout: how long a batch may
    # wait for a row lock the application holds before it rolls back, backs off and retries (waiting
    # longer would hold the batch's other row locks and stall the application). statement_timeout: how
    # long one statement may run. None: DEFAULT_LOCK_TIMEOUT_MS / DEFAULT_STATEMENT_TIMEOUT_MS.
    lock_timeout_ms: Annotated[int, Field(ge=1, le=60_000)] | None = None
    statement_timeout_ms: Annotated[int, Field(ge=1, le=3_600_000)] | None = None

    @model_validator(mode="after")
    def _lock_wait_within_a_statement(self) -> "SqlLocation":
        lock = self.lock_timeout_ms or DEFAULT_LOCK_TIMEOUT_MS
        statement = self.statement_timeout_ms or DEFAULT_STATEMENT_TIMEOUT_MS
        if lock >= statement:
            raise ValueError(f"lock_timeout_ms ({lock}) must be shorter than statement_timeout_ms ({statement}): "
                             "a lock wait is part of a statement")
        return self

    @model_validator(mode="after")
    def _isolation_moves_whole_rows(self) -> "SqlLocation":
        if self.isolate_to is not None and self.children:
            raise ValueError("isolate_to moves rows of a table without children; give each table its own location")
        if self.isolate_to == self.table:
            raise ValueError("isolate_to must name another table than the location's own")
        return self

    def isolated(self) -> "SqlLocation":
        """The isolated copy as a location of its own, so the sweep applies the same rule to it."""
        return self.model_copy(update={"table": self.isolate_to, "isolate_to": None})


class KeySegmentTime(Strict):
    key_segment: int = Field(ge=0)  # index after splitting the key on "/"
    format: Text  # strptime format, read as UTC


class S3Location(Strict):
    kind: Literal["s3"]
    data_class: Identifier
    conn_id: Identifier
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    key_template: Annotated[str, Field(pattern=r"^[^{}]*\{account_id\}[^{}]*/$")]  # a prefix ending in "/"
    timestamp: Literal["last_modified"] | KeySegmentTime = "last_modified"
    versioned: bool = False

    def prefix(self, account_id: str) -> str:
        return self.key_template.format(account_id=account_id)


Location = Annotated[SqlLocation | S3Location, Field(discriminator="kind")]


class SystemsFile(Strict):
    locations: dict[Identifier, Location] = Field(min_length=1)
    not_stored: dict[Identifier, Text] = Field(default_factory=dict)  # data class -> why it has no location


ISOLATED_SUFFIX = "_isolated"


def load_inventory(path: Path | str, ruleset: RuleSet) -> SystemsFile:
    """The inventory, with each ``isolate_to`` table added as the location ``<id>_isolated``."""
    systems, smap = load_model(Path(path), SystemsFile)
    issues = _cross_check(systems, smap, ruleset)
    if issues:
        raise RulesError(issues)
    isolated = {f"{name}{ISOLATED_SUFFIX}": loc.isolated() for name, loc in systems.locations.items()
                if isinstance(loc, SqlLocation) and loc.isolate_to}
    return systems.model_copy(update={"locations": {**systems.locations, **isolated}})


def _cross_check(systems: SystemsFile, smap: SourceMap, ruleset: RuleSet) -> list[Issue]:
    classes = ruleset.data_classes.data_classes
    issues = []
    for name, location in systems.locations.items():
        at = ("locations", name)
        if location.data_class not in classes:
            issues.append(smap.issue(at + ("data_class",), f"unknown data class {location.data_class!r}",
                                     f"known: {', '.join(sorted(classes))}"))
            continue
        if isinstance(location, SqlLocation):
            issues += _check_sql_anchors(location, at, smap, ruleset)
        else:
            issues += _check_s3_rules(location, at, smap, ruleset)
        if f"{name}{ISOLATED_SUFFIX}" in systems.locations:
            issues.append(smap.issue(at, f"the id {name}{ISOLATED_SUFFIX} is reserved for {name}'s isolate_to table",
                                     "rename the location", at_key=True))
    for name in systems.not_stored:
        if name not in classes:
            issues.append(smap.issue(("not_stored", name), f"unknown data class {name!r}", at_key=True))
    located = {loc.data_class for loc in systems.locations.values()}
    for name, spec in classes.items():
        if spec.personal_data and name not in located and name not in systems.not_stored:
            issues.append(smap.issue(("locations",), f"personal data class {name!r} has no location",
                                     f"add a location for it, or list it under not_stored: with the reason",
                                     at_key=True, field_path="locations"))
    return issues


def _check_s3_rules(location: S3Location, at: tuple, smap: SourceMap, ruleset: RuleSet) -> list[Issue]:
    """An object has one time (its creation) and cannot be anonymized in place."""
    issues = []
    for rule in (r for r in ruleset.rules if r.data_class == location.data_class):
        if rule.anchor.value == "last_activity_at":
            issues.append(smap.issue(at + ("data_class",), f"rule {rule.id!r} anchors on last_activity_at, "
                                     "which objects do not record", "anchor the rule on created_at, or keep this data in SQL"))
        if rule.action.value == "anonymize":
            issues.append(smap.issue(at + ("data_class",), f"rule {rule.id!r} anonymizes, which objects cannot be",
                                     "use delete for data kept in object storage"))
        if rule.action.value == "retain_isolated":
            issues.append(smap.issue(at + ("data_class",), f"rule {rule.id!r} keeps data isolated, which this "
                                     "product does for SQL tables only", "keep this data class in SQL"))
    return issues


def _check_sql_anchors(location: SqlLocation, at: tuple, smap: SourceMap, ruleset: RuleSet) -> list[Issue]:
    """Every record anchor a rule of this data class uses needs a column, and anonymize needs columns."""
    issues = []
    rules = [r for r in ruleset.rules if r.data_class == location.data_class]
    for anchor in sorted({r.anchor.value for r in rules if not r.anchor.is_account_event}):
        if anchor not in location.timestamps:
            issues.append(smap.issue(at + ("timestamps",), f"rules anchor {location.data_class} on {anchor!r} "
                                     "but this table maps no column to it", f"add '{anchor}: <column>' under timestamps"))
    if any(r.action.value == "retain_isolated" for r in rules) and location.isolate_to is None:
        issues.append(smap.issue(at, f"a rule keeps {location.data_class} isolated under law, but this table "
                                 "names no isolated table to move it to", "add isolate_to: <schema.table>",
                                 field_path=".".join(map(str, at))))
    if any(r.action.value == "anonymize" for r in rules) and location.anonymize is None:
        issues.append(smap.issue(at, f"a rule anonymizes {location.data_class} but this table says which "
                                 "columns to clear nowhere", "add anonymize: {set_null: [...], hash: [...]}",
                                 field_path=".".join(map(str, at))))
    return issues
