"""The store's timestamp parser (``retention.stores.s3.fast_timestamps``) against a real S3 endpoint.

What is pinned down: it parses to the same instants as botocore's parser, hands what it cannot read to
botocore's parser, and when botocore no longer keeps its parser factory where this module reaches for it,
nothing is installed, a warning says so, and the store works on botocore's own parser.

Which parser a client uses shows in the parsed values' tzinfo: ``datetime.fromisoformat`` gives
``datetime.UTC``, botocore's parser gives dateutil's ``tzutc()``.
"""

from __future__ import annotations

import logging
from datetime import UTC, timedelta
from typing import Any

import boto3
import pytest
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from retention.rules.inventory import S3Location
from retention.stores.base import Selector
from retention.stores.s3 import S3Store
from retention.stores.s3.fast_timestamps import parse_timestamp, set_timestamp_parser

ACCOUNT = "acct_1001"
TEMPLATE = "tenants/{account_id}/recordings/"


def fresh_client(endpoint: str) -> Any:
    """A client of its own botocore session: the parser factory is per session, so the session-wide
    fixture client and other tests' stores are not affected."""
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                          aws_access_key_id="testing", aws_secret_access_key="testing")


def listed_times(client: Any, bucket: str) -> list[Any]:
    return [o["LastModified"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]


class EndpointOfAChangedBotocore:
    """The client's real endpoint, except that it no longer has ``_response_parser_factory``: what a
    botocore release that moved or renamed that private attribute looks like to ``set_timestamp_parser``."""

    def __init__(self, endpoint: Any) -> None:
        self._real = endpoint

    def __getattr__(self, name: str) -> Any:
        if name == "_response_parser_factory":
            raise AttributeError(name)
        return getattr(self._real, name)


@pytest.fixture
def bucket(s3_client, make_bucket) -> str:
    name = make_bucket()
    for i in range(3):
        s3_client.put_object(Bucket=name, Key=f"tenants/{ACCOUNT}/recordings/{i}.wav", Body=b"x")
    return name


@pytest.mark.parametrize("text", ["2025-03-01T12:00:00.000Z", "2025-03-01T12:00:00Z",
                                  "2025-03-01T13:00:00.123456+01:00"])
def test_iso_timestamps_parse_to_the_same_instant_as_botocores_parser(text: str) -> None:
    assert parse_timestamp(text) == botocore_parse_timestamp(text)


def test_a_timestamp_fromisoformat_cannot_read_goes_to_botocores_parser() -> None:
    text = "Sat, 01 Mar 2025 12:00:00 GMT"  # RFC 1123, as in an HTTP Last-Modified header
    assert parse_timestamp(text) == botocore_parse_timestamp(text)


def test_the_store_installs_its_parser_and_listed_times_are_the_same_instants(s3_endpoint, bucket) -> None:
    client = fresh_client(s3_endpoint)
    by_botocore = listed_times(client, bucket)
    assert all(t.tzinfo is not UTC for t in by_botocore)  # botocore's own parser until a store is built
    S3Store("recordings", S3Location(kind="s3", data_class="call_recordings", conn_id="object_store",
                                     bucket=bucket, key_template=TEMPLATE), client)
    by_fromisoformat = listed_times(client, bucket)
    assert all(t.tzinfo is UTC for t in by_fromisoformat)
    assert by_fromisoformat == by_botocore


def test_none_puts_botocores_parser_back(s3_endpoint, bucket) -> None:
    client = fresh_client(s3_endpoint)
    assert set_timestamp_parser(client) is True
    assert all(t.tzinfo is UTC for t in listed_times(client, bucket))
    assert set_timestamp_parser(client, None) is True
    assert all(t.tzinfo is not UTC for t in listed_times(client, bucket))


def test_a_botocore_without_the_private_factory_keeps_its_own_parser_and_the_store_works(
        s3_endpoint, bucket, caplog) -> None:
    client = fresh_client(s3_endpoint)
    client._endpoint = EndpointOfAChangedBotocore(client._endpoint)
    with caplog.at_level(logging.WARNING, logger="retention.stores.s3.fast_timestamps"):
        assert set_timestamp_parser(client) is False
        store = S3Store("recordings", S3Location(kind="s3", data_class="call_recordings", conn_id="object_store",
                                                 bucket=bucket, key_template=TEMPLATE), client)
    assert sum("botocore's own parser" in r.getMessage() for r in caplog.records) == 2  # the call and the store
    times = listed_times(client, bucket)
    assert all(t.tzinfo is not UTC for t in times)  # still botocore's parser
    newest = max(times)
    assert store.count(Selector(ACCOUNT, anchor="created_at", cutoff=min(times) - timedelta(seconds=1))) == 0
    assert store.count(Selector(ACCOUNT, anchor="created_at", cutoff=newest)) == 3
    deleted = sum(store.delete(batch).affected
                  for batch in store.batches(Selector(ACCOUNT, anchor="created_at", cutoff=newest)))
    assert deleted == 3 and store.verify(Selector(ACCOUNT)).remaining == 0
