"""The checks a schema cannot express: placeholders each request may name, every find and delete aimed at
one tenant, references between resources, assumptions declared, and a hosted spec's agreement with
systems.yaml. Each problem is an ``Issue`` naming file:line:field."""

from __future__ import annotations

from typing import Any

from retention.rules.errors import Issue
from retention.rules.yamlsource import SourceMap
from retention.subprocessors.spec.completion import AsyncJob, AsyncUnpollable, SoftDelete
from retention.subprocessors.spec.connector import ConnectorSpec
from retention.subprocessors.spec.delete import Delete
from retention.subprocessors.spec.find import ListedFanOut, ListedFind
from retention.subprocessors.spec.request import Request
from retention.subprocessors.spec.resource import AfterCompletion, GetAbsent, Resource
from retention.subprocessors.spec.templates import Loc, dotted, keys, names, names_in, placeholders, templates
from retention.subprocessors.spec.transport import check_transport

# Switches that turn a provider's delete endpoint into "delete everything"; refused in any request.
DELETE_ALL_SWITCHES = frozenset({"delete_all", "delete_all_contacts", "deleteall", "all", "purge_all", "truncate"})


def check(spec: ConnectorSpec, smap: SourceMap, *, subprocessors: set[str] | None,
          data_classes: set[str] | None) -> list[Issue]:
    issues: list[Issue] = []
    if subprocessors is not None and spec.subprocessor not in subprocessors:
        issues.append(smap.issue(("subprocessor",), f"unknown subprocessor {spec.subprocessor!r}",
                                 f"known (data_classes.yaml subprocessors): {', '.join(sorted(subprocessors))}"))
    classes: list[tuple[Loc, str]] = [(("manual", "data_class"), spec.manual.data_class)] if spec.manual else []
    classes += [(("resources", name, "data_class"), r.data_class) for name, r in spec.resources.items()]
    for at, name in classes:
        if data_classes is not None and name not in data_classes:
            issues.append(smap.issue(at, f"unknown data class {name!r}"))
    issues += check_transport(spec, smap)
    if spec.test_request is not None:
        issues += _check_request(("test_request",), spec.test_request, set(), smap)
    for name, resource in spec.resources.items():
        issues += _check_resource(("resources", name), resource, smap)
        issues += _check_assumptions(spec, name, resource, smap)
        issues += _check_subject(("resources", name), resource, smap)
        issues += _check_exports(("resources", name), resource, smap)
        for i, before in enumerate(resource.after):
            if before not in spec.resources or before == name:
                issues.append(smap.issue(("resources", name, "after", i), f"no other resource named {before!r}",
                                         f"resources here: {', '.join(sorted(spec.resources))}"))
    if not issues and waves(spec) is None:
        issues.append(smap.issue(("resources",), "the resources' 'after' lists form a cycle", at_key=True,
                                 field_path="resources"))
    return issues


def outcome_assumptions(spec: ConnectorSpec, resource: str) -> list[str]:
    """Keys of the assumptions a resource's result rests on (the spec's and the resource's own)."""
    every = spec.assumptions + spec.resources[resource].assumptions
    return [a.key for a in every if a.bears_on == "outcome"]


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


def _check_resource(at: Loc, r: Resource, smap: SourceMap) -> list[Issue]:
    issues: list[Issue] = []
    tenant = {"account_id"} | (set(r.fan_out.bind) if r.fan_out else set())
    issues += _check_aimed(at, r, tenant, smap)
    if r.delete.scope in ("record", "subject") and r.max_records is None:
        issues.append(smap.issue(at + ("max_records",), f"a {r.delete.scope} delete needs max_records",
                                 "the most records one account can legitimately hold here; a preview finding "
                                 "more means the find lost its tenant filter, and nothing is deleted",
                                 at_key=True))
    if isinstance(r.fan_out, ListedFanOut):
        issues += _check_request(at + ("fan_out", "request"), r.fan_out.request, {"account_id"}, smap)
    if r.fan_out:
        for header, template in r.fan_out.headers.items():
            issues += _check_names(at + ("fan_out", "headers", header), template, tenant, smap)
    timed = {"cutoff", "cutoff_ms"} if r.delete.scope == "query" else set()  # a query delete and its preview
    if isinstance(r.find, ListedFind):
        issues += _check_request(at + ("find", "request"), r.find.request, tenant | timed, smap)
    delete_names = tenant | timed | ({"found"} if r.delete.scope in ("tenant", "query") else set())
    delete_names |= {"id"} if r.delete.batch == 1 else {"ids"}
    issues += _check_delete(at + ("delete",), r.delete, delete_names, tenant, smap)
    if isinstance(r.completion, AsyncJob):
        issues += _check_job(at + ("completion",), r, r.completion, tenant, smap)
    if isinstance(r.completion, SoftDelete) and r.completion.purge is not None:
        purge = r.completion.purge
        purge_names = tenant | ({"id"} if purge.batch == 1 else {"ids"})
        issues += _check_delete(at + ("completion", "purge"), purge, purge_names, tenant, smap)
    if isinstance(r.verify, GetAbsent):
        issues += _check_request(at + ("verify", "request"), r.verify.request, tenant | timed | {"id"}, smap)
    if isinstance(r.verify, AfterCompletion) and not isinstance(r.completion, AsyncUnpollable):
        issues.append(smap.issue(at + ("verify", "kind"), "after_completion is for async_unpollable deletions",
                                 "use get_absent or find_empty"))
    return issues


