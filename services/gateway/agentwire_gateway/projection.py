"""The read model's projections, as pure functions: a bus event in, the records to write out.

Tenant and run always come from the event's metadata. Every projection is idempotent by construction:
a run transition only moves forward, a step is keyed by its event_id, a message by its seq.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from agentwire_contracts.content import Usage
from agentwire_contracts.envelope import Event
from agentwire_contracts.events import (
    LlmCompletionCompleted,
    LlmCompletionFailed,
    LlmCompletionRequested,
    MemoryContextFailed,
    MemoryContextReady,
    MemoryMessageAppended,
    RunApprovalDecided,
    RunApprovalRequested,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    ToolCatalogFailed,
    ToolCatalogReady,
    ToolInvocationCompleted,
    ToolInvocationFailed,
    ToolInvocationHeartbeat,
    ToolInvocationRequested,
)
from agentwire_contracts.failure import FailureData

from agentwire_gateway.model import (
    ApprovalRecord,
    MessageRecord,
    RunStatus,
    RunTransition,
    StepRecord,
    TimelineEntry,
)

#: Tool inputs larger than this (as JSON) are left out of the live events (the transcript has them).
MAX_INLINE_INPUT_CHARS = 2048

#: The `kind` of a step, by the event that reports it.
STEP_KINDS: dict[type[Any], str] = {
    ToolCatalogReady: "catalog",
    ToolCatalogFailed: "catalog",
    MemoryContextReady: "context",
    MemoryContextFailed: "context",
    LlmCompletionCompleted: "model",
    LlmCompletionFailed: "model",
    ToolInvocationCompleted: "tool",
    ToolInvocationFailed: "tool",
}


class NotProjectable(ValueError):
    """The event lacks what the read model needs (e.g. an answer event without a run_id)."""

    code = "Gateway.NotProjectable"


@dataclass(frozen=True)
class Projection:
    """What one event writes to the read model."""

    transition: RunTransition | None = None
    step: StepRecord | None = None
    messages: tuple[MessageRecord, ...] = ()
    timeline: TimelineEntry | None = None
    approval: ApprovalRecord | None = None
    #: The `*.started` entry of the request this event answers, in case the answer is projected first.
    started: TimelineEntry | None = None


def started_entry(event: Event[Any]) -> TimelineEntry | None:
    """The live event of the request an answer (or a heartbeat) answers, rebuilt from the answer.

    A request and its answer reach the projector as two SQS messages that can be processed in either
    order (pollers and Lambda invocations run side by side), and cursors are given in projection order:
    a `tool.finished` could get an earlier cursor than its `tool.started`. So the answer writes its
    request's entry first, under the request's event id (the answer's `causation_id`): if the request
    was projected already that is a no-op, and if it comes later it is the no-op. Rebuilt, a tool's
    `input` is unknown (None, as for an input too large to show)."""
    data, request_id = event.data, event.metadata.causation_id
    if not request_id or not event.metadata.run_id:
        return None
    values: dict[str, Any]
    if isinstance(data, ToolInvocationCompleted):
        kind = "tool.started"
        values = {"step": data.step, "tool_call_id": data.result.tool_use_id, "name": data.tool_name, "input": None}
    elif isinstance(data, ToolInvocationHeartbeat):
        kind = "tool.started"
        values = {"step": data.step, "tool_call_id": data.tool_call_id, "name": data.tool_name, "input": None}
    elif isinstance(data, LlmCompletionCompleted):
        kind, values = "model.started", {"step": data.step, "model": data.model, "purpose": data.purpose}
    else:
        return None
    return TimelineEntry(
        tenant_id=event.metadata.tenant_id,
        run_id=event.metadata.run_id,
        event_id=request_id,
        type=kind,
        occurred_at=event.metadata.occurred_at,
        data=values,
    )


def project(event: Event[Any], *, source: str | None = None) -> Projection:
    """The records an event projects to. `source` is the EventBridge `source` it arrived with."""
    data = event.data
    if isinstance(data, RunStarted | RunCompleted | RunFailed | RunCancelled):
        return Projection(transition=run_transition(event), timeline=timeline_entry(event))
    if isinstance(data, MemoryMessageAppended):
        return Projection(messages=appended_messages(event))
    if isinstance(data, RunApprovalRequested):
        return Projection(approval=approval_record(event), timeline=timeline_entry(event))
    if isinstance(data, ToolInvocationHeartbeat):
        return Projection(timeline=timeline_entry(event), started=started_entry(event))
    if isinstance(data, LlmCompletionRequested | ToolInvocationRequested | RunApprovalDecided):
        return Projection(timeline=timeline_entry(event))
    if type(data) in STEP_KINDS:
        return Projection(
            step=step_record(event, source=source or data.source),
            timeline=timeline_entry(event),
            started=started_entry(event),
        )
    raise NotProjectable(f"the gateway does not project {event.detail_type}")


def usage_view(usage: Usage | None, cost_microusd: int | None) -> dict[str, Any]:
    """Token usage plus the cost in US dollars (the events carry integer micro-dollars)."""
    values = (usage or Usage()).model_dump(mode="json")
    values["cost_usd"] = (cost_microusd or 0) / 1_000_000
    return values


def _small_input(value: dict[str, Any]) -> dict[str, Any] | None:
    return value if len(json.dumps(value, default=str)) <= MAX_INLINE_INPUT_CHARS else None


def timeline_entry(event: Event[Any]) -> TimelineEntry | None:
    """The live event a client sees for a bus event, or None if it shows none (e.g. a context step)."""
    data = event.data
    kind: str
    values: dict[str, Any]
    if isinstance(data, RunStarted):
        kind, values = "run.started", {"agent": data.agent}
    elif isinstance(data, RunCompleted):
        kind, values = (
            "run.completed",
            {
                "output": data.output_text or data.output.text(),
                "stop_reason": data.stop_reason,
                "usage": usage_view(data.usage, data.cost_microusd),
                "model_turns": data.model_turns,
                "tool_calls": data.tool_calls,
            },
        )
    elif isinstance(data, RunFailed):
        kind, values = (
            "run.failed",
            {
                "error": {"code": data.error.code, "message": data.error.message},
                "usage": usage_view(data.usage, data.cost_microusd),
                "model_turns": data.model_turns,
                "tool_calls": data.tool_calls,
            },
        )
    elif isinstance(data, RunCancelled):
        kind, values = "run.cancelled", {"reason": data.reason, "stage": data.stage}
    elif isinstance(data, LlmCompletionRequested):
        kind, values = "model.started", {"step": data.step, "model": data.model, "purpose": data.purpose}
    elif isinstance(data, LlmCompletionCompleted):
        kind, values = (
            "model.finished",
            {
                "step": data.step,
                "model": data.model,
                "stop_reason": data.stop_reason,
                "purpose": data.purpose,
                "usage": usage_view(data.usage, data.cost_microusd),
                "tool_calls": [call.name for call in data.tool_calls],
                "duration_ms": data.duration_ms,
            },
        )
    elif isinstance(data, LlmCompletionFailed):
        kind, values = "model.failed", {"code": data.code, "retryable": data.retryable}
    elif isinstance(data, ToolInvocationRequested):
        kind, values = (
            "tool.started",
            {
                "step": data.step,
                "tool_call_id": data.tool_call.id,
                "name": data.tool_call.name,
                "input": _small_input(data.tool_call.input),
            },
        )
    elif isinstance(data, ToolInvocationCompleted):
        kind, values = (
            "tool.finished",
            {
                "step": data.step,
                "tool_call_id": data.result.tool_use_id,
                "name": data.tool_name,
                "is_error": data.result.is_error,
                "duration_ms": data.duration_ms,
            },
        )
    elif isinstance(data, ToolInvocationHeartbeat):
        kind, values = (
            "tool.running",
            {
                "step": data.step,
                "tool_call_id": data.tool_call_id,
                "name": data.tool_name,
                "elapsed_ms": data.elapsed_ms,
            },
        )
    elif isinstance(data, ToolInvocationFailed):
        kind, values = "tool.failed", {"code": data.code, "retryable": data.retryable}
    elif isinstance(data, RunApprovalRequested):
        kind, values = (
            "approval.requested",
            {
                "approval_id": data.approval_id,
                "tool_call_id": data.tool_call.id,
                "tool_name": data.tool_call.name,
                "input": _small_input(data.tool_call.input),
                "reason": data.reason,
                "timeout_s": data.timeout_s,
            },
        )
    elif isinstance(data, RunApprovalDecided):
        kind, values = (
            "approval.decided",
            {
                "approval_id": data.approval_id,
                "tool_call_id": data.tool_call_id,
                "decision": data.decision,
                "decided_by": data.decided_by,
                "reason": data.reason,
            },
        )
    else:
        return None
    return TimelineEntry(
        tenant_id=event.metadata.tenant_id,
        run_id=_run_id(event),
        event_id=event.metadata.event_id,
        type=kind,
        occurred_at=event.metadata.occurred_at,
        data=values,
    )


def approval_record(event: Event[RunApprovalRequested]) -> ApprovalRecord:
    data = event.data
    return ApprovalRecord(
        tenant_id=event.metadata.tenant_id,
        run_id=_run_id(event),
        session_id=data.session_id,
        approval_id=data.approval_id,
        tool_call_id=data.tool_call.id,
        tool_name=data.tool_call.name,
        tool_input=data.tool_call.input,
        args_hash=data.args_hash,
        reason=data.reason,
        timeout_s=data.timeout_s,
        requested_at=event.metadata.occurred_at,
        task_token=event.metadata.task_token,
    )


def approval_deadline(approval: ApprovalRecord) -> timedelta:
    return timedelta(seconds=approval.timeout_s)


def _run_id(event: Event[Any]) -> str:
    if not event.metadata.run_id:
        raise NotProjectable(f"{event.detail_type} {event.metadata.event_id} has no run_id")
    return event.metadata.run_id


def run_transition(event: Event[Any]) -> RunTransition:
    data = event.data
    common: dict[str, Any] = {
        "tenant_id": event.metadata.tenant_id,
        "run_id": _run_id(event),
        "session_id": data.session_id,
        "occurred_at": event.metadata.occurred_at,
    }
    if isinstance(data, RunStarted):
        return RunTransition(status=RunStatus.RUNNING, **common)
    if isinstance(data, RunCompleted | RunFailed):
        totals: dict[str, Any] = {
            "usage": data.usage,
            "cost_microusd": data.cost_microusd,
            "model_turns": data.model_turns,
            "tool_calls": data.tool_calls,
        }
        if isinstance(data, RunFailed):
            return RunTransition(status=RunStatus.FAILED, error=data.error, **totals, **common)
        output = data.output_text or data.output.text()
        return RunTransition(status=RunStatus.COMPLETED, output=output, **totals, **common)
    if isinstance(data, RunCancelled):
        return RunTransition(status=RunStatus.CANCELLED, **common)
    raise NotProjectable(f"{event.detail_type} is not a run lifecycle event")


def appended_messages(event: Event[MemoryMessageAppended]) -> tuple[MessageRecord, ...]:
    return tuple(
        MessageRecord(
            tenant_id=event.metadata.tenant_id,
            session_id=event.data.session_id,
            seq=item.seq,
            message=item.message,
            run_id=event.metadata.run_id,
        )
        for item in event.data.messages
    )


def step_record(event: Event[Any], *, source: str) -> StepRecord:
    data = event.data
    detail: str | None = None
    step: int | None = getattr(data, "step", None)
    duration_ms: float | None = getattr(data, "duration_ms", None)
    usage = None
    error_code = data.code if isinstance(data, FailureData) else None
    if isinstance(data, LlmCompletionCompleted):
        detail = data.stop_reason
        usage = data.usage
    elif isinstance(data, ToolInvocationCompleted):
        detail = data.tool_name
    elif isinstance(data, ToolCatalogReady):
        detail = ",".join(tool.name for tool in data.tools)
    elif isinstance(data, MemoryContextReady):
        detail = f"appended {data.appended}, context {len(data.messages)} of {data.message_count} messages"
    return StepRecord(
        tenant_id=event.metadata.tenant_id,
        run_id=_run_id(event),
        event_id=event.metadata.event_id,
        service=source,
        kind=STEP_KINDS[type(data)],
        detail=detail,
        step=step,
        duration_ms=duration_ms,
        occurred_at=event.metadata.occurred_at,
        usage=usage,
        error_code=error_code,
    )
