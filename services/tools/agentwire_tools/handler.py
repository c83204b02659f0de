"""Lambda entry point: one SQS queue carrying catalog and invocation requests, routed by detail-type."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentwire_contracts import telemetry
from agentwire_contracts.consumer import StepError, answer_request
from agentwire_contracts.envelope import Event, EventData
from agentwire_contracts.events.tool import (
    ToolCatalogFailed,
    ToolCatalogRequested,
    ToolInvocationCompleted,
    ToolInvocationFailed,
    ToolInvocationHeartbeat,
    ToolInvocationRequested,
)
from agentwire_contracts.failure import FailureData
from agentwire_contracts.heartbeat import beating
from agentwire_contracts.parsing import InvalidEvent
from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from agentwire_tools.dependencies import Dependencies, build_dependencies
from agentwire_tools.settings import get_settings

SERVICE = "tools"
NAMESPACE = "agentwire"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# A batch whose every record failed is reported like any other partial failure (every record listed
# in batchItemFailures) instead of raising: SQS redelivers the same records either way, and the
# local worker and Lambda then see one response shape.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
telemetry.configure(SERVICE)
#: A tool error is a result (the model sees it), not a failed step; its span says so with this type.
TOOL_ERROR = "Tools.ToolError"

_dependencies: Dependencies | None = None


def get_dependencies() -> Dependencies:
    global _dependencies  # noqa: PLW0603 - one set of adapters per Lambda sandbox, built on first use
    if _dependencies is None:
        _dependencies = build_dependencies(get_settings())
    return _dependencies


def set_dependencies(dependencies: Dependencies | None) -> None:
    """Tests (and the local runtime) inject their own adapters; None rebuilds from settings."""
    global _dependencies  # noqa: PLW0603
    _dependencies = dependencies


@dataclass(frozen=True)
class Route:
    request: type[EventData]
    failure: type[FailureData]
    work: Callable[[Dependencies], Callable[[Event[Any]], EventData]]


ROUTES: dict[str, Route] = {
    ToolCatalogRequested.detail_type: Route(ToolCatalogRequested, ToolCatalogFailed, lambda d: d.service.describe),
    ToolInvocationRequested.detail_type: Route(
        ToolInvocationRequested, ToolInvocationFailed, lambda d: _measured(_beating(d.service.invoke, d))
    ),
}


def _measured(invoke: Callable[[Event[Any]], ToolInvocationCompleted]) -> Callable[[Event[Any]], EventData]:
    def work(request: Event[Any]) -> EventData:
        completed = _executed(invoke, request)
        _log_and_measure(request, completed)
        return completed

    return work


def _beating(
    invoke: Callable[[Event[Any]], ToolInvocationCompleted], dependencies: Dependencies
) -> Callable[[Event[Any]], ToolInvocationCompleted]:
    """The call with `tool.invocation.heartbeat.v1` beats while it runs (each with the request's task token)."""

    def work(request: Event[ToolInvocationRequested]) -> ToolInvocationCompleted:
        call = request.data.tool_call

        def beat(elapsed_s: float) -> None:
            heartbeat = ToolInvocationHeartbeat(
                session_id=request.data.session_id,
                step=request.data.step,
                tool_name=call.name,
                tool_call_id=call.id,
                elapsed_ms=round(elapsed_s * 1000, 1),
            )
            dependencies.publisher.publish_one(telemetry.answer(request, heartbeat))

        with beating(beat, dependencies.heartbeat_interval_s):
            return invoke(request)

    return work


def _executed(
    invoke: Callable[[Event[Any]], ToolInvocationCompleted], request: Event[ToolInvocationRequested]
) -> ToolInvocationCompleted:
    """The call inside a GenAI `execute_tool {name}` span; input and result only when content recording is on."""
    call = request.data.tool_call
    failure: StepError | None = None
    with telemetry.span(f"{telemetry.GenAI.OP_EXECUTE_TOOL} {call.name}") as span:
        span.set_attributes(
            telemetry.tool_call_attributes(
                tool_name=call.name,
                call_id=call.id,
                arguments=call.input,
                session_id=request.data.session_id,
                step=request.data.step,
            )
        )
        try:
            completed = invoke(request)
        except StepError as error:
            telemetry.mark_failed(span, error.code)
            failure = error  # raised once the span has ended, so it keeps the code, not the class name
        else:
            result = completed.result.content
            span.set_attributes(telemetry.content_attributes({telemetry.GenAI.TOOL_CALL_RESULT: result}))
            if completed.result.is_error:
                telemetry.mark_failed(span, TOOL_ERROR)
    if failure is not None:
        raise failure
    return completed


def _log_and_measure(request: Event[Any], completed: ToolInvocationCompleted) -> None:
    # Tool inputs may hold user data: name, ids and outcome at INFO; the input only as `_log_content` allows.
    logger.info(
        "tool call answered",
        extra={
            "tool_name": completed.tool_name,
            "tool_call_id": completed.result.tool_use_id,
            "step": completed.step,
            "is_error": completed.result.is_error,
            "duration_ms": completed.duration_ms,
        },
    )
    _log_content("tool call input", tool_input=request.data.tool_call.input)
    # One EMF blob per call so the `tool` dimension does not leak onto the batch's other metrics.
    for name, unit, value in (
        ("ToolCalls", MetricUnit.Count, 1.0),
        ("ToolErrors", MetricUnit.Count, 1.0 if completed.result.is_error else 0.0),
        ("ToolLatency", MetricUnit.Milliseconds, completed.duration_ms),
    ):
        with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
            metric.add_dimension(name="service", value=SERVICE)
            metric.add_dimension(name="tool", value=completed.tool_name)


def _log_content(message: str, **content: Any) -> None:
    """Tool content (input, output) at DEBUG under the rule spans follow: nothing unless the operator turned
    content recording on (`AGENTWIRE_TELEMETRY_RECORD_CONTENT`), and then redacted and truncated. A DEBUG
    log level alone is not consent: it is turned on to chase bugs, and logs are kept and read more widely
    than traces."""
    # The Powertools logger's own stdlib logger (its proxy hides `isEnabledFor` from the type checker).
    if not logging.getLogger(logger.name).isEnabledFor(logging.DEBUG):
        return  # spare every call the JSON dump and the redaction patterns
    recorded = telemetry.content_attributes(content)
    if recorded:
        logger.debug(message, extra=recorded)


def load_envelope(body: str) -> dict[str, Any]:
    """The EventBridge event in an SQS body, parsed once; its detail-type decides the route."""
    try:
        envelope = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("detail-type"), str):
        raise InvalidEvent("body is not an EventBridge event (no detail-type)")
    return envelope


