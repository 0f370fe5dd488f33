"""``S3Parts``: what reading one location's objects takes, built once by ``S3Store`` and shared by the jobs that
list and read (``verification``, ``export``)."""

from __future__ import annotations

from dataclasses import dataclass

from retention.rules.inventory import S3Location
from retention.stores.s3.calls import S3Calls
from retention.stores.s3.listing import Lister
from retention.stores.s3.selection import Selection


@dataclass(frozen=True)
class S3Parts:
    calls: S3Calls  # the client, with retries and error wording
    spec: S3Location
    lister: Lister  # pages of the location in key order
    selection: Selection  # which listed records a selector takes
    workers: int  # concurrent HEAD / GET calls
