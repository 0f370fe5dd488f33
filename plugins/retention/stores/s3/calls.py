"""Every S3 call of one location: bounded retries on throttling, 5xx and dropped connections, and error
wording that names location, bucket, account and error code, never a key.

botocore exceptions are not chained (``from None``): theirs can quote an endpoint URL or a resource ARN
that contains a key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)

# boto3 builds its client classes at run time and no stubs are installed: the client is untyped.
S3Client = Any
Response = dict[str, Any]  # a parsed S3 response
T = TypeVar("T")

RETRY_ATTEMPTS = 6  # per S3 call, on throttling, 5xx and dropped connections
RETRY_WAIT_INITIAL = 0.2  # seconds, doubled per attempt, with jitter
RETRY_WAIT_MAX = 5.0
RETRY_DEADLINE = 90.0  # seconds per call, whatever the attempt count

TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestTimeout", "InternalError", "ServiceUnavailable", "500", "502", "503", "504",
})
GONE_CODES = frozenset({"404", "NoSuchKey", "NoSuchVersion"})
MARKER_CODES = frozenset({"405", "MethodNotAllowed"})  # HEAD on a delete marker's version id


class S3StoreError(RuntimeError):
    """An S3 call or a deletion failed; the message names location, bucket, account and counts only."""


class S3Calls:
    """One location's S3 calls with bounded retries; failures become ``S3StoreError``."""

    def __init__(self, client: S3Client, location_id: str, bucket: str) -> None:
        self.client = client
        self.location_id = location_id
        self.bucket = bucket

    def where(self, account: str | None) -> str:
        """The start of every message: location, bucket and (when known) account."""
        where = f"S3 location {self.location_id}: bucket {self.bucket}"
        return where if account is None else f"{where}, account {account}"

    def request(self, operation: str, account: str | None, *, tolerate: frozenset[str] = frozenset(),
                **params: Any) -> Response:
        """One S3 call with bounded retries. A tolerated error code comes back as {"Error": {"Code"}}."""
        method = getattr(self.client, operation)
        try:
            response: Response = self._retrying(operation, account)(lambda: method(**params))
        except ClientError as exc:
            code = error_code(exc)
            if code in tolerate:
                return {"Error": {"Code": code}}
            raise S3StoreError(f"{self.where(account)}: {operation} failed ({describe(exc)})") from None
        except BotoCoreError as exc:
            raise S3StoreError(f"{self.where(account)}: {operation} failed ({describe(exc)})") from None
        return response

    def call(self, operation: str, account: str | None, fn: Callable[[], T]) -> T:
        """``fn`` (which makes the S3 call ``operation``) with bounded retries."""
        try:
            return self._retrying(operation, account)(fn)
        except (ClientError, BotoCoreError) as exc:
            raise S3StoreError(f"{self.where(account)}: {operation} failed ({describe(exc)})") from None

    def head(self, key: str, version_id: str | None, account: str | None) -> Response | None:
        """HEAD one version: its headers, {"DeleteMarker": True} for a marker, None when it is gone."""
        params = {"Bucket": self.bucket, "Key": key}
        if version_id is not None:
            params["VersionId"] = version_id
        response = self.request("head_object", account, tolerate=GONE_CODES | MARKER_CODES, **params)
        code = response.get("Error", {}).get("Code")
        if code in GONE_CODES:
            return None
        if code in MARKER_CODES:
            return {"DeleteMarker": True}
        return response

    def _retrying(self, operation: str, account: str | None) -> Retrying:
        def before_sleep(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome is not None else None
            log.warning("%s: %s failed (%s), retry %d of %d", self.where(account), operation,
                        describe(failure), state.attempt_number, RETRY_ATTEMPTS - 1)

        return Retrying(retry=retry_if_exception(is_transient), reraise=True, before_sleep=before_sleep,
                        wait=wait_exponential_jitter(multiplier=RETRY_WAIT_INITIAL, max=RETRY_WAIT_MAX),
                        stop=stop_after_attempt(RETRY_ATTEMPTS) | stop_after_delay(RETRY_DEADLINE))


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or exc.response.get("ResponseMetadata", {})
               .get("HTTPStatusCode", "Unknown"))


def describe(exc: BaseException | None) -> str:
    """Error code and HTTP status, or the exception class: never the message (it can quote a key)."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{error_code(exc)}, HTTP {status}" if status else error_code(exc)
    return type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error_code(exc) in TRANSIENT_CODES or status >= 500
    return isinstance(exc, (HTTPClientError, BotoConnectionError))
