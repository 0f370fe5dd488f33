"""Connector specs: ``retention_rules/subprocessors/*.yaml``, one file per subprocessor.

A spec says, in the provider's own terms, how to find one customer's data through its public API,
delete it, learn when the deletion is complete, check that it is gone, and how long the provider's
own residual copies live. One generic executor (``retention.subprocessors.executor``) runs every
spec. Providers without a deletion API get a ``manual`` spec: a ticket, evidence and a human
attestation.

Templates
    Paths, query values, headers and JSON bodies are templates with ``{name}`` placeholders (nothing
    else: no attribute access, no format specs). What a placeholder may name depends on where it is:
    ``account_id`` everywhere; a fan-out's ``bind`` names below the fan-out; ``id`` in per-record
    requests; ``ids`` in batch requests (joined with ``ids_join`` in a path or query string, a JSON
    list in a body, or one query parameter per id with ``ids_repeat``); ``job_id`` in status polls;
    ``cutoff`` (ISO 8601) and ``cutoff_ms`` (epoch ms) in a query-scope resource's requests; ``found``
    (the preview count) in tenant- and query-scope deletes. A value that is a whole placeholder keeps
    its type in a JSON body (a list stays a list, a number a number). The loader refuses any other name.

Safety
    A delete request must be aimed: it names ``{id}`` or ``{ids}``, or (scope ``tenant`` / ``query``)
    its filter names ``{account_id}`` or a fan-out binding. Parameters that switch a provider's
    endpoint to "delete everything" (``delete_all_contacts``, ...) are refused in any request.
    Every run records the number of matching records (the preview) before its first deletion.
    A find (and a fan-out listing) must be aimed at one tenant too: its request, or the fan-out's
    headers, name a tenant variable, or its ``match`` keeps only items equal to one; recorded ids are
    read by the account column. A ``record`` or ``subject`` delete states ``max_records``: a preview
    that finds more deletes nothing. At run time a path value that is empty, ``.`` or ``..`` (which
    would name another resource) is refused before sending (``retention.subprocessors.http.render``),
    and every id a find returned is checked by that rule before the first delete call of the run.
    ``max_records`` bounds every preview of a run together (all rounds of a capped search).

Assumptions
    A spec states what the provider documents. Anything else it relies on (an undocumented header, a
    query key, a completion period) is listed under ``assumptions`` (spec or resource): a short fixed
    ``key`` (the only part that reaches the ledger), the ``fact``, ``why`` we rely on it, and what it
    ``bears_on``. A result whose claim rests on an ``outcome`` assumption, with no documented read that
    verified it afterwards, is recorded as ``assumed`` (``subprocessor.result``: ``status: assumed``,
    ``assumed: true``, ``assumptions: [keys]``), never as verified or as the provider's own deadline.
    An ``async_unpollable`` period needs its ``source`` or such an assumption.

Transport
    Every API spec names a ``test_request``: a read-only GET (no placeholders) and the statuses it must
    answer, sent before the first call of each erasure; credentials the provider refuses fail the run
    there, before any delete. Base URLs (the spec's, its regions', a resource's own) are https, or http
    only on loopback (127.0.0.0/8, ::1, localhost). ``defaults`` bounds every call: a response body past
    ``max_response_bytes`` is refused unread, and a call (with its retries and the provider's
    Retry-After waits) ends at ``call_deadline_seconds``.

Hosted
    A provider that hosts systems.yaml's locations (Heroku: the shared application database) gets a
    ``hosted`` spec instead of resources: the customer's rows are erased by those locations, and the
    loader checks, against the inventory, that they exist and are keyed by account.
"""

from __future__ import annotations

import ipaddress
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, HttpUrl, model_validator

from retention.rules.durations import IsoDuration
from retention.rules.errors import Issue, RulesError
from retention.rules.loader import load_model
from retention.rules.model import Duration, Identifier, Strict, Text
from retention.rules.yamlsource import SourceMap

DotPath = Annotated[str, Field(pattern=r"^([A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*)?$", max_length=200)]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]+$")]
Status = Annotated[int, Field(ge=100, le=599)]

# Switches that turn a provider's delete endpoint into "delete everything"; refused in any request.
DELETE_ALL_SWITCHES = frozenset({"delete_all", "delete_all_contacts", "deleteall", "all", "purge_all", "truncate"})


