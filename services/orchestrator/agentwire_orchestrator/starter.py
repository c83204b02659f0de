"""The starter: `run.requested.v1` → StartExecution (name = run_id); `run.cancel.requested.v1` → stop.

The state machine publishes run.started/completed/failed itself, so a successful start publishes
nothing here. What the starter publishes is what only it can know: a run that cannot start
(`run.failed.v1`, e.g. `Run.UnknownAgent`) and a cancellation (`run.cancelled.v1`).

Cancelling a run that has not started yet leaves a *tombstone*: an execution of the run's name whose
input is `{"cancelled": {...}}`, which the state machine ends at once (its first state checks for it).
Execution names are unique, so the late `run.requested` then finds its name taken and starts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agentwire_contracts import telemetry
from agentwire_contracts.content import ErrorInfo
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.run import RunCancelled, RunCancelRequested, RunFailed, RunRequested

from agentwire_orchestrator.agents import AgentCatalog, resolve
from agentwire_orchestrator.ports import ExecutionInfo, ExecutionStatus, Publisher, StepFunctions
from agentwire_orchestrator.run_input import (
    MAX_INPUT_BYTES,
    StepTimeouts,
    build_execution_input,
    encode,
    is_valid_execution_name,
)

#: The key of a tombstone's input; the state machine's first state ends the execution when present.
TOMBSTONE_KEY = "cancelled"


class RunError:
    """Codes of the runs the starter refuses (published as `run.failed.v1`)."""

    UNKNOWN_AGENT = "Run.UnknownAgent"
    INVALID_RUN_ID = "Run.InvalidRunId"
    INPUT_TOO_LARGE = "Run.InputTooLarge"


class StartOutcome(StrEnum):
    STARTED = "started"
    #: An execution of this name already exists: a redelivery, a duplicate, or a cancelled run.
    ALREADY_EXISTS = "already_exists"
    REJECTED = "rejected"


class CancelOutcome(StrEnum):
    #: The execution was running and was stopped now.
    STOPPED = "stopped"
    #: The run had not started; a tombstone keeps it from starting.
    CANCELLED_QUEUED = "cancelled_queued"
    #: A redelivered cancel: the run was already stopped (the event is published again, harmlessly).
    ALREADY_CANCELLED = "already_cancelled"
    #: The run had ended on its own; its own event told how. Nothing to do.
    ALREADY_ENDED = "already_ended"


class MissingRunId(ValueError):
    """A run event without a run_id: nothing can correlate it (the record goes to the DLQ)."""


@dataclass(frozen=True)
class StartResult:
    outcome: StartOutcome
    code: str | None = None
    execution_arn: str | None = None


class Starter:
    def __init__(
        self,
        *,
        stepfunctions: StepFunctions,
        publisher: Publisher,
        agents: AgentCatalog,
        timeouts: StepTimeouts | None = None,
    ):
        self._sfn = stepfunctions
        self._publisher = publisher
        self._agents = agents
        self._timeouts = timeouts or StepTimeouts()

    # -- run.requested -------------------------------------------------------------------------------

    def start(self, event: Event[RunRequested]) -> StartResult:
        run_id = _run_id(event)
        if not is_valid_execution_name(run_id):
            return self._refuse(event, RunError.INVALID_RUN_ID, "run_id must be 1-80 letters, digits, '-' or '_'")
        agent = resolve(self._agents, event.data.agent, event.data.agent_version)
        if agent is None:
            known = ", ".join(self._agents.names())
            wanted = event.data.agent + (f" version {event.data.agent_version}" if event.data.agent_version else "")
            return self._refuse(event, RunError.UNKNOWN_AGENT, f"no agent {wanted!r} (known: {known})")
        body = encode(build_execution_input(event, agent, self._timeouts))
        size = len(body.encode())
        if size > MAX_INPUT_BYTES:
            return self._refuse(
                event, RunError.INPUT_TOO_LARGE, f"the run's input is {size} bytes (limit {MAX_INPUT_BYTES})"
            )
        started = self._sfn.start_execution(name=run_id, input=body)
        outcome = StartOutcome.ALREADY_EXISTS if started.already_existed else StartOutcome.STARTED
        return StartResult(outcome=outcome, execution_arn=started.execution_arn)

    def _refuse(self, event: Event[RunRequested], code: str, message: str) -> StartResult:
        failed = RunFailed(session_id=event.data.session_id, error=ErrorInfo(code=code, message=message))
        self._publisher.publish_one(_answer(event, failed))
        return StartResult(outcome=StartOutcome.REJECTED, code=code)

    # -- run.cancel.requested ------------------------------------------------------------------------

    def cancel(self, event: Event[RunCancelRequested]) -> CancelOutcome:
        run_id = _run_id(event)
        if not is_valid_execution_name(run_id):
            # No execution can have this name, and none ever will: the run cannot exist.
            return CancelOutcome.ALREADY_ENDED
        reason = event.data.reason
        info = self._sfn.describe_execution(name=run_id)
        if info is None:
            tombstone = {
                TOMBSTONE_KEY: {"run_id": run_id, "reason": reason, "cancel_event_id": event.metadata.event_id}
            }
            started = self._sfn.start_execution(name=run_id, input=encode(tombstone))
            if not started.already_existed:
                self._publish_cancelled(event, "queued")
                return CancelOutcome.CANCELLED_QUEUED
            # The run started between the two calls: cancel it as a running one.
            info = self._sfn.describe_execution(name=run_id)
            if info is None:  # pragma: no cover - Step Functions just said it exists
                raise RuntimeError(f"execution {run_id} exists but cannot be described")
        return self._cancel_existing(event, run_id, info)

    def _cancel_existing(self, event: Event[RunCancelRequested], run_id: str, info: ExecutionInfo) -> CancelOutcome:
        if is_tombstone(info):
            self._publish_cancelled(event, "queued")
            return CancelOutcome.ALREADY_CANCELLED
        if info.status is ExecutionStatus.ABORTED:
            self._publish_cancelled(event, "running")
            return CancelOutcome.ALREADY_CANCELLED
        if info.status is not ExecutionStatus.RUNNING:
            return CancelOutcome.ALREADY_ENDED
        self._sfn.stop_execution(name=run_id, cause=event.data.reason or "cancelled on request")
        after = self._sfn.describe_execution(name=run_id)
        if after is not None and after.status not in (ExecutionStatus.ABORTED, ExecutionStatus.RUNNING):
            # It ended on its own just before the stop reached it; its own event stands.
            return CancelOutcome.ALREADY_ENDED
        self._publish_cancelled(event, "running")
        return CancelOutcome.STOPPED

    def _publish_cancelled(self, event: Event[RunCancelRequested], stage: str) -> None:
        data = RunCancelled(session_id=event.data.session_id, reason=event.data.reason, stage=stage)  # type: ignore[arg-type]
        self._publisher.publish_one(_answer(event, data))


def is_tombstone(info: ExecutionInfo) -> bool:
    return info.input is not None and TOMBSTONE_KEY in info.input and "run" not in info.input


def _run_id(event: Event[Any]) -> str:
    if not event.metadata.run_id:
        raise MissingRunId(f"{event.detail_type} {event.metadata.event_id} has no run_id")
    return event.metadata.run_id


def _answer(request: Event[Any], data: Any) -> Event[Any]:
    """An event of the orchestrator about the request's run (same tenant, run and trace; caused by it):
    both trace headers, continuing the current span when there is one, so the run stays one trace."""
    fields = telemetry.trace_fields(request.metadata)
    return Event.create(
        data,
        tenant_id=request.metadata.tenant_id,
        run_id=request.metadata.run_id,
        causation_id=request.metadata.event_id,
        trace_header=fields["trace_header"],
        traceparent=fields["traceparent"],
    )
