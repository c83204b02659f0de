"""The resume consumer's logic: an answer event → SendTaskSuccess / SendTaskFailure with its token;
a worker's heartbeat event → SendTaskHeartbeat.

A success answer (`*.ready`, `*.completed`) becomes the task's output: the event's `data` as the
contract model reads it (so every field the state machine's ResultSelector reads is present, defaults
included). A failure answer (`*.failed`) becomes the task's error (`code`, which Retry/Catch match on)
and cause (`message`). A task that is no longer waiting (the run was stopped or timed out) is
acknowledged, not retried: nothing could ever take the answer.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agentwire_contracts.envelope import Event, Metadata
from agentwire_contracts.failure import FailureData
from agentwire_contracts.parsing import InvalidEvent, UnknownDetailType, parse_eventbridge

from agentwire_orchestrator.manifest import ANSWER_DETAIL_TYPES, HEARTBEAT_DETAIL_TYPES
from agentwire_orchestrator.ports import StepFunctions, TaskGone

#: Step Functions takes at most 256 KiB of task output, and the output is merged into the run's state
#: (which has the same limit), so answers must stay well below it; large payloads go by claim check.
DEFAULT_MAX_OUTPUT_BYTES = 192 * 1024
#: SendTaskFailure's limits.
MAX_ERROR_CHARS = 256
MAX_CAUSE_CHARS = 32_768


class ResumeError:
    OUTPUT_TOO_LARGE = "Run.OutputTooLarge"
    INVALID_ANSWER = InvalidEvent.code  # Contract.InvalidEvent


class ResumeOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: A worker's beat: SendTaskHeartbeat, the task keeps waiting.
    HEARTBEAT = "heartbeat"
    #: The answer was too large for Step Functions: the task was failed with Run.OutputTooLarge.
    OUTPUT_TOO_LARGE = "output_too_large"
    #: The task is not waiting any more (stopped, timed out, already answered): acknowledged.
    TASK_GONE = "task_gone"
    #: No task token: nothing to resume.
    NO_TOKEN = "no_token"  # noqa: S105 (an outcome, not a secret)
    #: Not an answer event this consumer handles.
    IGNORED = "ignored"


@dataclass(frozen=True)
class ResumeResult:
    outcome: ResumeOutcome
    detail_type: str = ""
    run_id: str | None = None
    tenant_id: str | None = None
    #: The error name sent with SendTaskFailure, or the reason the task was gone.
    code: str | None = None
    output_bytes: int = 0


class InvalidAnswer(InvalidEvent):
    """The answer does not match its contract. The waiting task was failed at once (if it could be);
    the record is still raised so it lands in the DLQ, visible."""


def task_output(event: Event[Any]) -> str:
    return json.dumps(event.data.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)


def resume(
    body: str | dict[str, Any], stepfunctions: StepFunctions, *, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
) -> ResumeResult:
    """Resume the task the answer in `body` (an EventBridge event) carries the token of."""
    try:
        event = parse_eventbridge(body)
    except UnknownDetailType as exc:
        return ResumeResult(outcome=ResumeOutcome.IGNORED, detail_type=str(exc))
    except InvalidEvent as exc:
        _fail_invalid(body, stepfunctions, exc)
        raise InvalidAnswer(str(exc)) from exc
    metadata = event.metadata
    base = {"detail_type": event.detail_type, "run_id": metadata.run_id, "tenant_id": metadata.tenant_id}
    if event.detail_type not in ANSWER_DETAIL_TYPES and event.detail_type not in HEARTBEAT_DETAIL_TYPES:
        return ResumeResult(outcome=ResumeOutcome.IGNORED, **base)
    token = metadata.task_token
    if not token:
        return ResumeResult(outcome=ResumeOutcome.NO_TOKEN, **base)
    try:
        if event.detail_type in HEARTBEAT_DETAIL_TYPES:
            stepfunctions.send_task_heartbeat(task_token=token)
            return ResumeResult(outcome=ResumeOutcome.HEARTBEAT, **base)
        if isinstance(event.data, FailureData):
            error = event.data.code[:MAX_ERROR_CHARS]
            stepfunctions.send_task_failure(task_token=token, error=error, cause=event.data.message[:MAX_CAUSE_CHARS])
            return ResumeResult(outcome=ResumeOutcome.FAILED, code=error, **base)
        output = task_output(event)
        size = len(output.encode())
        if size > max_output_bytes:
            cause = (
                f"the {event.detail_type} answer is {size} bytes, over the {max_output_bytes}-byte limit of a "
                "step's output; large payloads must travel by claim check"
            )
            stepfunctions.send_task_failure(task_token=token, error=ResumeError.OUTPUT_TOO_LARGE, cause=cause)
            return ResumeResult(
                outcome=ResumeOutcome.OUTPUT_TOO_LARGE, code=ResumeError.OUTPUT_TOO_LARGE, output_bytes=size, **base
            )
        stepfunctions.send_task_success(task_token=token, output=output)
        return ResumeResult(outcome=ResumeOutcome.SUCCEEDED, output_bytes=size, **base)
    except TaskGone as gone:
        return ResumeResult(outcome=ResumeOutcome.TASK_GONE, code=gone.reason, **base)


def _fail_invalid(body: str | dict[str, Any], stepfunctions: StepFunctions, exc: InvalidEvent) -> None:
    """Tell the waiting task now (rather than at its timeout) that its answer was unusable."""
    metadata = _metadata_of(body)
    if metadata is None or not metadata.task_token:
        return
    with contextlib.suppress(TaskGone):
        stepfunctions.send_task_failure(
            task_token=metadata.task_token, error=ResumeError.INVALID_ANSWER, cause=str(exc)[:1000]
        )


def _metadata_of(body: str | dict[str, Any]) -> Metadata | None:
    try:
        envelope = json.loads(body) if isinstance(body, str) else body
        return Metadata.model_validate(envelope["detail"]["metadata"], extra="ignore")
    except Exception:
        return None
