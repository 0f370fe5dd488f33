"""Stores: one small interface (``base.Store``) over SQL tables and S3 prefixes."""

from __future__ import annotations

from retention.rules.inventory import S3Location, SqlLocation
from retention.stores.base import Outcome, PendingBatch, Residue, Retained, Selector, Store

__all__ = ["Outcome", "PendingBatch", "Residue", "Retained", "Selector", "Store", "open_store"]


def open_store(location_id: str, spec: SqlLocation | S3Location) -> Store:
    """Build a store from its Airflow Connection (credentials never leave Airflow's secrets)."""
    if isinstance(spec, SqlLocation):
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        from retention.stores.sql import SqlStore

        return SqlStore(location_id, spec, PostgresHook(postgres_conn_id=spec.conn_id).get_sqlalchemy_engine())
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from retention.stores.s3 import S3Store

    return S3Store(location_id, spec, S3Hook(aws_conn_id=spec.conn_id).get_conn())
