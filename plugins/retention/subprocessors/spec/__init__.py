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
    (the preview count) in tenant- and query-scope deletes; in a subject search (``subject.find``), the
    identifier kind it searches ``by`` (``{email}``, ``{phone}``, ``{visitor_id}``, ``{user_id}``); ``id`` in
    an export's per-record request. A value that is a whole placeholder keeps
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
    A subject search (one person's records) is aimed at the account's tenant like a find, names its
    identifier (and keeps only items whose ``identifier`` field holds it), feeds only an id-aimed delete
    (never a tenant- or query-scope one), and its resource has an ``export``; an export request is a GET
    naming ``{id}``. Identifier values go into requests only through the renderer (percent-encoded in a
    path, encoded by the client in a query, JSON in a body), and one holding a quote or backslash is
    refused before any call (``retention.subprocessors.subjects``).

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
    only on loopback (127.0.0.0/8, ::1, localhost), and so is an OAuth2 ``token_url`` given as a URL (as
    a path it is on the base URL's host). Secrets come only from the Airflow Connection ``conn_id``
    (``auth.kind``: basic, bearer, headers, oauth2_client_credentials). ``defaults`` bounds every call: a
    response body past ``max_response_bytes`` is refused unread, and a call (with its retries and the
    provider's Retry-After waits) ends at ``call_deadline_seconds``.

Hosted
    A provider that hosts systems.yaml's locations (Heroku: the shared application database) gets a
    ``hosted`` spec instead of resources: the customer's rows are erased by those locations, and the
    loader checks, against the inventory, that they exist and are keyed by account.

Modules
    One model per variant, told apart by its tag (``style:`` of a pagination, ``kind:`` of an auth, a
    completion, a verification; for a find and a fan-out, which of ``request`` / ``recorded`` it gives), each
    with only its own fields, required where the loader requires them: ``request``, ``pagination``, ``auth``,
    ``find``, ``delete``, ``completion``, ``subject`` (a person's searches, and exports), ``resource``,
    ``connector`` (the file). ``checks`` and
    ``transport`` hold what a schema cannot say; ``loading`` reads the files.
"""

from retention.subprocessors.spec.auth import Auth, OAuth2ClientCredentials
from retention.subprocessors.spec.checks import DELETE_ALL_SWITCHES, check, check_hosted, outcome_assumptions, waves
from retention.subprocessors.spec.completion import AsyncJob, AsyncUnpollable, Completion, SoftDelete, Sync
from retention.subprocessors.spec.connector import ConnectorSpec, Hosted, Manual, RateLimit
from retention.subprocessors.spec.delete import Delete, ItemResults, Outcomes
from retention.subprocessors.spec.find import (
           FanOut,
           Find,
           ListedFanOut,
           ListedFind,
           RecordedFanOut,
           RecordedFind,
           RecordedIds,
)
from retention.subprocessors.spec.loading import load_spec, load_specs
from retention.subprocessors.spec.pagination import Pagination
from retention.subprocessors.spec.request import Defaults, Preflight, Request
from retention.subprocessors.spec.resource import AfterCompletion, FindEmpty, GetAbsent, Resource, Verify
from retention.subprocessors.spec.transport import is_loopback, secure_url

__all__ = ["DELETE_ALL_SWITCHES", "AfterCompletion", "AsyncJob", "AsyncUnpollable", "Auth", "Completion",
           "ConnectorSpec", "Defaults", "Delete", "FanOut", "Find", "FindEmpty", "GetAbsent", "Hosted",
           "ItemResults", "ListedFanOut", "ListedFind", "Manual", "OAuth2ClientCredentials", "Outcomes",
           "Pagination", "Preflight", "RateLimit", "RecordedFanOut", "RecordedFind", "RecordedIds", "Request",
           "Resource", "SoftDelete", "Sync", "Verify", "check", "check_hosted", "is_loopback", "load_spec",
           "load_specs", "outcome_assumptions", "secure_url", "waves"]
