"""Lambda entry point of the memory service: one SQS queue, dispatched by detail-type.

Thin by design: parse the record, bind the log context, call the use case in `service`, count.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from agentwire_contracts import telemetry
from agentwire_contracts.agents import AgentCatalog, load_catalog
from agentwire_contracts.consumer import StepError, failure_answer
from agentwire_contracts.envelope import Event, Metadata
from agentwire_contracts.events.memory import MemoryContextFailed, MemoryContextRequested
from agentwire_contracts.events.run import RunFailed
from agentwire_contracts.events.session import SessionDeleted
from agentwire_contracts.events.tool import ToolInvocationCompleted, ToolInvocationFailed, ToolInvocationRequested
from agentwire_contracts.names import DetailType, Source
from agentwire_contracts.parsing import InvalidEvent, parse_as
from agentwire_contracts.payload import PayloadStore
from agentwire_contracts.publish import EventPublisher
from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.ports import PayloadStorePort, Publisher, TranscriptStore
from agentwire_memory.service import (
    ContextConfig,
    RetentionPolicy,
    ToolDecision,
    answer_context_request,
    forget_session,
    record_run_failure,
    record_tool_output,
    serve_tool_call,
)
from agentwire_memory.settings import get_settings
from agentwire_memory.transcript import DEFAULT_MAX_CONTEXT_BYTES

SERVICE = "memory"
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace="agentwire", service=SERVICE)
# A wholly failed batch is reported like any other (every record in batchItemFailures) instead of raising,
# so Lambda and the local worker treat it the same way: retry each record, then its DLQ.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
telemetry.configure(SERVICE)


@dataclass(frozen=True)
class Dependencies:
    store: TranscriptStore
    publisher: Publisher
    max_context_bytes: int | None = DEFAULT_MAX_CONTEXT_BYTES
    payloads: PayloadStorePort | None = None
    config: ContextConfig | None = None
    retention: RetentionPolicy | None = None
    #: The agent definitions remember/forget calls are authorized against (None: the deployment's).
    agents: AgentCatalog | None = None


_dependencies: Dependencies | None = None


def build_dependencies() -> Dependencies:
    settings = get_settings()
    # Standard mode retries throttling a few times with backoff before the store reports it as unavailable.
    config = Config(retries={"mode": "standard", "max_attempts": 4})
    store = DynamoTranscriptStore(
        boto3.client("dynamodb", config=config),
        settings.table_name,
        max_attempts=settings.append_max_attempts,
        marker_ttl_s=settings.marker_ttl_days * 86400,
        transcript_ttl_s=settings.transcript_ttl_days * 86400 if settings.transcript_ttl_days else None,
    )
    publisher = EventPublisher(client=boto3.client("events", config=config), bus_name=settings.event_bus_name)
    payloads = (
        PayloadStore(client=boto3.client("s3", config=config), bucket=settings.payload_bucket)
        if settings.payload_bucket
        else None
    )
    context_config = ContextConfig(
        default_max_context_tokens=settings.default_max_context_tokens,
        inline_context_bytes=settings.inline_context_bytes,
        max_context_bytes=settings.max_context_bytes,
        default_retention_days=settings.transcript_ttl_days,
    )
    return Dependencies(
        store=store,
        publisher=publisher,
        max_context_bytes=settings.max_context_bytes,
        payloads=payloads,
        config=context_config,
        retention=RetentionPolicy(store, settings.transcript_ttl_days),
        agents=load_catalog(),
    )


def get_dependencies() -> Dependencies:
    """Built on first use, not at import: tests can swap them before the first record."""
    global _dependencies  # noqa: PLW0603 - one lazily built set of clients per Lambda container
    if _dependencies is None:
        _dependencies = build_dependencies()
    return _dependencies


def set_dependencies(dependencies: Dependencies | None) -> None:
    """Override (tests) or reset the dependencies the handler uses."""
    global _dependencies  # noqa: PLW0603
    _dependencies = dependencies


def _envelope(body: str) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("detail"), dict):
        raise InvalidEvent("body is not an EventBridge event (no detail object)")
    return envelope


def _bind_log_context(metadata: Metadata, session_id: str) -> None:
    logger.set_correlation_id(metadata.run_id)
    logger.append_keys(**telemetry.correlation_keys(metadata, session_id=session_id))


@tracer.capture_method
def handle_context_request(envelope: dict[str, Any], dependencies: Dependencies) -> None:
    try:
        event = parse_as(MemoryContextRequested, envelope)
    except InvalidEvent as exc:
        _tell_waiting_run(envelope, exc, dependencies.publisher)
        raise
    _bind_log_context(event.metadata, event.data.session_id)
    # Sizes only, never content: the messages are the tenant's data.
    with telemetry.span("assemble context", attributes={telemetry.ATTR_SESSION_ID: event.data.session_id}) as span:
        published, result = answer_context_request(
            event,
            dependencies.store,
            dependencies.publisher,
            payloads=dependencies.payloads,
            config=dependencies.config,
            retention=dependencies.retention,
            max_context_bytes=dependencies.max_context_bytes,
        )
        if result is None:
            telemetry.mark_failed(span, str(getattr(published[-1].data, "code", "Memory.Failed")))
        else:
            span.set_attributes(
                {
                    "agentwire.context.messages": len(result.ready.messages),
                    "agentwire.context.tokens": result.ready.context_tokens,
                    "agentwire.context.appended": len(result.outcome.entries),
                    "agentwire.context.by_reference": result.by_reference,
                    telemetry.ATTR_STEP: event.data.step,
                }
            )
    if result is None:
        failure = published[-1].data
        logger.warning("context request failed", extra={"code": failure.code, "step": event.data.step})
        metrics.add_metric(name="ContextFailures", unit=MetricUnit.Count, value=1)
        return
    outcome = result.outcome
    # Counts and seqs only: message content is never logged.
    logger.info(
        "context served",
        extra={
            "step": event.data.step,
            "appended": len(outcome.entries),
            "seqs": [entry.seq for entry in outcome.entries],
            "duplicate": outcome.duplicate,
            "message_count": outcome.message_count,
            "context_messages": len(result.ready.messages),
            "context_tokens": result.ready.context_tokens,
            "by_reference": result.by_reference,
            "items_read": result.items_read,
            "summary_through_seq": result.ready.summary_through_seq,
            "compaction_requested": result.ready.compaction is not None,
            "facts": result.ready.facts_count,
            "state_conflicts": len(result.ready.state_conflicts),
            "conflicts": outcome.conflicts,
        },
    )
    if result.by_reference:
        metrics.add_metric(name="ContextsByReference", unit=MetricUnit.Count, value=1)
    if result.shrunk:
        logger.warning("the newest turn exceeded the budget and was shortened for the model")
        metrics.add_metric(name="ContextTurnShortened", unit=MetricUnit.Count, value=1)
    if result.ready.compaction is not None:
        metrics.add_metric(name="CompactionsRequested", unit=MetricUnit.Count, value=1)
    if result.stored_summary is not None:
        summary = result.stored_summary
        logger.info(
            "summary stored", extra={"through_seq": summary.through_seq, "cost_microusd": summary.cost_microusd}
        )
        metrics.add_metric(name="CompactionsStored", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="CompactionCostMicroUsd", unit=MetricUnit.Count, value=summary.cost_microusd)
    metrics.add_metric(name="ContextItemsRead", unit=MetricUnit.Count, value=result.items_read)
    metrics.add_metric(name="ContextTokens", unit=MetricUnit.Count, value=result.ready.context_tokens)
    if result.dropped_for_size:
        logger.warning("context trimmed to fit inline", extra={"dropped_messages": result.dropped_for_size})
        metrics.add_metric(name="ContextTrimmedForSize", unit=MetricUnit.Count, value=1)
    if outcome.duplicate and not outcome.same_messages:
        logger.warning("append key reused with different messages; answered with the first append")
    metrics.add_metric(
        name="MessagesAppended", unit=MetricUnit.Count, value=0 if outcome.duplicate else len(outcome.entries)
    )
    metrics.add_metric(name="DuplicateAppends", unit=MetricUnit.Count, value=int(outcome.duplicate))
    metrics.add_metric(name="AppendConflicts", unit=MetricUnit.Count, value=outcome.conflicts)
    metrics.add_metric(name="ContextMessages", unit=MetricUnit.Count, value=len(result.ready.messages))


def _tell_waiting_run(
    envelope: dict[str, Any],
    error: InvalidEvent,
    publisher: Publisher,
    failure: type[MemoryContextFailed] | type[ToolInvocationFailed] = MemoryContextFailed,
) -> None:
    """An invalid request still carrying a task token: fail the step now rather than at its timeout.
    The record itself still goes to batchItemFailures and, after its retries, to the DLQ."""
    try:
        metadata = Metadata.model_validate(envelope["detail"]["metadata"])
    except Exception:
        return
    if metadata.task_token:
        source = Source.MEMORY if failure is ToolInvocationFailed else None
        failed = failure_answer(metadata, failure, StepError(InvalidEvent.code, str(error)[:1000]), source=source)
        publisher.publish([failed])


@tracer.capture_method
def handle_session_deleted(envelope: dict[str, Any], dependencies: Dependencies) -> None:
    event: Event[SessionDeleted] = parse_as(SessionDeleted, envelope)
    _bind_log_context(event.metadata, event.data.session_id)
    forgotten = forget_session(event, dependencies.store, dependencies.payloads, dependencies.retention)
    logger.info(
        "session forgotten",
        extra={"items_deleted": forgotten.items, "payloads_deleted": forgotten.payloads, "tombstone": True},
    )
    metrics.add_metric(name="SessionItemsDeleted", unit=MetricUnit.Count, value=forgotten.items)
    metrics.add_metric(name="SessionPayloadsDeleted", unit=MetricUnit.Count, value=forgotten.payloads)


@tracer.capture_method
def handle_run_failed(envelope: dict[str, Any], dependencies: Dependencies) -> None:
    event: Event[RunFailed] = parse_as(RunFailed, envelope)
    _bind_log_context(event.metadata, event.data.session_id)
    new = record_run_failure(event, dependencies.store, dependencies.retention)
    if new is None:
        logger.info("run failure not recorded: the session was deleted", extra={"code": event.data.error.code})
        return
    logger.info("run failure recorded", extra={"code": event.data.error.code, "new": new})


@tracer.capture_method
def handle_tool_completed(envelope: dict[str, Any], dependencies: Dependencies) -> None:
    """A capped tool result's claim check is recorded beside the transcript (for the export). Nearly every
    completion has none (and memory's own answers never): those are acknowledged before parsing the event or
    touching the table."""
    data = envelope["detail"].get("data")
    if not isinstance(data, dict) or data.get("result_ref") is None:
        return
    event: Event[ToolInvocationCompleted] = parse_as(ToolInvocationCompleted, envelope)
    _bind_log_context(event.metadata, event.data.session_id)
    # Names, ids and sizes only: the output is the tenant's data.
    extra = {
        "tool_name": event.data.tool_name,
        "tool_call_id": event.data.result.tool_use_id,
        "size_bytes": event.data.result_ref.size_bytes if event.data.result_ref else 0,
    }
    outcome = record_tool_output(event, dependencies.store, dependencies.retention)
    if outcome == "session_deleted":
        logger.info("tool output not recorded: the session was deleted", extra=extra)
    elif outcome == "outside_session":
        logger.warning("tool output not recorded: its reference is outside the session's payloads", extra=extra)
    else:
        logger.info("tool output recorded", extra={**extra, "new": outcome == "recorded"})


@tracer.capture_method
def handle_tool_call(envelope: dict[str, Any], dependencies: Dependencies) -> None:
    """remember, forget, read_state, write_state: answered as `tool.invocation.completed.v1` exactly like the
    tools service would."""
    try:
        event = parse_as(ToolInvocationRequested, envelope)
    except InvalidEvent as exc:
        _tell_waiting_run(envelope, exc, dependencies.publisher, ToolInvocationFailed)
        raise
    _bind_log_context(event.metadata, event.data.session_id)
    call = event.data.tool_call
    # Answered under memory's own source: memory offers these tools (see `agentwire_contracts.remote_tools`).
    with telemetry.span(f"{telemetry.GenAI.OP_EXECUTE_TOOL} {call.name}") as span:
        span.set_attributes(
            telemetry.tool_call_attributes(
                tool_name=call.name, call_id=call.id, session_id=event.data.session_id, step=event.data.step
            )
        )
        try:
            completed = serve_tool_call(
                event,
                dependencies.store,
                agents=dependencies.agents,
                on_decision=_log_tool_decision(event),
                retention=dependencies.retention,
            )
        except StepError as error:
            telemetry.mark_failed(span, error.code)
            answer = failure_answer(event.metadata, ToolInvocationFailed, error, source=Source.MEMORY)
            logger.warning("tool call failed", extra={"code": error.code, "tool_name": call.name})
        else:
            if completed.result.is_error:
                telemetry.mark_failed(span, "Tools.ToolError")
            answer = telemetry.answer(event, completed, source=Source.MEMORY)
    dependencies.publisher.publish([answer])
    # Names, ids and outcome only: a fact is user data and never logged.
    completed = answer.data
    is_error = bool(getattr(getattr(completed, "result", None), "is_error", True))
    logger.info(
        "tool call answered",
        extra={"tool_name": event.data.tool_call.name, "tool_call_id": event.data.tool_call.id, "is_error": is_error},
    )
    # As the tools service counts them: one EMF blob per metric, so the `tool` dimension stays off the
    # batch's other metrics.
    for name, value in (("ToolCalls", 1.0), ("ToolErrors", float(is_error))):
        with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace="agentwire") as metric:
            metric.add_dimension(name="service", value=SERVICE)
            metric.add_dimension(name="tool", value=event.data.tool_call.name)


def _log_tool_decision(event: Event[ToolInvocationRequested]) -> Callable[[ToolDecision], None]:
    """The authorization decision of a remember/forget call, logged with its reason (never the input)."""

    def log(decision: ToolDecision) -> None:
        extra = {
            "tool_name": event.data.tool_call.name,
            "tool_call_id": event.data.tool_call.id,
            "agent": decision.agent,
            "decision": "allow" if decision.allowed else "deny",
            "policy": decision.policy,
            "reason": decision.reason,
        }
        if decision.allowed:
            logger.info("tool call authorized", extra=extra)
        else:
            # The tools service's outcome name for a refused call.
            logger.warning("tool call denied", extra={**extra, "outcome": "denied"})

    return log


def record_handler(record: SQSRecord) -> None:
    logger.remove_keys(["tenant_id", "session_id", "run_id", "trace_id", "span_id"])
    logger.set_correlation_id(None)
    logger.append_keys(message_id=record.message_id)
    try:
        dispatch(record.body, get_dependencies())
    except Exception:
        # Counted here so an alarm fires on the first failure, long before the DLQ fills.
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=1)
        raise


def dispatch(body: str, dependencies: Dependencies) -> None:
    envelope = _envelope(body)
    with telemetry.record_span(envelope, service=SERVICE):
        _dispatch(envelope, dependencies)


def _dispatch(envelope: dict[str, Any], dependencies: Dependencies) -> None:
    detail_type = envelope.get("detail-type")
    if detail_type == DetailType.MEMORY_CONTEXT_REQUESTED:
        handle_context_request(envelope, dependencies)
    elif detail_type == DetailType.SESSION_DELETED:
        handle_session_deleted(envelope, dependencies)
    elif detail_type == DetailType.RUN_FAILED:
        handle_run_failed(envelope, dependencies)
    elif detail_type == DetailType.TOOL_INVOCATION_REQUESTED:
        handle_tool_call(envelope, dependencies)
    elif detail_type == DetailType.TOOL_INVOCATION_COMPLETED:
        handle_tool_completed(envelope, dependencies)
    else:
        # Misrouted: retrying cannot help, so it ends in the DLQ where someone can see the rule is wrong.
        raise InvalidEvent(f"memory does not handle detail-type {detail_type!r}")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    try:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        telemetry.flush()  # the sandbox may freeze once the invocation returns
