"""``systems.yaml``: where each data class lives (SQL tables, S3 prefixes, ...), validated like the rules.

Kept apart from the rules on purpose (what data lives where vs what to do with it): a new table is a
diff here, a new retention period a diff in rules.yaml.

One location model per store kind (its ``kind:`` tag is the kind's name in ``retention.stores.kinds``).
Each model declares what it can carry out (``actions``) and which record times it can evaluate
(``record_anchors``), so the cross-check against the rules asks every kind the same questions.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self, get_args

from pydantic import Field, field_validator, model_validator

from retention.rules.errors import Issue, RulesError
from retention.rules.loader import RuleSet, load_model
from retention.rules.model import Action, Identifier, Rule, Strict, Text
from retention.rules.subjects import IdentifierKind
from retention.rules.yamlsource import Path_, SourceMap

SqlName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$", max_length=128)]
RecordAnchor = Literal["created_at", "last_activity_at"]
# A destructive SQL transaction waits at most this long for an application's row lock, and runs no
# statement longer than this (SqlLocation.lock_timeout_ms / statement_timeout_ms override them).
DEFAULT_LOCK_TIMEOUT_MS = 2_000
DEFAULT_STATEMENT_TIMEOUT_MS = 30_000


# A rule's action as a refusal names it: what the rule does, and what the records would have to be.
_ACTION_WORDS = {
    Action.DELETE: ("deletes", "deleted"),
    Action.ANONYMIZE: ("anonymizes", "anonymized"),
    Action.RETURN_THEN_DELETE: ("returns then deletes", "returned"),
    Action.RETAIN_ISOLATED: ("keeps data isolated", "kept isolated"),
}


class StoredLocation(Strict):
    """What every location has and declares; a kind's model adds where its records are."""

    kind: str  # a Literal in each kind's model: the inventory's tag, the kind's name in retention.stores.kinds
    data_class: Identifier
    conn_id: Identifier  # an Airflow Connection (AIRFLOW_CONN_<ID> in the embedded stack)

    # The rule actions this kind of location can carry out.
    actions: ClassVar[frozenset[Action]] = frozenset({Action.DELETE, Action.RETURN_THEN_DELETE})
    records: ClassVar[str] = "records"  # what its records are called in a refusal ("rows", "objects")
    described: ClassVar[str] = "this store"  # where such data is kept, in a hint ("SQL tables", "object storage")

    def record_anchors(self) -> frozenset[str]:
        """The record times (rule anchors other than account events) this location can evaluate."""
        return frozenset()

    def subject_kinds(self) -> frozenset[str]:
        """The kinds of data subject identifier this location can find its records by (``subjects:``)."""
        return frozenset()

    def subject_issues(self, at: Path_, smap: SourceMap) -> list[Issue]:
        """``subjects:`` entries that could not name a person (a kind's model knows which)."""
        return []

    def anchor_hint(self, anchor: str) -> str:
        """What to do when a rule anchors on a record time this location cannot evaluate."""
        known = " or ".join(sorted(self.record_anchors()))
        return f"anchor the rule on {known} or an account event" if known else \
            "anchor the rule on an account event (terminated_at, contract_end)"

    @abstractmethod
    def place(self) -> str:
        """Where the records are (a table, a prefix), for an approver's note: never a record's key."""

    def isolated(self) -> Self | None:
        """The location its records move to when kept under law, as a location of its own; None if it has none."""
        return None

    def rule_issues(self, rules: Sequence[Rule], at: Path_, smap: SourceMap) -> list[Issue]:
        """The rules of this location's data class it cannot carry out: a record time it does not keep, an action
        it does not do."""
        issues = []
        for rule in rules:
            if not rule.anchor.is_account_event and rule.anchor.value not in self.record_anchors():
                issues.append(smap.issue(at + ("data_class",), f"rule {rule.id!r} anchors on {rule.anchor.value}, "
                                         f"which {self.records} do not record", self.anchor_hint(rule.anchor.value)))
            if rule.action not in self.actions:
                verb, done = _ACTION_WORDS[rule.action]
                able = " and ".join(m.described for m in LOCATION_MODELS if rule.action in m.actions) or "no store"
                issues.append(smap.issue(at + ("data_class",), f"rule {rule.id!r} {verb}, which {self.records} cannot "
                                         f"be (this product does it for {able} only)",
                                         f"use delete for data kept in {self.described}, or keep this data class in "
                                         f"{able}"))
        return issues


class ChildTable(Strict):
    """A table whose rows reference the location's rows and must go first (foreign keys)."""

    table: SqlName
    foreign_key: SqlName  # column in the child pointing at the parent's key
    key_column: SqlName = "id"


class SubjectColumn(Strict):
    """A column holding one kind of data subject identifier, and the index a lookup by it goes through: a
    subject request must never scan a whole table (validation refuses a subject column without one, and the
    store checks at run time that the index exists and leads with the column)."""

    column: SqlName
    index: SqlName