def _correlate(envelope: dict[str, Any]) -> None:
    """Tag this record's log lines with its run, tenant, session and trace, before the event is validated."""
    detail = envelope.get("detail")
    metadata = detail.get("metadata") if isinstance(detail, dict) else None
    data = detail.get("data") if isinstance(detail, dict) else None
    session_id = data.get("session_id") if isinstance(data, dict) else None
    metadata = metadata if isinstance(metadata, dict) else None
    if metadata is not None:
        logger.set_correlation_id(metadata.get("run_id"))
    logger.append_keys(**telemetry.correlation_keys(metadata, session_id=session_id))


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    # Records of one batch belong to different runs: forget the previous record's keys.
    logger.remove_keys(["tenant_id", "session_id", "run_id", "trace_id", "span_id"])
    logger.set_correlation_id(None)
    envelope = load_envelope(record.body)
    detail_type = envelope["detail-type"]
    route = ROUTES.get(detail_type)
    if route is None:
        # The rule routes only the manifest's detail-types here; anything else is misrouted: DLQ it.
        raise InvalidEvent(f"the tools queue does not handle {detail_type!r}")
    dependencies = get_dependencies()
    with telemetry.record_span(envelope, service=SERVICE):
        _correlate(envelope)
        answer = answer_request(
            envelope,
            request=route.request,
            failure=route.failure,
            work=route.work(dependencies),
            publisher=dependencies.publisher,
        )
    metrics.add_metric(name="RequestsAnswered", unit=MetricUnit.Count, value=1)
    if isinstance(answer.data, FailureData):
        metrics.add_metric(name="StepFailures", unit=MetricUnit.Count, value=1)
        logger.warning("answered with a failure", extra={"code": answer.data.code, "detail_type": detail_type})


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    get_dependencies().register_lambda_context(context)
    try:
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        telemetry.flush()  # the sandbox may freeze once the invocation returns
    # Records SQS will redeliver (and, after max_receive_count, move to the DLQ).
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(response["batchItemFailures"]))
    return response
