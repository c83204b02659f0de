"""The shape shared by every `*.failed` answer event."""

from __future__ import annotations

from pydantic import Field

from agentwire_contracts.envelope import EventData


class FailureData(EventData):
    """A step could not be done. `code` is the error name the state machine's Retry/Catch match on
    (e.g. `Llm.RateLimited`); `retryable` says whether trying again may succeed."""

    code: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)+$")
    message: str = Field(default="", max_length=4096)
    retryable: bool = False
    #: Seconds the sender suggests to wait before a retry (e.g. from a provider's retry-after).
    retry_after_s: float | None = Field(default=None, ge=0)
