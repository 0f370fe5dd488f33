"""The spec file: an API spec (connection, auth, resources), a manual one (a person files the request) or a
hosted one (systems.yaml's locations erase the rows the provider hosts)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl, model_validator

from retention.rules.durations import IsoDuration
from retention.rules.model import Duration, Identifier, Strict, Text
from retention.subprocessors.spec.auth import Auth
from retention.subprocessors.spec.request import Defaults, HeaderName, Preflight, Status
from retention.subprocessors.spec.resource import Assumption, ProviderRetention, Resource


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


class Api(Strict):
    """What an API spec must have, as one value: ``ConnectorSpec.api`` gives it where the validator has
    checked that the spec has each part."""

    conn_id: str
    base_url: str
    auth: Auth


class ConnectorSpec(Strict):
    subprocessor: Identifier  # a key of data_classes.yaml subprocessors
    docs: list[HttpUrl] = Field(min_length=1)  # the provider documentation the spec follows
    conn_id: Identifier | None = None  # required with resources
    base_url: HttpUrl | None = None  # required with resources
    regions: dict[Identifier, HttpUrl] = Field(default_factory=dict)  # chosen by the Connection's extra "region"
    auth: Auth | None = None  # required with resources
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
    def _api_or_manual(self) -> ConnectorSpec:
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

    @property
    def api(self) -> Api:
        """The connection, base URL and auth of an API spec; ValueError for a manual or hosted one (the
        validator gives every spec with resources all three)."""
        if self.conn_id is None or self.auth is None or self.base_url is None:
            raise ValueError(f"{self.subprocessor}: not an API spec (no conn_id, auth and base_url)")
        return Api(conn_id=self.conn_id, base_url=str(self.base_url), auth=self.auth)

    def manual_spec(self) -> Manual:
        """The manual part; ValueError for a spec that has none."""
        if self.manual is None:
            raise ValueError(f"{self.subprocessor}: not a manual spec")
        return self.manual
