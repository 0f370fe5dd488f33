"""Stores: one small interface (``base.Store``) over SQL tables and S3 prefixes."""

from __future__ import annotations

from functools import cache

from retention.rules.inventory import S3Location, SqlLocation
from retention.stores.base import Outcome, PendingBatch, Residue, Retained, Selector, Store

__all__ = ["Outcome", "PendingBatch", "Residue", "Retained", "Selector", "Store", "open_store", "s3_client"]


def open_store(location_id: str, spec: SqlLocation | S3Location) -> Store:
    """Build a store from its Airflow Connection (credentials never leave Airflow's secrets)."""
    if isinstance(spec, SqlLocation):
        from retention.stores.sql import SqlStore

        return SqlStore(location_id, spec, _sql_engine(spec.conn_id))
    from retention.stores.s3 import S3Store

    return S3Store(location_id, spec, s3_client(spec.conn_id))


# One engine (one connection pool) and one client per Connection and process, however many locations
# and phases use it: a sweep must not open a pool per table against a production database. Keyed by
# the Connection's definition, so a changed Connection gets a new engine.
def _sql_engine(conn_id: str):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return _engine_for(PostgresHook(postgres_conn_id=conn_id).sqlalchemy_url)


@cache
def _engine_for(url):  # a sqlalchemy URL: immutable and hashable
    import sqlalchemy

    return sqlalchemy.create_engine(url, pool_pre_ping=True)


def s3_client(conn_id: str):
    """A boto3 S3 client from an Airflow Connection, one per Connection and process."""
    from airflow.sdk import BaseHook

    return _client_for(conn_id, BaseHook.get_connection(conn_id).get_uri())


@cache
def _client_for(conn_id: str, definition: str):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=conn_id).get_conn()
