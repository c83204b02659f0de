"""The request/answer pattern every worker service follows, written once.

A request event carries a task token; the worker does the work and publishes the answer event (or a
`*.failed` event with a code) carrying the same token. Domain logic signals an expected failure by
raising `StepError`; anything else propagates so the SQS message is retried and, after
maxReceiveCount, lands in the DLQ.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from agentwire_contracts import telemetry
from agentwire_contracts.envelope import Event, EventData, Metadata
from agentwire_contracts.failure import FailureData
from agentwire_contracts.parsing import InvalidEvent, parse_as
from agentwire_contracts.publish import EventPublisher

D = TypeVar("D", bound=EventData)


class StepError(Exception):
    """An expected, typed failure of a step: answered with a failure event, not retried by SQS."""

    def __init__(self, code: str, message: str, *, retryable: bool = False, retry_after_s: float | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s


def failure_answer(
    request_metadata: Metadata, failure: type[FailureData], error: StepError, *, source: str | None = None
) -> Event[Any]:
    data = failure(
        code=error.code, message=error.message[:4096], retryable=error.retryable, retry_after_s=error.retry_after_s
    )
    trace = telemetry.trace_fields(request_metadata)
    return Event.create(
        data,
        tenant_id=request_metadata.tenant_id,
        run_id=request_metadata.run_id,
        causation_id=request_metadata.event_id,
        trace_header=trace["trace_header"],
        task_token=request_metadata.task_token,
        traceparent=trace["traceparent"],
        source=source,
    )


def _metadata_of_invalid(body: str | dict[str, Any]) -> Metadata | None:
    """Best effort: the metadata of an event whose data is invalid, so the run can be told at once."""
    try:
        envelope = json.loads(body) if isinstance(body, str) else body
        return Metadata.model_validate(envelope["detail"]["metadata"], extra="ignore")
    except Exception:
        return None


def answer_request(
    body: str | dict[str, Any],
    *,
    request: type[D],
    failure: type[FailureData],
    work: Callable[[Event[D]], EventData],
    publisher: EventPublisher,
    source: str | None = None,
) -> Event[Any]:
    """Parse the request, run `work`, publish its answer (or a typed failure). Returns what was published.

    The answer continues the current span's trace (see `telemetry.answer`); `source` names the answering
    service when it is not the detail-type's usual producer."""
    try:
        event = parse_as(request, body)
    except InvalidEvent as exc:
        metadata = _metadata_of_invalid(body)
        if metadata is not None and metadata.task_token:
            # Tell the waiting run now rather than after its timeout; the message still goes to the DLQ.
            invalid = StepError(InvalidEvent.code, str(exc)[:1000])
            publisher.publish_one(failure_answer(metadata, failure, invalid, source=source))
        raise
    try:
        answer = telemetry.answer(event, work(event), source=source)
    except StepError as error:
        answer = failure_answer(event.metadata, failure, error, source=source)
    publisher.publish_one(answer)
    return answer