class Request(Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: Annotated[str, Field(pattern=r"^/")]  # appended to the base URL
    query: dict[str, str | int] = Field(default_factory=dict)
    headers: dict[HeaderName, str] = Field(default_factory=dict)
    body: Any = None  # JSON template
    form: dict[str, str] | None = None  # form-encoded body template (Twilio)


class Preflight(Request):
    """The pre-flight: a read-only request proving the Connection's credentials before anything else is sent
    (as Airbyte's and Singer's connectors ``check`` a connection). ``expect``: the statuses that mean "these
    credentials work"; anything else (a 401 or 403 above all) fails the run before its first delete."""

    method: Literal["GET"]
    expect: list[Status] = Field(default_factory=lambda: [200], min_length=1)

    @model_validator(mode="after")
    def _read_only(self) -> "Preflight":
        if self.body is not None or self.form is not None:
            raise ValueError("a test_request is a GET and sends no body or form")
        return self


class Defaults(Strict):
    """Bounds on every call of the spec."""

    max_response_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1024 ** 3)  # a body past it is refused
    call_deadline_seconds: float = Field(default=600.0, gt=0, le=86_400)  # one call, its retries and waits


# -- pagination ------------------------------------------------------------------------------------

class NoPagination(Strict):
    style: Literal["none"]


class LinkHeader(Strict):
    """RFC 8288 ``Link: <url>; rel="next"``; Sentry adds ``results="false"`` to a next link with nothing behind it."""

    style: Literal["link_header"]
    results_attribute: bool = False


class NextUrl(Strict):
    """A body field holding the next page's URL or path (Twilio ``next_page_uri``, Salesforce ``nextRecordsUrl``)."""

    style: Literal["next_url"]
    field: DotPath


class Cursor(Strict):
    """A token from the body sent back as a parameter (OpenAI ``after`` = ``last_id``, Datadog ``meta.page.after``)."""

    style: Literal["cursor"]
    token_field: DotPath
    param: Text
    send_in: Literal["query", "body"] = "query"
    more_field: DotPath | None = None  # e.g. has_more; without it, a missing token ends the listing


class Offset(Strict):
    style: Literal["offset"]
    offset_param: Text = "offset"
    limit_param: Text = "limit"
    page_size: int = Field(ge=1, le=10_000)


class RangeHeader(Strict):
    """Heroku: ``Range`` request header, ``Next-Range`` response header, 206 while more remain."""

    style: Literal["range_header"]


Pagination = Annotated[NoPagination | LinkHeader | NextUrl | Cursor | Offset | RangeHeader, Field(discriminator="style")]


# -- finding ---------------------------------------------------------------------------------------

class RecordedIds(Strict):
    """Ids the application recorded when it created the objects (APIs that cannot list them)."""

    conn_id: Identifier
    table: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")]
    id_column: Identifier
    account_column: Identifier
    kind_column: Identifier | None = None
    kind: str | None = None