def _check_job(at: Loc, r: Resource, job: AsyncJob, tenant: set[str], smap: SourceMap) -> list[Issue]:
    issues = _check_request(at + ("status",), job.status, tenant | {"job_id"}, smap)
    if job.items is None and "job_id" not in placeholders(job.status):
        issues.append(smap.issue(at + ("status",), "a job status request must name {job_id}, "
                                 "or list jobs (items:) and find the job there by item_id",
                                 field_path=dotted(at + ("status",))))
    if job.items is not None and job.pagination is None:
        issues.append(smap.issue(at + ("items",), "a job listing needs pagination (style: none when the API has none)"))
    if isinstance(r.verify, GetAbsent):  # the ids would have to wait with the job in Airflow's database
        issues.append(smap.issue(at[:-1] + ("verify", "kind"), "an async_job deletion is verified by a search",
                                 "use find_empty (search again once the job is done)"))
    return issues


def _check_aimed(at: Loc, r: Resource, tenant: set[str], smap: SourceMap) -> list[Issue]:
    """A find (and a fan-out) must be aimed at one tenant: its request names a tenant variable, or its
    ``match`` keeps only items equal to one. A find whose request names none would list every
    customer's records, and the deletes would follow it. Recorded ids are read by the account column,
    and a fan-out's headers (``on-behalf-of: {subuser}``) go with every request of its tenant."""
    issues: list[Issue] = []
    fan_out = r.fan_out
    if isinstance(fan_out, ListedFanOut) and not (
            placeholders(fan_out.request) & {"account_id"} or names_in(fan_out.match) & {"account_id"}):
        issues.append(smap.issue(at + ("fan_out", "request"), "the fan-out is not aimed at one account: its request "
                                 "names no {account_id} and it has no match naming {account_id}",
                                 "filter the listing by {account_id}, or add match: {<field>: \"{account_id}\"}",
                                 field_path=dotted(at + ("fan_out", "request"))))
    headers = names_in(fan_out.headers) if fan_out is not None else set()
    find = r.find
    if isinstance(find, ListedFind) and not ((placeholders(find.request) | headers | names_in(find.match)) & tenant):
        issues.append(smap.issue(at + ("find", "request"), "the find is not aimed at one tenant: its request names "
                                 f"none of {', '.join('{' + n + '}' for n in sorted(tenant))} and it has no match "
                                 "naming one", "an unaimed find lists every customer's records, and the deletes "
                                 "follow it: filter by the tenant, or add a match",
                                 field_path=dotted(at + ("find", "request"))))
    return issues


def _tenant(r: Resource) -> set[str]:
    return {"account_id"} | (set(r.fan_out.bind) if r.fan_out else set())


