"""The last line of "no run dies silently": an execution that ended without publishing its own ending.

Every path of the state machine publishes run.completed, run.failed or run.cancelled before it ends. But
the publish itself can fail (the bus unavailable past PublishFailed's retries), an execution can time out
as a whole, or someone can stop it outside agentwire (the console, the CLI). Step Functions then still
puts an *Execution Status Change* event on the account's default bus. The watchdog consumes those for
FAILED, TIMED_OUT and ABORTED executions of the run state machine, asks Step Functions why the execution
ended, and publishes run.failed.v1 unless the run already said how it ended:

* FAILED with the Fail state's error (`Run.Failed`): run.failed was published; nothing to do.
* ABORTED with the starter's error (`Run.Cancelled`): run.cancelled was published; nothing to do.
* A tombstone execution (a cancel that beat the start): the starter published run.cancelled.
* Anything else: run.failed.v1 with `Run.ExecutionFailed`, `Run.ExecutionTimedOut` or `Run.ExecutionAborted`
  and Step Functions' error (never its cause verbatim: a cause can quote a tool's output or a model's words).

Idempotent: the event id is derived from the execution ARN, so a redelivered status change publishes the
same event, which consumers (the gateway's projector) already take once per run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agentwire_contracts.content import ErrorInfo
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.run import RunFailed
from pydantic import BaseModel, ConfigDict, Field

from agentwire_orchestrator.ports import (
    RUN_CANCELLED_ERROR,
    RUN_FAILED_ERROR,
    ExecutionInfo,
    ExecutionStatus,
    Publisher,
    StepFunctions,
)

#: uuid5 namespace of the watchdog's event ids (any fixed uuid; changing it would re-publish old runs).
EVENT_ID_NAMESPACE = uuid.UUID("6f1d2a0e-9a57-4d43-8f0a-5f3c2a7f1c11")

CODES: dict[ExecutionStatus, str] = {
    ExecutionStatus.FAILED: "Run.ExecutionFailed",
    ExecutionStatus.TIMED_OUT: "Run.ExecutionTimedOut",
    ExecutionStatus.ABORTED: "Run.ExecutionAborted",
}
#: The statuses the watchdog's rule matches (a SUCCEEDED execution published its own ending).
WATCHED_STATUSES = tuple(status.value for status in CODES)


class ExecutionStatusChangeDetail(BaseModel):
    """`detail` of Step Functions' *Execution Status Change* event, as AWS documents it (the fields used
    here; the tolerant reader ignores the rest, e.g. input and output, which may be large or absent)."""

    model_config = ConfigDict(extra="ignore")

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str = Field(alias="stateMachineArn")
    name: str
    status: str


class ExecutionStatusChange(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    source: str
    detail_type: str = Field(alias="detail-type")
    detail: ExecutionStatusChangeDetail


class WatchOutcome(StrEnum):
    PUBLISHED = "published"
    ALREADY_ENDED = "already_ended"
    NOT_OURS = "not_ours"
    NOT_WATCHED = "not_watched"


@dataclass(frozen=True)
class WatchResult:
    outcome: WatchOutcome
    code: str | None = None
    run_id: str | None = None


def watch(
    change: ExecutionStatusChange, *, state_machine_arn: str | None, stepfunctions: StepFunctions, publisher: Publisher
) -> WatchResult:
    detail = change.detail
    if state_machine_arn is not None and detail.state_machine_arn != state_machine_arn:
        # The default bus carries every state machine of the account.
        return WatchResult(WatchOutcome.NOT_OURS)
    if detail.status not in WATCHED_STATUSES:
        return WatchResult(WatchOutcome.NOT_WATCHED)
    info = stepfunctions.describe_execution(name=detail.name)
    if info is None or info.status.value not in WATCHED_STATUSES:
        # Redriven since (or gone): the status change is stale.
        return WatchResult(WatchOutcome.NOT_WATCHED)
    run = run_of(info)
    if run is None or _ended_on_its_own(info):
        return WatchResult(WatchOutcome.ALREADY_ENDED, run_id=detail.name)
    code = CODES[info.status]
    publisher.publish_one(_run_failed(detail.execution_arn, run, code, info))
    return WatchResult(WatchOutcome.PUBLISHED, code=code, run_id=run["run_id"])


def run_of(info: ExecutionInfo) -> dict[str, Any] | None:
    """The execution input's run (None for a tombstone execution, or an input that is not a run's)."""
    run = (info.input or {}).get("run")
    if not isinstance(run, dict) or not all(
        isinstance(run.get(key), str) for key in ("run_id", "tenant_id", "session_id")
    ):
        return None
    return run


def _ended_on_its_own(info: ExecutionInfo) -> bool:
    if info.status is ExecutionStatus.FAILED:
        return info.error == RUN_FAILED_ERROR
    if info.status is ExecutionStatus.ABORTED:
        return info.error == RUN_CANCELLED_ERROR
    return False


def _run_failed(execution_arn: str, run: dict[str, Any], code: str, info: ExecutionInfo) -> Event[RunFailed]:
    error = info.error or "none reported"
    message = f"the run's execution ended {info.status.value} without publishing how it ended (error: {error})"
    event = Event.create(
        RunFailed(session_id=run["session_id"], error=ErrorInfo(code=code, message=message[:4096])),
        tenant_id=run["tenant_id"],
        run_id=run["run_id"],
        causation_id=run.get("request_event_id") if isinstance(run.get("request_event_id"), str) else None,
        trace_header=run.get("trace_header") if isinstance(run.get("trace_header"), str) else None,
        traceparent=run.get("traceparent") if isinstance(run.get("traceparent"), str) else None,
    )
    event_id = str(uuid.uuid5(EVENT_ID_NAMESPACE, execution_arn))
    return event.model_copy(update={"metadata": event.metadata.model_copy(update={"event_id": event_id})})