class FanOut(Strict):
    """The provider-side tenants of an account (subaccounts, subusers, projects, recorded parents):
    fields of each are bound to template names used below, and ``headers`` (templates) are sent with
    every request made for that tenant (SendGrid ``on-behalf-of``, OpenAI ``OpenAI-Project``)."""

    request: Request | None = None
    pagination: Pagination | None = None
    items: DotPath = ""  # the list in the response ("" when the body is the list)
    recorded: RecordedIds | None = None  # or: recorded ids, each bound as "id"
    bind: dict[Identifier, DotPath] = Field(min_length=1)
    match: dict[DotPath, str] = Field(default_factory=dict)  # item field -> template that must equal it
    headers: dict[HeaderName, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> "FanOut":
        if (self.request is None) == (self.recorded is None):
            raise ValueError("give either request (with pagination) or recorded, not both")
        if self.request is not None and self.pagination is None:
            raise ValueError("a fan-out request needs pagination (style: none when the API has none)")
        return self


class Find(Strict):
    request: Request | None = None
    pagination: Pagination | None = None
    items: DotPath = ""
    id: DotPath = "id"
    match: dict[DotPath, str] = Field(default_factory=dict)  # keep only items whose field equals the template
    cap: int | None = Field(default=None, ge=1)  # the provider returns at most this many per search
    recorded: RecordedIds | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "Find":
        if (self.request is None) == (self.recorded is None):
            raise ValueError("give either request (with pagination) or recorded, not both")
        if self.request is not None and self.pagination is None:
            raise ValueError("a find request needs pagination (style: none when the API has none)")
        return self


# -- deleting --------------------------------------------------------------------------------------

class Outcomes(Strict):
    """How a response (or one item of a per-item result) is read."""

    statuses: list[Status] = Field(default_factory=list)
    codes: list[str | int] = Field(default_factory=list)  # provider error codes at ``error_code``


class ItemResults(Strict):
    """Per-item results in one response (Salesforce sObject Collections). Item codes are read apart from
    a whole call's error codes: a whole-call NOT_FOUND (a wrong path) must never read as "already gone"."""

    items: DotPath = ""
    id: DotPath = "id"
    success: DotPath = "success"
    error_code: DotPath = "errors.0.statusCode"
    already_deleted: list[str | int] = Field(default_factory=list)
    retry_later: list[str | int] = Field(default_factory=list)


class Delete(Strict):
    scope: Literal["record", "subject", "tenant", "query"] = "record"
    request: Request
    batch: int = Field(default=1, ge=1, le=10_000)  # ids per call; > 1 needs {ids}
    ids_join: str = ","
    ids_repeat: Text | None = None  # send each id as its own query parameter of this name (Sentry ?id=1&id=2)
    success: list[Status] = Field(default_factory=lambda: [200, 202, 204])
    error_code: DotPath = "code"  # where the provider's error code sits in an error body
    already_deleted: Outcomes = Field(default_factory=lambda: Outcomes(statuses=[404]))
    retry_later: Outcomes = Field(default_factory=Outcomes)  # e.g. Twilio 20009: not deletable yet
    results: ItemResults | None = None


class Sync(Strict):
    kind: Literal["sync"]


class AsyncJob(Strict):
    """A deletion job the provider reports on. ``status`` asks for one job (``{job_id}``), or, where the
    provider only lists jobs (Datadog's deletion requests), ``items`` names the list in the answer and
    ``item_id`` the field matched against the job id, read across ``pagination``'s pages."""

    kind: Literal["async_job"]
    job_id: DotPath  # in the delete response
    status: Request  # may use {job_id}
    status_field: DotPath
    items: DotPath | None = None  # the status call lists jobs: find ours in this list
    item_id: DotPath = "id"
    pagination: Pagination | None = None  # of the job listing
    done: list[str] = Field(min_length=1)
    failed: list[str] = Field(default_factory=list)
    poll_every: Duration
    max_wait: Duration


class AsyncUnpollable(Strict):
    """Accepted, with no way to ask: complete by ``assume_done_after`` (SendGrid erase job). The period is
    either the provider's (``source`` says where it states it) or ours, and then the resource (or spec)
    names it among its ``assumptions`` with ``bears_on: outcome`` (the loader refuses neither)."""

    kind: Literal["async_unpollable"]
    assume_done_after: Duration
    job_id: DotPath | None = None  # recorded when the provider returns one
    source: Text | None = None  # where the provider documents the completion period


class SoftDelete(Strict):
    """Deletion moves records to a bin: ``purge`` removes them for good, or, where the API offers no
    purge, the bin empties itself after ``bin_retention`` (Salesforce's recycle bin: 15 days)."""

    kind: Literal["soft_delete"]
    purge: Delete | None = None
    bin_retention: Duration | None = None

    @model_validator(mode="after")
    def _purge_or_expiry(self) -> "SoftDelete":
        if (self.purge is None) == (self.bin_retention is None):
            raise ValueError("give purge (a delete that empties the bin) or bin_retention, not both")
        return self


Completion = Annotated[Sync | AsyncJob | AsyncUnpollable | SoftDelete, Field(discriminator="kind")]


class Verify(Strict):
    """``get_absent``: a GET per id must answer 404 (or an already-deleted code). ``find_empty``: the
    find must come back empty. ``after_completion``: only once the provider's own delay has passed."""

    kind: Literal["get_absent", "find_empty", "after_completion"]
    request: Request | None = None  # get_absent

    @model_validator(mode="after")
    def _request_for_get(self) -> "Verify":
        if self.kind == "get_absent" and self.request is None:
            raise ValueError("get_absent needs a request (a GET naming {id})")
        return self


class Assumption(Strict):
    """A provider fact the spec relies on that the provider's documentation does not state.

    ``key`` is the only part that enters the ledger (short and fixed, no free text). ``bears_on``:
    ``outcome`` when what a result claims (that the data is gone, or by when) rests on it: such a
    result is recorded as ``assumed`` unless a documented read verified it afterwards; ``operation``
    when only the run's pacing or liveness does (a rate-limit header): if it is wrong the run waits
    longer or fails, and never claims more than it did."""

    key: Identifier
    fact: Text
    why: Text
    bears_on: Literal["outcome", "operation"] = "outcome"


class ProviderRetention(Strict):
    """How long the provider itself keeps residual copies (backups, logs) after an API deletion."""

    period: Duration
    source: Text  # where the provider says so


class Resource(Strict):
    data_class: Identifier
    description: Text
    after: list[Identifier] = Field(default_factory=list)  # resources that must be erased first (items before their conversation)
    base_url: HttpUrl | None = None  # when this API lives on its own host (Twilio Conversations)
    fan_out: FanOut | None = None
    find: Find
    delete: Delete
    completion: Completion = Field(default_factory=lambda: Sync(kind="sync"))
    verify: Verify
    provider_retention: ProviderRetention | None = None
    max_records: int | None = Field(default=None, ge=1)  # refuse to delete when the previews find more
    assumptions: list[Assumption] = Field(default_factory=list)  # undocumented provider facts this resource rests on


# -- the file --------------------------------------------------------------------------------------

class Auth(Strict):
    """Credentials come from the Airflow Connection ``conn_id``: ``basic`` uses login/password, ``bearer``
    the password, ``headers`` maps header names to ``{login}``, ``{password}`` or ``{extra.NAME}``."""

    kind: Literal["basic", "bearer", "headers"]
    headers: dict[HeaderName, str] = Field(default_factory=dict)
    scopes: list[Text] = Field(default_factory=list)  # what the credential must be allowed to do

    @model_validator(mode="after")
    def _headers_for_headers(self) -> "Auth":
        if self.kind == "headers" and not self.headers:
            raise ValueError("auth kind headers needs headers: {Header-Name: '{password}', ...}")
        return self


class RateLimit(Strict):
    statuses: list[Status] = Field(default_factory=lambda: [429])
    reset_header: HeaderName = "Retry-After"
    # duration: Go style (6m0s); auto: an epoch when the value is past 10^9, else seconds (SendGrid's docs disagree)
    reset_kind: Literal["seconds", "epoch", "http_date", "duration", "auto"] = "seconds"
    default_wait: Duration = IsoDuration.parse("PT1S")  # when a limited response names no reset time
    max_attempts: int = Field(default=8, ge=1, le=50)
    concurrency: int = Field(default=4, ge=1, le=64)  # the subprocessor's Airflow pool size


class Manual(Strict):
    """No deletion API: a person files the request and attests to the provider's confirmation."""

    data_class: Identifier
    request_channel: Text  # where to file it (portal, address)
    evidence: list[Text] = Field(min_length=1)  # what to attach to the attestation
    deadline: Duration  # how long the provider has to confirm
    attested_by: Text = "privacy_engineer"  # role that attests
    provider_retention: ProviderRetention | None = None


class Hosted(Strict):
    """The provider hosts locations of ``systems.yaml`` (Heroku: the application's PostgreSQL): one
    database shared by every customer, each row keyed by its account column. The customer's rows are
    erased there, row by row, by those locations (the engine's SQL store), never through the provider's
    API; no API call of this spec could erase them without erasing other customers' rows. ``tenancy``
    is checked against systems.yaml when specs are loaded with the inventory (``check_hosted``)."""

    conn_id: Identifier  # the Airflow Connection of systems.yaml's locations the provider hosts
    tenancy: Literal["shared"]
    description: Text
    provider_retention: ProviderRetention | None = None  # the provider's own copies of the whole database


class ConnectorSpec(Strict):
    subprocessor: Identifier  # a key of data_classes.yaml subprocessors
    docs: list[HttpUrl] = Field(min_length=1)  # the provider documentation the spec follows
    conn_id: Identifier | None = None
    base_url: HttpUrl | None = None
    regions: dict[Identifier, HttpUrl] = Field(default_factory=dict)  # chosen by the Connection's extra "region"
    auth: Auth | None = None
    headers: dict[HeaderName, str] = Field(default_factory=dict)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    transient_statuses: list[Status] = Field(default_factory=lambda: [500, 502, 503, 504])
    test_request: Preflight | None = None  # required with resources: the credentials pre-flight
    defaults: Defaults = Field(default_factory=Defaults)
    resources: dict[Identifier, Resource] = Field(default_factory=dict)
    manual: Manual | None = None
    hosted: Hosted | None = None
    assumptions: list[Assumption] = Field(default_factory=list)  # undocumented provider facts every resource rests on

    @model_validator(mode="after")
    def _api_or_manual(self) -> "ConnectorSpec":
        if self.hosted is not None:
            if self.resources or self.manual:
                raise ValueError("a hosted spec (systems.yaml locations erase the rows) has no resources or manual")
            return self
        if self.manual is not None:
            if self.resources:
                raise ValueError("a manual spec has no resources")
            return self
        if not self.resources:
            raise ValueError("give resources (the provider's API), manual (no deletion API) or hosted "
                             "(systems.yaml locations the provider hosts)")
        if self.conn_id is None or self.auth is None or self.base_url is None:
            raise ValueError("an API spec needs conn_id, auth and base_url")
        return self


# -- loading and cross-checks ----------------------------------------------------------------------

def load_spec(path: Path | str, *, subprocessors: set[str] | None = None,
              data_classes: set[str] | None = None, inventory: Any = None) -> ConnectorSpec:
    """One spec file, validated and checked (placeholders, aiming, references; with ``inventory``, the
    systems.yaml it must agree with, a hosted spec's tenancy); RulesError otherwise."""
    spec, smap = load_model(Path(path), ConnectorSpec)
    issues = check(spec, smap, subprocessors=subprocessors, data_classes=data_classes)
    if inventory is not None:
        issues += [smap.issue(("hosted",), message, "systems.yaml and the spec must describe the same tenancy",
                              at_key=True, field_path="hosted") for message in check_hosted(spec, inventory)]
    if issues:
        raise RulesError(issues)
    return spec


def load_specs(directory: Path | str, *, subprocessors: set[str] | None = None,
               data_classes: set[str] | None = None, inventory: Any = None) -> dict[str, ConnectorSpec]:
    """Every ``*.yaml`` under the directory, keyed by subprocessor; all problems of all files at once."""
    specs: dict[str, ConnectorSpec] = {}
    issues: list[Issue] = []
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            spec = load_spec(path, subprocessors=subprocessors, data_classes=data_classes, inventory=inventory)
        except RulesError as exc:
            issues += exc.issues
            continue
        if spec.subprocessor in specs:
            issues.append(Issue(str(path), 1, 1, "subprocessor", f"a second spec for {spec.subprocessor!r}"))
        specs[spec.subprocessor] = spec
    if issues:
        raise RulesError(issues)
    return specs


def check(spec: ConnectorSpec, smap: SourceMap, *, subprocessors: set[str] | None,
          data_classes: set[str] | None) -> list[Issue]:
    issues: list[Issue] = []
    if subprocessors is not None and spec.subprocessor not in subprocessors:
        issues.append(smap.issue(("subprocessor",), f"unknown subprocessor {spec.subprocessor!r}",
                                 f"known (data_classes.yaml subprocessors): {', '.join(sorted(subprocessors))}"))
    classes = [(("manual", "data_class"), spec.manual.data_class)] if spec.manual else []
    classes += [(("resources", name, "data_class"), r.data_class) for name, r in spec.resources.items()]
    for at, name in classes:
        if data_classes is not None and name not in data_classes:
            issues.append(smap.issue(at, f"unknown data class {name!r}"))
    issues += _check_transport(spec, smap)
    for name, resource in spec.resources.items():
        issues += _check_resource(("resources", name), resource, smap)
        issues += _check_assumptions(spec, name, resource, smap)
        for i, before in enumerate(resource.after):
            if before not in spec.resources or before == name:
                issues.append(smap.issue(("resources", name, "after", i), f"no other resource named {before!r}",
                                         f"resources here: {', '.join(sorted(spec.resources))}"))
    if not issues and waves(spec) is None:
        issues.append(smap.issue(("resources",), "the resources' 'after' lists form a cycle", at_key=True,
                                 field_path="resources"))
    return issues


def secure_url(url: str) -> bool:
    """https, or http to a loopback host (127.0.0.0/8, ::1, localhost): credentials never cross a network
    in clear text."""
    from urllib.parse import urlsplit

    parts = urlsplit(str(url))
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or ""))


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_transport(spec: ConnectorSpec, smap: SourceMap) -> list[Issue]:
    """Every base URL is https (http only on loopback), and an API spec has its credentials pre-flight."""
    urls = [(("base_url",), spec.base_url)] + [(("regions", name), url) for name, url in spec.regions.items()]
    urls += [(("resources", name, "base_url"), r.base_url) for name, r in spec.resources.items()]
    issues = [smap.issue(at, f"{url} is not https; the credentials would cross the network in clear text",
                         "use https (http is allowed only on loopback: 127.0.0.0/8, ::1, localhost)")
              for at, url in urls if url is not None and not secure_url(str(url))]
    if spec.resources and spec.test_request is None:
        issues.append(smap.issue(("resources",), "an API spec needs a test_request (the credentials pre-flight)",
                                 "a read-only GET the provider documents, e.g. test_request: {method: GET, path: "
                                 "/v1/me, expect: [200]}", at_key=True, field_path="test_request"))
    if spec.test_request is not None:
        issues += _check_request(("test_request",), spec.test_request, set(), smap)
    return issues


