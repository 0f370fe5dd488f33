"""A resource's subject scope and its exports: how one person's records are found at the provider, and how
what it holds is downloaded (for a data subject's access request, and for an account's return package).

``subject.find`` lists searches, each by one identifier kind (``by``): its request (or ``match``) names
``{<by>}``, bound to each of the person's values of that kind in turn, besides the account's tenant variables
(``{account_id}``, a fan-out's bindings and headers). A subject search is ALWAYS inside the account's tenant:
the loader refuses one that names no tenant variable (``checks``), as it refuses an unaimed account find. The
ids it returns are deleted by the resource's own ``delete`` (the same ids), which must therefore be aimed at
ids (scope ``record`` or ``subject``): a tenant- or query-scope delete would take the whole account.

``export`` lists how the records are downloaded, one model per ``kind:``: ``items`` (the listed items
themselves, as JSON), ``get`` (a JSON GET per id, for ids the application recorded) and ``download`` (a
GET per id whose body is a file: Twilio recording media, OpenAI file content)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from retention.rules.model import Strict
from retention.rules.subjects import IdentifierKind
from retention.subprocessors.spec.find import ListedFind
from retention.subprocessors.spec.request import DotPath, Request


class SubjectFind(ListedFind):
    """A search for one person's records: ``by`` is the identifier kind whose value is bound as ``{<by>}``;
    ``identifier`` the field of each found item that holds it. Only items whose field, normalized as the
    person's value is (``rules.subjects.normalize``: an e-mail lower-cased, a phone in E.164), equals the
    value are kept: a provider that ignored the search's filter would otherwise hand every record of the
    tenant to the deletes, and the tenant guard alone would not stop them."""

    by: IdentifierKind
    identifier: DotPath


class SubjectScope(Strict):
    find: list[SubjectFind] = Field(min_length=1)


class ItemsExport(Strict):
    """The records the find lists, written as they came (JSON)."""

    kind: Literal["items"]


class GetExport(Strict):
    """A GET per id (``request`` names ``{id}``) whose JSON answer is the record (OpenAI stored responses)."""

    kind: Literal["get"]
    request: Request


class DownloadExport(Strict):
    """A GET per id (``request`` names ``{id}``) whose body is a file, saved as ``<id><suffix>``."""

    kind: Literal["download"]
    request: Request
    suffix: Annotated[str, Field(pattern=r"^(\.[A-Za-z0-9]{1,8})?$")] = ""


Export = Annotated[ItemsExport | GetExport | DownloadExport, Field(discriminator="kind")]
