"""Listing timestamps parsed with ``datetime.fromisoformat`` instead of dateutil.

Why: botocore parses every timestamp of a response with dateutil (~0.1 ms each), so parsing a 1,000-key
listing page costs the client about as much as moto spends producing it. bench/README.md has the
figures with and without this parser.

What it relies on: ``ResponseParserFactory.set_parser_defaults(timestamp_parser=...)`` is botocore's
documented hook, but the factory is reached through two private attributes, ``client._endpoint`` and
``Endpoint._response_parser_factory`` (botocore 1.44). The factory is shared by the clients of the
client's botocore session, so they all get the parser; it is read each time a response is parsed.

If botocore changes: when either attribute is missing or the factory refuses the call,
``set_timestamp_parser`` installs nothing, logs a warning and returns False, and the client keeps
botocore's own parser: the same values, only slower. A value ``fromisoformat`` cannot read goes to
botocore's parser, so the parsed values do not depend on the parser installed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from botocore.utils import parse_timestamp as botocore_parse_timestamp

from retention.stores.s3.calls import S3Client

log = logging.getLogger(__name__)

TimestampParser = Callable[[str], datetime]


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 timestamp with ``datetime.fromisoformat``; anything else with botocore's parser."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        parsed: datetime = botocore_parse_timestamp(value)
        return parsed


def set_timestamp_parser(client: S3Client, parser: TimestampParser | None = parse_timestamp) -> bool:
    """Have ``client`` (and its session's other clients) parse timestamps with ``parser``; None restores
    botocore's own. Returns whether the parser was installed (False: botocore's parser stays)."""
    factory = getattr(getattr(client, "_endpoint", None), "_response_parser_factory", None)
    set_defaults = getattr(factory, "set_parser_defaults", None)
    if callable(set_defaults):
        try:
            set_defaults(timestamp_parser=parser)
            return True
        except TypeError:  # a factory that no longer takes this keyword
            pass
    log.warning("botocore's response parser factory is not where this botocore version kept it "
                "(client._endpoint._response_parser_factory.set_parser_defaults); timestamps are parsed "
                "by botocore's own parser (the same values, slower)")
    return False