def outcome_assumptions(spec: ConnectorSpec, resource: str) -> list[str]:
    """Keys of the assumptions a resource's result rests on (the spec's and the resource's own)."""
    every = spec.assumptions + spec.resources[resource].assumptions
    return [a.key for a in every if a.bears_on == "outcome"]


def _check_assumptions(spec: ConnectorSpec, name: str, r: Resource, smap: SourceMap) -> list[Issue]:
    """Keys are unique (the ledger names an assumption by its key alone), and a completion period the
    provider does not document is declared an assumption."""
    issues: list[Issue] = []
    seen = {a.key for a in spec.assumptions}
    for i, assumption in enumerate(r.assumptions):
        if assumption.key in seen:
            issues.append(smap.issue(("resources", name, "assumptions", i, "key"),
                                     f"assumption key {assumption.key!r} is used twice"))
        seen.add(assumption.key)
    if isinstance(r.completion, AsyncUnpollable) and r.completion.source is None \
            and not outcome_assumptions(spec, name):
        issues.append(smap.issue(("resources", name, "completion", "assume_done_after"),
                                 "a completion period with no source is our assumption, and the spec does not "
                                 "say so", "give source: (where the provider states the period), or add "
                                 "assumptions: [{key, fact, why, bears_on: outcome}] to the resource"))
    return issues