def _check_subject(at: Loc, r: Resource, smap: SourceMap) -> list[Issue]:
    """Each subject search names its identifier and stays inside the account's tenant (a request variable, a
    fan-out header or a match naming one): a search by e-mail alone would find the same person at every
    customer, and the deletes would follow it. Its ids go to the resource's delete, which must take ids."""
    if r.subject is None:
        return []
    issues: list[Issue] = []
    tenant = _tenant(r)
    headers = names_in(r.fan_out.headers) if r.fan_out is not None else set()
    if r.delete.scope not in ("record", "subject"):
        issues.append(smap.issue(at + ("subject",), f"a subject find needs a delete aimed at ids; this resource's "
                                 f"delete has scope {r.delete.scope}, which would erase the whole tenant",
                                 "give the resource a record or subject delete, or no subject section",
                                 at_key=True, field_path=dotted(at + ("subject",))))
    if not r.export:
        issues.append(smap.issue(at + ("subject",), "a resource whose records a person's search finds needs an "
                                 "export: an access request must return what an erasure would delete",
                                 "add export: [{kind: items}] (or get / download)", at_key=True,
                                 field_path=dotted(at + ("export",))))
    for i, find in enumerate(r.subject.find):
        where = at + ("subject", "find", i)
        issues += _check_request(where + ("request",), find.request, tenant | {find.by}, smap)
        named = placeholders(find.request) | names_in(find.match)
        if find.by not in named:
            issues.append(smap.issue(where + ("request",), f"a subject find by {find.by} must name {{{find.by}}} "
                                     "in its request or match", field_path=dotted(where + ("request",))))
        if not (named | headers) & tenant:
            issues.append(smap.issue(where + ("request",), "the subject find is not aimed at the account's tenant: "
                                     f"it names none of {', '.join('{' + n + '}' for n in sorted(tenant))} "
                                     "(request, match or the fan-out's headers)",
                                     "a search by a person's identifier alone would reach other customers' "
                                     "records: add the tenant filter (account field, subuser, subaccount)",
                                     field_path=dotted(where + ("request",))))
    return issues


def _check_exports(at: Loc, r: Resource, smap: SourceMap) -> list[Issue]:
    """A per-id export names {id} and only reads; ``items`` needs a find that lists items."""
    issues: list[Issue] = []
    for i, export in enumerate(r.export):
        where = at + ("export", i)
        if export.kind == "items":
            if not isinstance(r.find, ListedFind):
                issues.append(smap.issue(where + ("kind",), "items export needs a find that lists items; this "
                                         "resource's ids are recorded", "use kind: get or download",
                                         field_path=dotted(where + ("kind",))))
            continue
        issues += _check_request(where + ("request",), export.request, _tenant(r) | {"id"}, smap)
        if export.request.method != "GET" or export.request.body is not None or export.request.form is not None:
            issues.append(smap.issue(where + ("request", "method"), "an export only reads: GET with no body",
                                     field_path=dotted(where + ("request", "method"))))
        if "id" not in placeholders(export.request):
            issues.append(smap.issue(where + ("request",), "an export request must name {id}",
                                     field_path=dotted(where + ("request",))))
    return issues


def _check_delete(at: Loc, d: Delete, allowed: set[str], tenant: set[str], smap: SourceMap) -> list[Issue]:
    issues = _check_request(at + ("request",), d.request, allowed, smap)
    used = placeholders(d.request)
    if d.scope in ("record", "subject"):
        wanted = "id" if d.batch == 1 else "ids"
        if wanted not in used:
            issues.append(smap.issue(at + ("request",), f"a {d.scope} delete must name {{{wanted}}} in its request "
                                     "(otherwise it is not aimed at the found records)",
                                     "batch: 1 takes {id}; batch > 1 takes {ids}",
                                     field_path=dotted(at + ("request",))))
    elif not used & tenant:
        issues.append(smap.issue(at + ("request",), f"a {d.scope} delete must be filtered by the tenant: name "
                                 f"one of {', '.join('{' + n + '}' for n in sorted(tenant))}",
                                 "an unfiltered delete would erase every customer's data",
                                 field_path=dotted(at + ("request",))))
    if d.ids_repeat and d.batch == 1:
        issues.append(smap.issue(at + ("ids_repeat",), "ids_repeat needs batch > 1"))
    return issues


def _check_names(at: Loc, text: str, allowed: set[str], smap: SourceMap) -> list[Issue]:
    try:
        used = names(text)
    except ValueError as exc:
        return [smap.issue(at, f"not a template: {exc}", "placeholders are {name}; write {{ for a brace")]
    return [smap.issue(at, f"unknown placeholder {{{name}}}",
                       f"available here: {', '.join('{' + n + '}' for n in sorted(allowed))}")
            for name in sorted(used - allowed)]


def _check_request(at: Loc, request: Request, allowed: set[str], smap: SourceMap) -> list[Issue]:
    issues = []
    for where, text in templates(request):
        issues += _check_names(at + where, text, allowed, smap)
    for where, key in keys(request):
        if key.lower() in DELETE_ALL_SWITCHES:
            issues.append(smap.issue(at + where, f"{key!r} switches the endpoint to delete everything; refused",
                                     "aim the request at ids or a tenant filter", at_key=True))
    return issues
