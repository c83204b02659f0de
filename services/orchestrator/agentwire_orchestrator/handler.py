"""Lambda entry points: the starter (run.requested / run.cancel.requested), the resume consumer (every
answer event that carries a task token) and the watchdog (Step Functions' status changes). All are SQS
batch handlers; a body is an EventBridge event. Thin: parse, call the logic, log and count."""

from __future__ import annotations

import json
from typing import Any

from agentwire_contracts import telemetry
from agentwire_contracts.events.run import RunCancelRequested, RunRequested
from agentwire_contracts.parsing import InvalidEvent, parse_eventbridge
from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from agentwire_orchestrator.dependencies import Dependencies, get_dependencies
from agentwire_orchestrator.resume import ResumeOutcome, ResumeResult, resume
from agentwire_orchestrator.starter import StartOutcome
from agentwire_orchestrator.watchdog import ExecutionStatusChange, WatchOutcome, WatchResult, watch

SERVICE = "orchestrator"
NAMESPACE = "agentwire"
#: What `telemetry.correlation_keys` adds to a record's lines, and the record's detail-type.
_RECORD_KEYS = ("run_id", "tenant_id", "session_id", "trace_id", "span_id", "detail_type")

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# The response always lists the failed records; raising when all failed adds nothing.
starter_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
resume_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
watchdog_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def _bind_record_keys(body: str) -> None:
    """Records of one batch belong to different runs: forget the previous record's keys, then tag every
    line of this one (even one saying the event is invalid) with its run, tenant, session and trace."""
    logger.set_correlation_id(None)
    logger.remove_keys(list(_RECORD_KEYS))
    try:
        envelope = json.loads(body)
    except ValueError:
        return
    detail = envelope.get("detail") if isinstance(envelope, dict) else None
    if not isinstance(detail, dict):
        return
    metadata, data = detail.get("metadata"), detail.get("data")
    metadata = metadata if isinstance(metadata, dict) else None
    session_id = data.get("session_id") if isinstance(data, dict) else None
    logger.set_correlation_id(metadata.get("run_id") if metadata else None)
    logger.append_keys(
        **telemetry.correlation_keys(metadata, session_id=session_id if isinstance(session_id, str) else None)
    )
    if isinstance(envelope.get("detail-type"), str):
        logger.append_keys(detail_type=envelope["detail-type"])


# -- starter -----------------------------------------------------------------------------------------


@tracer.capture_method
def handle_starter_record(record: SQSRecord, dependencies: Dependencies) -> str:
    """Start or cancel one run; returns the outcome (raises so SQS retries / dead-letters)."""
    _bind_record_keys(record.body)
    try:
        event = parse_eventbridge(record.body)
    except InvalidEvent as exc:
        # Validation errors may quote the user's message: log the kind only.
        logger.error("record is not a valid run event", extra={"message_id": record.message_id, "code": exc.code})
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=1)
        raise
    starter = dependencies.starter()
    try:
        if isinstance(event.data, RunRequested):
            result = starter.start(event)
            _count_start(result.outcome, result.code)
            logger.info(
                "run start handled",
                extra={"outcome": result.outcome.value, "code": result.code, "agent": event.data.agent},
            )
            return result.outcome.value
        if isinstance(event.data, RunCancelRequested):
            outcome = starter.cancel(event)
            # One EMF blob, so the `outcome` dimension does not land on the batch's other metrics.
            with single_metric(name="CancelsHandled", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
                metric.add_dimension(name="service", value=SERVICE)
                metric.add_dimension(name="outcome", value=outcome.value)
            logger.info("run cancel handled", extra={"outcome": outcome.value})
            return outcome.value
    except Exception:
        logger.exception("record not processed", extra={"message_id": record.message_id})
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=1)
        raise
    logger.warning("not a starter event; dropped", extra={"message_id": record.message_id})
    return "ignored"


def _count_start(outcome: StartOutcome, code: str | None) -> None:
    if outcome is StartOutcome.STARTED:
        metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=1)
    elif outcome is StartOutcome.ALREADY_EXISTS:
        metrics.add_metric(name="RunsStartDuplicate", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="RunsRejected", unit=MetricUnit.Count, value=1)
        logger.warning("run refused", extra={"code": code})


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def starter_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    dependencies = get_dependencies()
    return process_partial_response(
        event=event,
        record_handler=lambda record: handle_starter_record(record, dependencies),
        processor=starter_processor,
        context=context,
    )


