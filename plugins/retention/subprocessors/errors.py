"""The errors of a subprocessor erasure: each names the subprocessor, the operation and the status, never data."""

from __future__ import annotations


class SubprocessorError(RuntimeError):
    """A call failed for good; the message names subprocessor, operation and status, never data."""


class CallDeadlineExceeded(SubprocessorError):
    """A call reached ``defaults.call_deadline_seconds`` (a provider asking to wait past it, or tries that
    took as long) and ended without sending more. An ordinary task failure: safe to run again, and Airflow
    runs it again where the task has retries."""


class RecordsBoundExceeded(SubprocessorError):
    """The previews found more records than the resource's ``max_records``: a refusal, never tried again."""


class CredentialsRefused(SubprocessorError):
    """The provider's token endpoint did not give an access token for the Connection's client credentials:
    ``status`` is its answer, ``detail`` says so without the subprocessor's name."""

    def __init__(self, who: str, detail: str, status: int) -> None:
        super().__init__(f"{who}: {detail}")
        self.detail = detail
        self.status = status
