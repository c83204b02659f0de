"""Lambda entry point: SQS batches of `llm.completion.requested.v1`, each answered on the bus."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentwire_contracts import telemetry
from agentwire_contracts.consumer import answer_request
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.llm import LlmCompletionCompleted, LlmCompletionFailed, LlmCompletionRequested
from agentwire_contracts.parsing import InvalidEvent
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from agentwire_llm.completion import CallReport
from agentwire_llm.dependencies import Dependencies, get_dependencies

SERVICE = "llm"
NAMESPACE = "agentwire"
_RECORD_KEYS = ("tenant_id", "session_id", "step", "run_id", "trace_id", "span_id")

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# The response always lists the failed records; raising when all failed would only make the runtime
# treat the batch as one failure, which the response already says.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
telemetry.configure(SERVICE)


def _per_model(model: str, provider: str) -> EphemeralMetrics:
    """Metrics with the model as a dimension, flushed by the caller (one EMF blob per answer)."""
    per_model = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    per_model.add_dimension(name="provider", value=provider or "unknown")
    per_model.add_dimension(name="model", value=model or "unknown")
    return per_model


def _record_usage(data: LlmCompletionCompleted) -> None:
    metrics.add_metric(name="Completions", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="InputTokens", unit=MetricUnit.Count, value=data.usage.input_tokens)
    metrics.add_metric(name="OutputTokens", unit=MetricUnit.Count, value=data.usage.output_tokens)
    metrics.add_metric(name="CacheReadInputTokens", unit=MetricUnit.Count, value=data.usage.cache_read_input_tokens)
    metrics.add_metric(
        name="CacheCreationInputTokens", unit=MetricUnit.Count, value=data.usage.cache_creation_input_tokens
    )
    metrics.add_metric(name="CompletionLatency", unit=MetricUnit.Milliseconds, value=data.duration_ms)
    metrics.add_metric(name="CostMicroUSD", unit=MetricUnit.Count, value=data.cost_microusd)
    per_model = _per_model(data.model, data.provider)
    per_model.add_metric(name="ModelCompletions", unit=MetricUnit.Count, value=1)
    per_model.add_metric(name="ModelInputTokens", unit=MetricUnit.Count, value=data.usage.input_tokens)
    per_model.add_metric(name="ModelOutputTokens", unit=MetricUnit.Count, value=data.usage.output_tokens)
    per_model.add_metric(name="ModelCachedInputTokens", unit=MetricUnit.Count, value=data.usage.cache_read_input_tokens)
    per_model.add_metric(name="ModelCostMicroUSD", unit=MetricUnit.Count, value=data.cost_microusd)
    per_model.add_metric(name="ModelLatency", unit=MetricUnit.Milliseconds, value=data.duration_ms)
    per_model.add_metric(name="ResponseCacheHits", unit=MetricUnit.Count, value=1 if data.cached else 0)
    if data.fallback_from:
        per_model.add_metric(name="Fallbacks", unit=MetricUnit.Count, value=1)
    per_model.flush_metrics()


def _record_report(report: CallReport, provider_of: Callable[[str], str]) -> None:
    """Throttles (our limiter or the provider's 429) and provider errors, per model."""
    for model in report.throttled:
        per_model = _per_model(model, provider_of(model))
        per_model.add_metric(name="Throttles", unit=MetricUnit.Count, value=1)
        per_model.flush_metrics()
    for model, code in report.failed_models:
        per_model = _per_model(model, provider_of(model))
        per_model.add_dimension(name="code", value=code)
        per_model.add_metric(name="ModelErrors", unit=MetricUnit.Count, value=1)
        per_model.flush_metrics()
    if report.budget_refused:
        metrics.add_metric(name="BudgetRefusals", unit=MetricUnit.Count, value=1)


def _record_failure(failure: LlmCompletionFailed) -> None:
    metrics.add_metric(name="CompletionsFailed", unit=MetricUnit.Count, value=1)
    # A metric of its own, so the error code can be a dimension without splitting the usage metrics.
    with single_metric(
        name="CompletionErrors",
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
    ) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name="code", value=failure.code)
    logger.warning(
        "completion failed",
        extra={"code": failure.code, "retryable": failure.retryable, "error_message": failure.message[:500]},
    )


def _work(dependencies: Dependencies, event: Event[LlmCompletionRequested]) -> LlmCompletionCompleted:
    logger.set_correlation_id(event.metadata.run_id)
    logger.append_keys(**telemetry.correlation_keys(event.metadata, session_id=event.data.session_id))
    logger.append_keys(step=event.data.step)
    try:
        answer = dependencies.completions.answer(event)
    finally:
        completions = dependencies.completions
        _record_report(completions.last_report, lambda model: completions.router.provider_for(model).name)
    data = answer.data
    dropped = dependencies.completions.last_report.dropped_tool_calls
    if dropped:
        # The session stays usable (see `only_finished_tool_calls`), but the model wanted a tool it did not
        # get: usually max_tokens is too small for the agent. Counts and the model only, never the calls' input.
        logger.warning(
            "unfinished tool calls dropped from an answer that did not stop for them",
            extra={
                "dropped_tool_calls": dropped,
                "stop_reason": data.stop_reason,
                "provider": data.provider,
                "model": data.model,
                "output_tokens": data.usage.output_tokens,
            },
        )
    if answer.replayed:
        # Its usage was counted when it was recorded; what is worth seeing is how often SQS redelivers.
        metrics.add_metric(name="CompletionsReplayed", unit=MetricUnit.Count, value=1)
    else:
        _record_usage(data)
    # Sizes and names only: message content is the tenant's data and never goes to the logs.
    logger.info(
        "completion answered",
        extra={
            "replayed": answer.replayed,
            "provider": data.provider,
            "model": data.model,
            "stop_reason": data.stop_reason,
            "tool_calls": len(data.tool_calls),
            "input_tokens": data.usage.input_tokens,
            "output_tokens": data.usage.output_tokens,
            "duration_ms": data.duration_ms,
            "cost_microusd": data.cost_microusd,
            "cached": data.cached,
            "fallback_from": data.fallback_from,
        },
    )
    return data


@tracer.capture_method
def handle_record(record: SQSRecord, dependencies: Dependencies) -> Event[Any]:
    """Answer one request (or raise, so the record is retried by SQS and ends in the DLQ)."""
    logger.set_correlation_id(None)
    logger.remove_keys(list(_RECORD_KEYS))
    try:
        with telemetry.record_span(record.body, service=SERVICE):
            answer = answer_request(
                record.body,
                request=LlmCompletionRequested,
                failure=LlmCompletionFailed,
                work=lambda event: _work(dependencies, event),
                publisher=dependencies.publisher,
            )
    except InvalidEvent as exc:
        # Validation errors quote the offending input, which may be message content: log the kind only.
        logger.error("record is not a valid request", extra={"message_id": record.message_id, "code": exc.code})
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=1)
        raise
    except Exception:
        logger.exception("record not processed", extra={"message_id": record.message_id})
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=1)
        raise
    if isinstance(answer.data, LlmCompletionFailed):
        _record_failure(answer.data)
    return answer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    dependencies = get_dependencies()
    dependencies.register_lambda_context(context)
    # The service-level metrics keep the catalogue's dimensions (service only: the dashboards and alarms
    # query exactly that set); the per-model blobs (`_per_model`) carry provider and model.
    try:
        return process_partial_response(
            event=event,
            record_handler=lambda record: handle_record(record, dependencies),
            processor=processor,
            context=context,
        )
    finally:
        telemetry.flush()  # the sandbox may freeze once the invocation returns