def check_hosted(spec: ConnectorSpec, inventory: Any) -> list[str]:
    """A hosted spec agrees with systems.yaml: its Connection names SQL locations, each keyed by an
    account column (the shared tenancy it claims). Problems as messages; none when it agrees."""
    if spec.hosted is None:
        return []
    hosted = spec.hosted
    sql = [(name, loc) for name, loc in inventory.locations.items()
           if getattr(loc, "kind", None) == "sql" and loc.conn_id == hosted.conn_id]
    if not sql:
        return [f"{spec.subprocessor}: hosted.conn_id {hosted.conn_id!r} names no SQL location of systems.yaml, "
                "so nothing would erase the customer's rows it hosts"]
    return [f"{spec.subprocessor}: systems.yaml location {name!r} on {hosted.conn_id!r} has no account column"
            for name, loc in sql if not getattr(loc, "account_column", None)]


def waves(spec: ConnectorSpec) -> list[list[str]] | None:
    """Resource names in erasure order: each wave only after the previous; None on a cycle."""
    left = {name: set(r.after) for name, r in spec.resources.items()}
    order: list[list[str]] = []
    while left:
        ready = sorted(name for name, before in left.items() if not before & set(left))
        if not ready:
            return None
        order.append(ready)
        for name in ready:
            del left[name]
    return order