# -- resume ------------------------------------------------------------------------------------------


@tracer.capture_method
def handle_resume_record(record: SQSRecord, dependencies: Dependencies) -> ResumeResult:
    """Resume the task one answer event is for (raises so SQS retries / dead-letters)."""
    _bind_record_keys(record.body)
    try:
        result = resume(record.body, dependencies.stepfunctions, max_output_bytes=dependencies.max_task_output_bytes)
    except InvalidEvent as exc:
        logger.error("answer is not a valid event", extra={"message_id": record.message_id, "code": exc.code})
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=1)
        raise
    except Exception:
        logger.exception("answer not processed", extra={"message_id": record.message_id})
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=1)
        raise
    extra = {"outcome": result.outcome.value, "code": result.code, "output_bytes": result.output_bytes}
    if result.outcome in (ResumeOutcome.SUCCEEDED, ResumeOutcome.FAILED):
        metrics.add_metric(name="TasksResumed", unit=MetricUnit.Count, value=1)
        logger.info("task resumed", extra=extra)
    elif result.outcome is ResumeOutcome.HEARTBEAT:
        metrics.add_metric(name="TaskHeartbeats", unit=MetricUnit.Count, value=1)
        logger.debug("task heartbeat sent", extra=extra)
    elif result.outcome is ResumeOutcome.TASK_GONE:
        # The run was stopped or timed out before the answer came: nothing waits for it.
        metrics.add_metric(name="TasksGone", unit=MetricUnit.Count, value=1)
        logger.warning("task no longer waiting; answer dropped", extra=extra)
    elif result.outcome is ResumeOutcome.OUTPUT_TOO_LARGE:
        metrics.add_metric(name="TasksOutputTooLarge", unit=MetricUnit.Count, value=1)
        logger.error("answer too large for Step Functions; task failed", extra=extra)
    else:
        logger.warning("nothing to resume; answer dropped", extra=extra)
    return result


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def resume_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    dependencies = get_dependencies()
    return process_partial_response(
        event=event,
        record_handler=lambda record: handle_resume_record(record, dependencies),
        processor=resume_processor,
        context=context,
    )


# -- watchdog ----------------------------------------------------------------------------------------


@tracer.capture_method
def handle_watchdog_record(record: SQSRecord, dependencies: Dependencies) -> WatchResult:
    """One Execution Status Change: publish run.failed for a run that ended without saying so."""
    logger.set_correlation_id(None)
    logger.remove_keys(list(_RECORD_KEYS))
    try:
        change = ExecutionStatusChange.model_validate_json(record.body)
    except ValueError:
        # Not an AWS status change (the rule matches only those): keep it visible in the DLQ.
        logger.error("record is not a Step Functions status change", extra={"message_id": record.message_id})
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=1)
        raise
    logger.set_correlation_id(change.detail.name)
    logger.append_keys(run_id=change.detail.name)
    try:
        result = watch(
            change,
            state_machine_arn=dependencies.state_machine_arn,
            stepfunctions=dependencies.stepfunctions,
            publisher=dependencies.publisher,
        )
    except Exception:
        logger.exception("status change not processed", extra={"message_id": record.message_id})
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=1)
        raise
    extra = {"outcome": result.outcome.value, "code": result.code, "status": change.detail.status}
    if result.outcome is WatchOutcome.PUBLISHED:
        # A run whose own ending was lost: rare, and always worth a look (the RunsFailed metric counts it
        # too, where the gateway projects run.failed).
        metrics.add_metric(name="RunsEndedSilently", unit=MetricUnit.Count, value=1)
        logger.error("execution ended without publishing its ending; run.failed published", extra=extra)
    else:
        logger.info("status change checked", extra=extra)
    return result


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def watchdog_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    dependencies = get_dependencies()
    return process_partial_response(
        event=event,
        record_handler=lambda record: handle_watchdog_record(record, dependencies),
        processor=watchdog_processor,
        context=context,
    )
