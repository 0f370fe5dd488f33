"""What a spec's client takes from its Airflow Connection: where to send (the host wins over the spec's base
URL) and the secrets (login, password, extra), which never come from the YAML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retention.subprocessors.errors import SubprocessorError
from retention.subprocessors.spec import ConnectorSpec


@dataclass(frozen=True)
class Credentials:
    """What the spec's auth needs from the Airflow Connection."""

    base_url: str
    login: str | None = None
    password: str | None = None
    extra: dict[str, Any] | None = None
    from_connection_host: bool = False  # the Connection names the host: it wins over resources' own hosts

    def __repr__(self) -> str:  # never a secret in a log line or a traceback's locals
        return f"Credentials(base_url={self.base_url!r}, login={'***' if self.login else None})"

    @classmethod
    def from_connection(cls, spec: ConnectorSpec) -> Credentials:
        """The Connection ``spec.conn_id``: its host (with schema and port) overrides the spec's base URL,
        as does its extra ``region`` (one of the spec's regions)."""
        from airflow.sdk import BaseHook

        return cls.of(spec, BaseHook.get_connection(spec.api.conn_id))

    @classmethod
    def of(cls, spec: ConnectorSpec, conn: Any) -> Credentials:
        """Credentials from an Airflow ``Connection`` already fetched (a trigger fetches it asynchronously)."""
        extra = conn.extra_dejson or {}
        base = spec.api.base_url
        if extra.get("region"):
            region = extra["region"]
            if region not in spec.regions:
                raise SubprocessorError(f"{spec.subprocessor}: Connection {spec.conn_id} names region {region!r}; "
                                        f"the spec knows {', '.join(sorted(spec.regions)) or 'none'}")
            base = str(spec.regions[region])
        if conn.host:
            scheme = conn.schema or "https"
            base = f"{scheme}://{conn.host}" + (f":{conn.port}" if conn.port else "")
        return cls(base_url=base, login=conn.login, password=conn.password, extra=extra,
                   from_connection_host=bool(conn.host))