def _check_resource(at: tuple, r: Resource, smap: SourceMap) -> list[Issue]:
    issues: list[Issue] = []
    tenant = {"account_id"} | (set(r.fan_out.bind) if r.fan_out else set())
    issues += _check_aimed(at, r, tenant, smap)
    if r.delete.scope in ("record", "subject") and r.max_records is None:
        issues.append(smap.issue(at + ("max_records",), f"a {r.delete.scope} delete needs max_records",
                                 "the most records one account can legitimately hold here; a preview finding "
                                 "more means the find lost its tenant filter, and nothing is deleted",
                                 at_key=True))
    if r.fan_out and r.fan_out.request:
        issues += _check_request(at + ("fan_out", "request"), r.fan_out.request, {"account_id"}, smap)
    if r.fan_out:
        for header, template in r.fan_out.headers.items():
            issues += _check_names(at + ("fan_out", "headers", header), template, tenant, smap)
    timed = {"cutoff", "cutoff_ms"} if r.delete.scope == "query" else set()  # a query delete and its preview
    if r.find.request:
        issues += _check_request(at + ("find", "request"), r.find.request, tenant | timed, smap)
    delete_names = tenant | timed | ({"found"} if r.delete.scope in ("tenant", "query") else set())
    delete_names |= {"id"} if r.delete.batch == 1 else {"ids"}
    issues += _check_delete(at + ("delete",), r.delete, delete_names, tenant, smap)
    if isinstance(r.completion, AsyncJob):
        issues += _check_request(at + ("completion", "status"), r.completion.status, tenant | {"job_id"}, smap)
        if r.completion.items is None and "job_id" not in _placeholders(r.completion.status):
            issues.append(smap.issue(at + ("completion", "status"), "a job status request must name {job_id}, "
                                     "or list jobs (items:) and find the job there by item_id",
                                     field_path=_path(at + ("completion", "status"))))
        if r.completion.items is not None and r.completion.pagination is None:
            issues.append(smap.issue(at + ("completion", "items"), "a job listing needs pagination "
                                     "(style: none when the API has none)"))
        if r.verify.kind == "get_absent":  # the ids would have to wait with the job in Airflow's database
            issues.append(smap.issue(at + ("verify", "kind"), "an async_job deletion is verified by a search",
                                     "use find_empty (search again once the job is done)"))
    if isinstance(r.completion, SoftDelete) and r.completion.purge is not None:
        purge = r.completion.purge
        names = tenant | ({"id"} if purge.batch == 1 else {"ids"})
        issues += _check_delete(at + ("completion", "purge"), purge, names, tenant, smap)
    if r.verify.request is not None:
        issues += _check_request(at + ("verify", "request"), r.verify.request, tenant | timed | {"id"}, smap)
    if r.verify.kind == "after_completion" and not isinstance(r.completion, AsyncUnpollable):
        issues.append(smap.issue(at + ("verify", "kind"), "after_completion is for async_unpollable deletions",
                                 "use get_absent or find_empty"))
    return issues


