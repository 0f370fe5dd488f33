"""Stores: one small interface (``base.Store``) over every place data lives, one kind per ``kinds.KINDS`` entry."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from retention.rules.inventory import LocationSpec
from retention.stores.base import Due, Outcome, PendingBatch, Residue, Retained, Selector, Store, Tally
from retention.stores.kinds import kind_of

if TYPE_CHECKING:
    from sqlalchemy import URL, Engine

__all__ = ["Due", "Outcome", "PendingBatch", "Residue", "Retained", "Selector", "Store", "open_store", "s3_client",
           "sql_engine", "Tally"]


def open_store(location_id: str, spec: LocationSpec) -> Store:
    """Build a store from its Airflow Connection (credentials never leave Airflow's secrets)."""
    return kind_of(spec).open(location_id, spec)


# One engine (one connection pool) and one client per Connection and process, however many locations
# and phases use it: a sweep must not open a pool per table against a production database. Keyed by
# the Connection's definition, so a changed Connection gets a new engine.
def sql_engine(conn_id: str) -> Engine:
    """A SQLAlchemy engine for a PostgreSQL Connection, one per Connection and process."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    url: URL = PostgresHook(postgres_conn_id=conn_id).sqlalchemy_url
    return _engine_for(url)


@cache
def _engine_for(url: URL) -> Engine:  # a sqlalchemy URL: immutable and hashable
    import sqlalchemy

    # hide_parameters: a failed statement's message must not carry its bound values (a person's identifiers).
    return sqlalchemy.create_engine(url, pool_pre_ping=True, hide_parameters=True)


def s3_client(conn_id: str) -> Any:  # a boto3 client: its type exists at run time only
    """A boto3 S3 client from an Airflow Connection, one per Connection and process."""
    from airflow.sdk import BaseHook

    return _client_for(conn_id, BaseHook.get_connection(conn_id).get_uri())


@cache
def _client_for(conn_id: str, definition: str) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=conn_id).get_conn()