class Anonymize(Strict):
    set_null: list[SqlName] = Field(default_factory=list)  # set to NULL
    hash: list[SqlName] = Field(default_factory=list)  # replaced by a salted hash (the salt is discarded)

    @model_validator(mode="after")
    def _not_empty(self) -> Anonymize:
        if not self.set_null and not self.hash:
            raise ValueError("name at least one column under set_null or hash")
        return self


class SqlLocation(StoredLocation):
    kind: Literal["sql"]
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
    # Data subject identifiers: which columns hold an e-mail address, a phone number, a visitor or user id.
    # A row of the location (with its children) belongs to a subject when any of them holds one of theirs.
    subjects: dict[IdentifierKind, SubjectColumn] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _lock_wait_within_a_statement(self) -> SqlLocation:
        lock = self.lock_timeout_ms or DEFAULT_LOCK_TIMEOUT_MS
        statement = self.statement_timeout_ms or DEFAULT_STATEMENT_TIMEOUT_MS
        if lock >= statement:
            raise ValueError(f"lock_timeout_ms ({lock}) must be shorter than statement_timeout_ms ({statement}): "
                             "a lock wait is part of a statement")
        return self

    @model_validator(mode="after")
    def _isolation_moves_whole_rows(self) -> SqlLocation:
        if self.isolate_to is not None and self.children:
            raise ValueError("isolate_to moves rows of a table without children; give each table its own location")
        if self.isolate_to == self.table:
            raise ValueError("isolate_to must name another table than the location's own")
        return self

    actions: ClassVar[frozenset[Action]] = frozenset(Action)
    records: ClassVar[str] = "rows"
    described: ClassVar[str] = "SQL tables"

    def record_anchors(self) -> frozenset[str]:
        return frozenset(self.timestamps)

    def subject_kinds(self) -> frozenset[str]:
        return frozenset(self.subjects)

    def subject_issues(self, at: Path_, smap: SourceMap) -> list[Issue]:
        """The account or key column as a subject column would select every row of the account, or rows by
        their key: neither names a person."""
        issues = []
        for kind, where in sorted(self.subjects.items()):
            for field_name in ("account_column", "key_column"):
                if where.column == getattr(self, field_name):
                    issues.append(smap.issue(at + ("subjects", kind, "column"),
                                             f"subjects.{kind}: column {where.column!r} is the {field_name}, "
                                             "which does not identify a person",
                                             "name the column holding the identifier"))
        return issues

    def place(self) -> str:
        return self.table

    def isolated(self) -> Self | None:
        """The isolated copy as a location of its own, so the sweep applies the same rule to it."""
        if self.isolate_to is None:
            return None
        return self.model_copy(update={"table": self.isolate_to, "isolate_to": None})

    def rule_issues(self, rules: Sequence[Rule], at: Path_, smap: SourceMap) -> list[Issue]:
        """Every record anchor a rule of this data class uses needs a column, and anonymize and isolation need
        their columns and table."""
        issues = []
        for anchor in sorted({r.anchor.value for r in rules if not r.anchor.is_account_event}):
            if anchor not in self.timestamps:
                issues.append(smap.issue(at + ("timestamps",), f"rules anchor {self.data_class} on {anchor!r} but "
                                         "this table maps no column to it",
                                         f"add '{anchor}: <column>' under timestamps"))
        if any(r.action is Action.RETAIN_ISOLATED for r in rules) and self.isolate_to is None:
            issues.append(smap.issue(at, f"a rule keeps {self.data_class} isolated under law, but this table names "
                                     "no isolated table to move it to", "add isolate_to: <schema.table>",
                                     field_path=".".join(map(str, at))))
        if any(r.action is Action.ANONYMIZE for r in rules) and self.anonymize is None:
            issues.append(smap.issue(at, f"a rule anonymizes {self.data_class} but this table says which columns "
                                     "to clear nowhere", "add anonymize: {set_null: [...], hash: [...]}",
                                     field_path=".".join(map(str, at))))
        return issues


class KeySegmentTime(Strict):
    key_segment: int = Field(ge=0)  # index after splitting the key on its separator ("/" in S3, ":" in Redis)
    format: Text  # strptime format, read as UTC


class SubjectKeySegment(Strict):
    """Where an object's key names a data subject: the segment (the key split on "/") holding the identifier.
    Finding a subject's objects lists the account's prefix (one account's objects, never the bucket)."""

    key_segment: int = Field(ge=1)