def _check_aimed(at: tuple, r: Resource, tenant: set[str], smap: SourceMap) -> list[Issue]:
    """A find (and a fan-out) must be aimed at one tenant: its request names a tenant variable, or its
    ``match`` keeps only items equal to one. A find whose request names none would list every
    customer's records, and the deletes would follow it. Recorded ids are read by the account column,
    and a fan-out's headers (``on-behalf-of: {subuser}``) go with every request of its tenant."""
    issues: list[Issue] = []
    fan_out = r.fan_out
    if fan_out is not None and fan_out.request is not None and not (
            _placeholders(fan_out.request) & {"account_id"} or _match_names(fan_out.match) & {"account_id"}):
        issues.append(smap.issue(at + ("fan_out", "request"), "the fan-out is not aimed at one account: its request "
                                 "names no {account_id} and it has no match naming {account_id}",
                                 "filter the listing by {account_id}, or add match: {<field>: \"{account_id}\"}",
                                 field_path=_path(at + ("fan_out", "request"))))
    headers = _header_names(fan_out.headers) if fan_out is not None else set()
    find = r.find
    if find.request is not None and not (
            (_placeholders(find.request) | headers | _match_names(find.match)) & tenant):
        issues.append(smap.issue(at + ("find", "request"), "the find is not aimed at one tenant: its request names "
                                 f"none of {', '.join('{' + n + '}' for n in sorted(tenant))} and it has no match "
                                 "naming one", "an unaimed find lists every customer's records, and the deletes "
                                 "follow it: filter by the tenant, or add a match",
                                 field_path=_path(at + ("find", "request"))))
    return issues


def _match_names(match: dict[str, str]) -> set[str]:
    return {name for template in match.values() for name in _names_or_none(template)}


def _header_names(headers: dict[str, str]) -> set[str]:
    return {name for template in headers.values() for name in _names_or_none(template)}


def _names_or_none(text: str) -> set[str]:
    try:
        return _names(text)
    except ValueError:
        return set()  # reported where the template is checked


def _check_delete(at: tuple, d: Delete, names: set[str], tenant: set[str], smap: SourceMap) -> list[Issue]:
    issues = _check_request(at + ("request",), d.request, names, smap)
    used = _placeholders(d.request)
    if d.scope in ("record", "subject"):
        wanted = "id" if d.batch == 1 else "ids"
        if wanted not in used:
            issues.append(smap.issue(at + ("request",), f"a {d.scope} delete must name {{{wanted}}} in its request "
                                     "(otherwise it is not aimed at the found records)",
                                     "batch: 1 takes {id}; batch > 1 takes {ids}", field_path=_path(at + ("request",))))
    elif not used & tenant:
        issues.append(smap.issue(at + ("request",), f"a {d.scope} delete must be filtered by the tenant: name "
                                 f"one of {', '.join('{' + n + '}' for n in sorted(tenant))}",
                                 "an unfiltered delete would erase every customer's data",
                                 field_path=_path(at + ("request",))))
    if d.ids_repeat and d.batch == 1:
        issues.append(smap.issue(at + ("ids_repeat",), "ids_repeat needs batch > 1"))
    return issues


def _check_names(at: tuple, text: str, allowed: set[str], smap: SourceMap) -> list[Issue]:
    try:
        names = _names(text)
    except ValueError as exc:
        return [smap.issue(at, f"not a template: {exc}", "placeholders are {name}; write {{ for a brace")]
    return [smap.issue(at, f"unknown placeholder {{{name}}}",
                       f"available here: {', '.join('{' + n + '}' for n in sorted(allowed))}")
            for name in sorted(names - allowed)]


def _check_request(at: tuple, request: Request, allowed: set[str], smap: SourceMap) -> list[Issue]:
    issues = []
    for where, text in _templates(request):
        issues += _check_names(at + where, text, allowed, smap)
    for where, key in _keys(request):
        if key.lower() in DELETE_ALL_SWITCHES:
            issues.append(smap.issue(at + where, f"{key!r} switches the endpoint to delete everything; refused",
                                     "aim the request at ids or a tenant filter", at_key=True))
    return issues


def _templates(request: Request) -> list[tuple[tuple, str]]:
    found = [(("path",), request.path)]
    found += [(("query", k), str(v)) for k, v in request.query.items()]
    found += [(("headers", k), v) for k, v in request.headers.items()]
    found += [(("form", k), v) for k, v in (request.form or {}).items()]
    found += _strings(request.body, ("body",))
    return found


def _keys(request: Request) -> list[tuple[tuple, str]]:
    keys = [(("query", k), k) for k in request.query] + [(("form", k), k) for k in (request.form or {})]
    return keys + _body_keys(request.body, ("body",))


def _strings(value: Any, at: tuple) -> list[tuple[tuple, str]]:
    if isinstance(value, str):
        return [(at, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, at + (k,))]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, at + (i,))]
    return []


def _body_keys(value: Any, at: tuple) -> list[tuple[tuple, str]]:
    if isinstance(value, dict):
        return [(at + (k,), k) for k in value] + [s for k, v in value.items() for s in _body_keys(v, at + (k,))]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _body_keys(v, at + (i,))]
    return []


def _placeholders(request: Request) -> set[str]:
    names: set[str] = set()
    for _, text in _templates(request):
        try:
            names |= _names(text)
        except ValueError:
            pass
    return names


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _names(text: str) -> set[str]:
    """Placeholder names of a template; only bare ``{name}`` is allowed."""
    names = set()
    for _, field_name, format_spec, conversion in string.Formatter().parse(text):
        if field_name is None:
            continue
        if format_spec or conversion or not _NAME.match(field_name):
            raise ValueError(f"{{{field_name}}} is not a plain placeholder")
        names.add(field_name)
    return names


def _path(at: tuple) -> str:
    return ".".join(str(p) for p in at)