class S3Location(StoredLocation):
    """An object has one time (its creation) and cannot be anonymized in place."""

    kind: Literal["s3"]
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    key_template: Annotated[str, Field(pattern=r"^[^{}]*\{account_id\}[^{}]*/$")]  # a prefix ending in "/"
    timestamp: Literal["last_modified"] | KeySegmentTime = "last_modified"
    versioned: bool = False
    subjects: dict[IdentifierKind, SubjectKeySegment] = Field(default_factory=dict)

    records: ClassVar[str] = "objects"
    described: ClassVar[str] = "object storage"

    def record_anchors(self) -> frozenset[str]:
        return frozenset({"created_at"})  # its LastModified, or the time in its key

    def anchor_hint(self, anchor: str) -> str:
        return "anchor the rule on created_at, or keep this data in SQL"

    def subject_kinds(self) -> frozenset[str]:
        return frozenset(self.subjects)

    def subject_issues(self, at: Path_, smap: SourceMap) -> list[Issue]:
        """A subject segment must lie after the key template's prefix: a segment inside it is the account id
        or a fixed word, the same for every object of the account."""
        first = self.key_template.count("/")  # "tenants/{account_id}/attachments/": segments 0-2 are the prefix
        return [smap.issue(at + ("subjects", kind, "key_segment"),
                           f"subjects.{kind}.key_segment {segment.key_segment} lies in the key template's prefix "
                           f"{self.key_template!r} (segments 0 to {first - 1}), which names no person",
                           f"name a segment from {first} on")
                for kind, segment in sorted(self.subjects.items()) if segment.key_segment < first]

    def place(self) -> str:
        return f"s3://{self.bucket}/{self.key_template}"

    def prefix(self, account_id: str) -> str:
        return self.key_template.format(account_id=account_id)


GLOB = frozenset("*?[]\\")  # what a Redis MATCH pattern reads as more than itself
ACCOUNT_ID_CHARACTER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


class RedisLocation(StoredLocation):
    """Keys of one account by pattern. A key has no time of its own: rules anchored on a record time need
    ``timestamp``, the key segment (the key split on ":") that dates it."""

    kind: Literal["redis"]
    key_pattern: Annotated[str, Field(pattern=r"^[^{}]*\{account_id\}[^{}]*$", max_length=512)]
    timestamp: KeySegmentTime | None = None

    records: ClassVar[str] = "keys"
    described: ClassVar[str] = "Redis"

    @field_validator("key_pattern")
    @classmethod
    def _matches_one_account_only(cls, pattern: str) -> str:
        """Account "acme" must never match a key of "acme2": the id is preceded by literal text only and
        followed by a separator no account id contains (or by the end of the pattern)."""
        before, _, after = pattern.partition("{account_id}")
        if GLOB & set(before):
            raise ValueError("no glob character (* ? [ ] \\) may come before {account_id}: "
                             "it could match a key of another account")
        if after and (after[0] in GLOB or after[0] in ACCOUNT_ID_CHARACTER):
            raise ValueError(f"{{account_id}} is followed by {after[0]!r}: put a separator such as ':' after it, "
                             "or account 'acme' would match the keys of 'acme2'")
        return pattern

    def record_anchors(self) -> frozenset[str]:
        return frozenset({"created_at"}) if self.timestamp is not None else frozenset()

    def anchor_hint(self, anchor: str) -> str:
        return ("add timestamp: {key_segment: N, format: ...} naming the key segment that dates a key, "
                "or anchor the rule on an account event (terminated_at, contract_end)")

    def place(self) -> str:
        return self.key_pattern

    def match(self, account_id: str) -> str:
        """The MATCH pattern of one account's keys."""
        return self.key_pattern.replace("{account_id}", account_id)


# Every kind's location model: the inventory's ``kind:`` tag picks one. A new kind adds its model here and its
# entry in retention.stores.kinds.
LocationSpec = SqlLocation | S3Location | RedisLocation
Location = Annotated[LocationSpec, Field(discriminator="kind")]
LOCATION_MODELS: tuple[type[StoredLocation], ...] = get_args(LocationSpec)


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
    isolated = {f"{name}{ISOLATED_SUFFIX}": copy for name, loc in systems.locations.items()
                if (copy := loc.isolated()) is not None}
    return systems.model_copy(update={"locations": {**systems.locations, **isolated}})


def isolated_copies(systems: SystemsFile) -> set[str]:
    """The ids of the locations ``load_inventory`` added for isolated copies (``<id>_isolated``)."""
    return {f"{name}{ISOLATED_SUFFIX}" for name, loc in systems.locations.items() if loc.isolated() is not None}


def _cross_check(systems: SystemsFile, smap: SourceMap, ruleset: RuleSet) -> list[Issue]:
    classes = ruleset.data_classes.data_classes
    issues: list[Issue] = []
    for name, location in systems.locations.items():
        at: Path_ = ("locations", name)
        if location.data_class not in classes:
            issues.append(smap.issue(at + ("data_class",), f"unknown data class {location.data_class!r}",
                                     f"known: {', '.join(sorted(classes))}"))
            continue
        issues += location.rule_issues([r for r in ruleset.rules if r.data_class == location.data_class], at, smap)
        issues += location.subject_issues(at, smap)
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
                                     "add a location for it, or list it under not_stored: with the reason",
                                     at_key=True, field_path="locations"))
    return issues

