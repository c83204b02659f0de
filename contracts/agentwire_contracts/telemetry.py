"""Telemetry every service uses the same way: OpenTelemetry traces that follow a run across the bus,
GenAI semantic-convention attributes, redaction, and the one catalogue of metric names.

    from agentwire_contracts import telemetry

    telemetry.configure("llm")                                  # once per process (idempotent)
    with telemetry.span_for_event("chat claude", event, kind=telemetry.SpanKind.CLIENT) as span:
        span.set_attributes(telemetry.model_call_attributes(provider="anthropic", model=event.data.model))
        ...
        span.set_attributes(telemetry.usage_attributes(result.usage, cost_microusd=result.cost_microusd))
        publisher.publish_one(telemetry.answer(event, data))      # the answer continues *this* span

**Propagation.** An event's `metadata.traceparent` (W3C) is the parent of the spans its consumer makes;
when it is absent, `metadata.trace_header` (the X-Ray form, which Step Functions copies into every
request) is used instead. `answer` / `trace_fields` put the current span's context into both fields, so
the next hop becomes its child.

**Export.** `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) set: OTLP over HTTP, batched — the
ADOT Lambda layer's collector on AWS. `AGENTWIRE_SPANS_FILE` set, or local mode (`AGENTWIRE_STAGE=local`):
one JSON object per finished span appended to that file (default `spans/<service>.jsonl`), written
synchronously so a reader sees a span as soon as it ends. If another component (the ADOT layer's
auto-instrumentation) already installed an SDK tracer provider, that one is used. `OTEL_SDK_DISABLED=true`
turns everything into no-ops.

**Content.** Prompts, completions, tool inputs and results are never recorded unless
`AGENTWIRE_TELEMETRY_RECORD_CONTENT=true` (or the GenAI convention's
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`); even then they pass through `redact`.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

    from agentwire_contracts.envelope import Event, EventData, Metadata

__all__ = [
    "METRICS",
    "GenAI",
    "Metric",
    "SpanKind",
    "answer",
    "configure",
    "content_recording_enabled",
    "context_from_metadata",
    "correlation_keys",
    "current_trace_header",
    "current_traceparent",
    "flush",
    "model_call_attributes",
    "redact",
    "span_for_event",
    "tool_call_attributes",
    "trace_fields",
    "traceparent_to_xray",
    "usage_attributes",
    "xray_to_traceparent",
]

ENV_SPANS_FILE = "AGENTWIRE_SPANS_FILE"
ENV_RECORD_CONTENT = "AGENTWIRE_TELEMETRY_RECORD_CONTENT"
ENV_GENAI_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_STAGE = "AGENTWIRE_STAGE"
TRACER_NAME = "agentwire"
#: Recorded content (when enabled) is cut to this many characters per attribute.
MAX_CONTENT_CHARS = 4096

# -- GenAI semantic conventions ----------------------------------------------------------------------


class GenAI:
    """Attribute names and values of the OpenTelemetry GenAI semantic conventions that agentwire uses."""

    OPERATION_NAME = "gen_ai.operation.name"
    PROVIDER_NAME = "gen_ai.provider.name"
    REQUEST_MODEL = "gen_ai.request.model"
    REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
    REQUEST_TEMPERATURE = "gen_ai.request.temperature"
    RESPONSE_MODEL = "gen_ai.response.model"
    RESPONSE_ID = "gen_ai.response.id"
    RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
    USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
    USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
    USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
    USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
    CONVERSATION_ID = "gen_ai.conversation.id"
    AGENT_NAME = "gen_ai.agent.name"
    TOOL_NAME = "gen_ai.tool.name"
    TOOL_CALL_ID = "gen_ai.tool.call.id"
    TOOL_TYPE = "gen_ai.tool.type"
    TOOL_DESCRIPTION = "gen_ai.tool.description"
    TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
    TOOL_CALL_RESULT = "gen_ai.tool.call.result"
    INPUT_MESSAGES = "gen_ai.input.messages"
    OUTPUT_MESSAGES = "gen_ai.output.messages"
    SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
    ERROR_TYPE = "error.type"

    OP_CHAT = "chat"
    OP_EXECUTE_TOOL = "execute_tool"
    OP_INVOKE_AGENT = "invoke_agent"

    #: agentwire's provider names → the convention's well-known `gen_ai.provider.name` values.
    PROVIDERS = {"anthropic": "anthropic", "openai": "openai", "bedrock": "aws.bedrock"}


#: agentwire's own span attributes (the correlation keys of the logs, on every span).
ATTR_RUN_ID = "agentwire.run_id"
ATTR_TENANT_ID = "agentwire.tenant_id"
ATTR_SESSION_ID = "agentwire.session_id"
ATTR_EVENT_ID = "agentwire.event_id"
ATTR_CAUSATION_ID = "agentwire.causation_id"
ATTR_DETAIL_TYPE = "agentwire.detail_type"
ATTR_STEP = "agentwire.step"
ATTR_COST_MICROUSD = "agentwire.cost_microusd"
ATTR_SERVICE = "agentwire.service"


def model_call_attributes(
    *,
    provider: str,
    model: str,
    operation: str = GenAI.OP_CHAT,
    max_tokens: int | None = None,
    temperature: float | None = None,
    session_id: str | None = None,
    agent: str | None = None,
    step: int | None = None,
) -> dict[str, Any]:
    """The request side of a model call's span (name it `f"{operation} {model}"`, kind CLIENT)."""
    attributes: dict[str, Any] = {
        GenAI.OPERATION_NAME: operation,
        GenAI.PROVIDER_NAME: GenAI.PROVIDERS.get(provider, provider),
        GenAI.REQUEST_MODEL: model,
    }
    optional = {
        GenAI.REQUEST_MAX_TOKENS: max_tokens,
        GenAI.REQUEST_TEMPERATURE: temperature,
        GenAI.CONVERSATION_ID: session_id,
        GenAI.AGENT_NAME: agent or None,
        ATTR_STEP: step,
    }
    attributes.update({key: value for key, value in optional.items() if value is not None})
    return attributes


def usage_attributes(
    usage: Any,
    *,
    response_model: str | None = None,
    finish_reason: str | None = None,
    response_id: str | None = None,
    cost_microusd: int | None = None,
) -> dict[str, Any]:
    """The response side of a model call: token usage (a `content.Usage` or a mapping), model, stop reason."""

    def count(name: str) -> int:
        value = usage.get(name, 0) if isinstance(usage, Mapping) else getattr(usage, name, 0)
        return int(value or 0)

    attributes: dict[str, Any] = {
        GenAI.USAGE_INPUT_TOKENS: count("input_tokens"),
        GenAI.USAGE_OUTPUT_TOKENS: count("output_tokens"),
        GenAI.USAGE_CACHE_READ_INPUT_TOKENS: count("cache_read_input_tokens"),
        GenAI.USAGE_CACHE_CREATION_INPUT_TOKENS: count("cache_creation_input_tokens"),
    }
    if response_model:
        attributes[GenAI.RESPONSE_MODEL] = response_model
    if finish_reason:
        attributes[GenAI.RESPONSE_FINISH_REASONS] = [finish_reason]
    if response_id:
        attributes[GenAI.RESPONSE_ID] = response_id
    if cost_microusd is not None:
        attributes[ATTR_COST_MICROUSD] = int(cost_microusd)
    return attributes


def tool_call_attributes(
    *,
    tool_name: str,
    call_id: str | None = None,
    description: str | None = None,
    arguments: Any = None,
    result: Any = None,
    session_id: str | None = None,
    step: int | None = None,
) -> dict[str, Any]:
    """A tool execution's span (name it `f"execute_tool {tool_name}"`, kind INTERNAL). Arguments and result
    are recorded only when content recording is on, and then redacted and truncated."""
    attributes: dict[str, Any] = {
        GenAI.OPERATION_NAME: GenAI.OP_EXECUTE_TOOL,
        GenAI.TOOL_NAME: tool_name,
        GenAI.TOOL_TYPE: "function",
    }
    optional = {
        GenAI.TOOL_CALL_ID: call_id,
        GenAI.TOOL_DESCRIPTION: description,
        GenAI.CONVERSATION_ID: session_id,
        ATTR_STEP: step,
    }
    attributes.update({key: value for key, value in optional.items() if value is not None})
    attributes.update(content_attributes({GenAI.TOOL_CALL_ARGUMENTS: arguments, GenAI.TOOL_CALL_RESULT: result}))
    return attributes


def content_attributes(values: Mapping[str, Any]) -> dict[str, str]:
    """`values` as redacted, truncated JSON strings — or nothing at all unless content recording is on."""
    if not content_recording_enabled():
        return {}
    recorded: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        recorded[key] = truncate(redact(text), MAX_CONTENT_CHARS)
    return recorded


def content_recording_enabled() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes")
        for name in (ENV_RECORD_CONTENT, ENV_GENAI_CAPTURE_CONTENT)
    )


# -- redaction ---------------------------------------------------------------------------------------

REDACTED = "[REDACTED]"
_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL),
    re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"),  # Anthropic, OpenAI
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"\bawk_[A-Za-z0-9_\-]{16,}"),  # agentwire API keys
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),  # GitHub tokens
    re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),  # Slack tokens
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # JWTs
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{8,}=*"),
)
#: `password=...`, `"api_key": "..."`, `secret: ...` — keep the name, drop the value.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(\"?\b(?:password|passwd|secret|api[_-]?key|access[_-]?key|secret[_-]?access[_-]?key|token|"
    r"authorization|private[_-]?key|client[_-]?secret)\"?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;}&]+)"
)


def redact(text: str) -> str:
    """`text` with anything that looks like a secret replaced by `[REDACTED]`."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return _SECRET_ASSIGNMENT.sub(lambda match: f"{match.group(1)}{REDACTED}", text)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: max(0, limit - 1)]}…"


# -- trace context formats ---------------------------------------------------------------------------

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_XRAY_ROOT = re.compile(r"^1-([0-9a-f]{8})-([0-9a-f]{24})$")


def parse_traceparent(value: str | None) -> SpanContext | None:
    """A W3C `traceparent` → a remote span context (None if absent or malformed)."""
    match = _TRACEPARENT.match((value or "").strip().lower())
    if not match:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or int(trace_id, 16) == 0 or int(span_id, 16) == 0:
        return None
    return SpanContext(
        trace_id=int(trace_id, 16), span_id=int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16))
    )


def format_traceparent(span_context: SpanContext) -> str:
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


def xray_to_traceparent(header: str | None) -> str | None:
    """`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1` → the W3C form of the
    same trace (`00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01`). None without a Root or Parent:
    a root alone names a trace but no span to be the child of."""
    if not header:
        return None
    fields: dict[str, str] = {}
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        fields[key.strip().lower()] = value.strip().lower()
    root = _XRAY_ROOT.match(fields.get("root", ""))
    parent = fields.get("parent", "")
    if not root or not re.fullmatch(r"[0-9a-f]{16}", parent) or int(parent, 16) == 0:
        return None
    sampled = "00" if fields.get("sampled") == "0" else "01"
    return f"00-{root.group(1)}{root.group(2)}-{parent}-{sampled}"


def traceparent_to_xray(traceparent: str | None) -> str | None:
    """The X-Ray trace header of a W3C `traceparent` (the inverse of `xray_to_traceparent`)."""
    span_context = parse_traceparent(traceparent)
    if span_context is None:
        return None
    trace_id = f"{span_context.trace_id:032x}"
    sampled = 1 if span_context.trace_flags.sampled else 0
    return f"Root=1-{trace_id[:8]}-{trace_id[8:]};Parent={span_context.span_id:016x};Sampled={sampled}"


def _metadata_field(metadata: Metadata | Mapping[str, Any] | None, name: str) -> Any:
    if metadata is None:
        return None
    if isinstance(metadata, Mapping):
        return metadata.get(name)
    return getattr(metadata, name, None)


def context_from_metadata(metadata: Metadata | Mapping[str, Any] | None) -> otel_context.Context | None:
    """The remote parent an event's metadata names: `traceparent`, else the X-Ray `trace_header`."""
    span_context = parse_traceparent(_metadata_field(metadata, "traceparent")) or parse_traceparent(
        xray_to_traceparent(_metadata_field(metadata, "trace_header"))
    )
    if span_context is None:
        return None
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def current_traceparent() -> str | None:
    span_context = trace.get_current_span().get_span_context()
    return format_traceparent(span_context) if span_context.is_valid else None


def current_trace_header() -> str | None:
    return traceparent_to_xray(current_traceparent())


def trace_fields(fallback: Metadata | Mapping[str, Any] | None = None) -> dict[str, str | None]:
    """`traceparent` and `trace_header` for an event published now: the current span's context, or else
    the fallback metadata's (so an uninstrumented hop passes the trace on unchanged)."""
    traceparent = current_traceparent()
    if traceparent is None:
        return {
            "traceparent": _metadata_field(fallback, "traceparent"),
            "trace_header": _metadata_field(fallback, "trace_header"),
        }
    return {"traceparent": traceparent, "trace_header": traceparent_to_xray(traceparent)}


def answer(request: Event[Any], data: EventData, *, source: str | None = None) -> Event[Any]:
    """`request.answer(data)`, continuing the current span: the next consumer's span becomes its child."""
    fields = trace_fields(request.metadata)
    return request.answer(data, source=source, traceparent=fields["traceparent"], trace_header=fields["trace_header"])


# -- configuration -----------------------------------------------------------------------------------


@dataclass
class _State:
    service: str | None = None
    provider: Any = None


_state = _State()
_configure_lock = threading.Lock()


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def default_spans_file(service: str) -> Path | None:
    explicit = os.environ.get(ENV_SPANS_FILE)
    if explicit:
        return Path(explicit.replace("{service}", service).replace("{pid}", str(os.getpid())))
    if os.environ.get(ENV_STAGE) == "local":
        return Path("spans") / f"{service}.jsonl"
    return None


def configure(service: str | None = None, *, spans_file: Path | None = None, force: bool = False) -> Any:
    """Set up tracing for this process once; returns the tracer provider. Later calls return the same one
    (`force=True` replaces it: tests only)."""
    with _configure_lock:
        if _state.provider is not None and not force:
            return _state.provider
        service = service or os.environ.get("OTEL_SERVICE_NAME") or os.environ.get("POWERTOOLS_SERVICE_NAME")
        service = service or "agentwire"
        if _truthy("OTEL_SDK_DISABLED"):
            _state.service, _state.provider = service, trace.get_tracer_provider()
            return _state.provider
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        existing = trace.get_tracer_provider()
        if isinstance(existing, TracerProvider) and not force:
            # The ADOT layer's auto-instrumentation (or the application) configured the SDK already.
            _state.service, _state.provider = service, existing
            return existing
        provider = TracerProvider(resource=Resource.create({"service.name": service, "service.namespace": "agentwire"}))
        if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        path = spans_file or default_spans_file(service)
        if path is not None:
            provider.add_span_processor(SimpleSpanProcessor(JsonlSpanExporter(path, service)))
        _install_provider(provider)
        _state.service, _state.provider = service, provider
        return provider


def _install_provider(provider: TracerProvider) -> None:
    # The API allows setting the global provider once; tests (force=True) replace it the same way.
    from opentelemetry.trace import _TRACER_PROVIDER_SET_ONCE

    if _TRACER_PROVIDER_SET_ONCE._done:
        trace._TRACER_PROVIDER = provider  # type: ignore[attr-defined]
    else:
        trace.set_tracer_provider(provider)


def tracer() -> trace.Tracer:
    configure()
    return trace.get_tracer(TRACER_NAME, tracer_provider=_state.provider)


def flush(timeout_ms: int = 5000) -> bool:
    """Export what is buffered (call before a Lambda invocation returns: the sandbox may freeze)."""
    provider = _state.provider
    force_flush = getattr(provider, "force_flush", None)
    return bool(force_flush(timeout_ms)) if callable(force_flush) else True


def event_attributes(metadata: Metadata | Mapping[str, Any] | None, detail_type: str | None = None) -> dict[str, Any]:
    """The correlation attributes of a span about an event (never its content)."""
    pairs = {
        ATTR_RUN_ID: _metadata_field(metadata, "run_id"),
        ATTR_TENANT_ID: _metadata_field(metadata, "tenant_id"),
        ATTR_EVENT_ID: _metadata_field(metadata, "event_id"),
        ATTR_CAUSATION_ID: _metadata_field(metadata, "causation_id"),
        ATTR_DETAIL_TYPE: detail_type,
    }
    return {key: str(value) for key, value in pairs.items() if value}


@contextmanager
def record_span(record: str | Mapping[str, Any] | Event[Any], *, service: str) -> Iterator[Span]:
    """One SQS record's CONSUMER span `process <detail-type>`, current inside the block: the span the
    runtime opened around the record when that is current (the local worker does), else a new child of
    the trace context in the event's metadata (on Lambda). `record` is the SQS body, the parsed
    EventBridge envelope, or the parsed `Event`."""
    detail_type, metadata = _record_identity(record)
    name = f"process {detail_type}"
    current = trace.get_current_span()
    if current.is_recording() and getattr(current, "name", None) == name:
        yield current
        return
    with span_for_event(name, metadata, detail_type=detail_type, attributes={ATTR_SERVICE: service}) as span:
        yield span


def _record_identity(record: str | Mapping[str, Any] | Event[Any]) -> tuple[str, Any]:
    if hasattr(record, "detail_type") and hasattr(record, "metadata"):
        return str(record.detail_type), record.metadata
    envelope: Any = record
    if isinstance(record, str):
        try:
            envelope = json.loads(record)
        except ValueError:
            return "record", None
    if not isinstance(envelope, Mapping):
        return "record", None
    detail = envelope.get("detail")
    metadata = detail.get("metadata") if isinstance(detail, Mapping) else None
    return str(envelope.get("detail-type", "record")), metadata if isinstance(metadata, Mapping) else None


@contextmanager
def span_for_event(
    name: str,
    event: Event[Any] | Metadata | Mapping[str, Any] | None,
    *,
    kind: SpanKind = SpanKind.CONSUMER,
    attributes: Mapping[str, Any] | None = None,
    detail_type: str | None = None,
) -> Iterator[Span]:
    """A span that is a child of the trace context in `event`'s metadata (an `Event`, its `Metadata`, or a
    raw `metadata` mapping), current inside the block. An exception marks it failed (type only, never the
    message: messages may carry content) and propagates."""
    metadata = getattr(event, "metadata", event)
    if detail_type is None and hasattr(event, "detail_type"):
        detail_type = str(event.detail_type)  # type: ignore[union-attr]
    parent = context_from_metadata(metadata)
    merged = {**event_attributes(metadata, detail_type), **(attributes or {})}
    with tracer().start_as_current_span(
        name, context=parent, kind=kind, attributes=merged, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as exc:
            mark_failed(span, type(exc).__name__)
            raise


@contextmanager
def span(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None
) -> Iterator[Span]:
    """A child of the current span (a step inside a handler)."""
    with tracer().start_as_current_span(
        name, kind=kind, attributes=dict(attributes or {}), record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            mark_failed(current, type(exc).__name__)
            raise


def mark_failed(span: Span, error_type: str, description: str | None = None) -> None:
    """Mark a span failed with a machine-readable `error.type` (e.g. `Llm.RateLimited`)."""
    span.set_attribute(GenAI.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, description or error_type))


def correlation_keys(metadata: Metadata | Mapping[str, Any] | None, *, session_id: str | None = None) -> dict[str, str]:
    """The keys every log line of a record carries (`logger.append_keys(**correlation_keys(...))`):
    run_id, tenant_id, session_id and the trace id of the current span (or of the event)."""
    keys = {
        "run_id": _metadata_field(metadata, "run_id"),
        "tenant_id": _metadata_field(metadata, "tenant_id"),
        "session_id": session_id,
    }
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        keys["trace_id"] = f"{span_context.trace_id:032x}"
        keys["span_id"] = f"{span_context.span_id:016x}"
    else:
        remote = parse_traceparent(_metadata_field(metadata, "traceparent")) or parse_traceparent(
            xray_to_traceparent(_metadata_field(metadata, "trace_header"))
        )
        if remote is not None:
            keys["trace_id"] = f"{remote.trace_id:032x}"
    return {key: str(value) for key, value in keys.items() if value}


# -- the local exporter ------------------------------------------------------------------------------


def span_to_dict(span: ReadableSpan, service: str) -> dict[str, Any]:
    span_context = span.get_span_context()
    parent = span.parent
    start, end = span.start_time or 0, span.end_time or 0
    return {
        "trace_id": f"{span_context.trace_id:032x}" if span_context else None,
        "span_id": f"{span_context.span_id:016x}" if span_context else None,
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": service,
        "start_ns": start,
        "end_ns": end,
        "duration_ms": round((end - start) / 1e6, 3),
        "status": span.status.status_code.name,
        "status_description": span.status.description,
        "attributes": {key: _jsonable(value) for key, value in (span.attributes or {}).items()},
        "events": [
            {"name": event.name, "time_ns": event.timestamp, "attributes": dict(event.attributes or {})}
            for event in span.events
        ],
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Sequence):
        return [_jsonable(item) for item in value]
    return str(value)


class JsonlSpanExporter(SpanExporter):
    """Appends each span as one JSON line; one `write` per line on an O_APPEND descriptor, so processes
    sharing a file never interleave within a line."""

    def __init__(self, path: Path, service: str) -> None:
        self.path = path
        self.service = service
        self._lock = threading.Lock()
        self._fd: int | None = None

    def _descriptor(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_to_dict(span, self.service), default=str) + "\n" for span in spans)
        try:
            with self._lock:
                os.write(self._descriptor(), lines.encode())
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def read_spans(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Every span in these JSONL files (a torn last line, from a writer killed mid-write, is skipped)."""
    spans: list[dict[str, Any]] = []
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            try:
                spans.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return spans


# -- the metrics catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One metric of the catalogue (Powertools EMF, namespace `agentwire`; `service` is a dimension of
    every metric). `planned`: named here, emitted once the service is wired (see docs/observability.md)."""

    name: str
    unit: str
    emitted_by: str
    description: str
    dimensions: tuple[str, ...] = ()
    planned: bool = False


METRICS_NAMESPACE = "agentwire"
_M = Metric
METRICS: tuple[Metric, ...] = (
    # runs (the gateway's projector sees every run's final event; the state machine publishes them itself)
    _M("RunsRequested", "Count", "gateway", "Messages accepted (202) that request a run."),
    _M("RunsStarted", "Count", "orchestrator", "Executions started by the starter (one per run)."),
    _M("RunsCompleted", "Count", "gateway", "Runs that finished with an answer (projected run.completed).", ("agent",)),
    _M(
        "RunsFailed",
        "Count",
        "gateway",
        "Runs that failed, by machine-readable code (projected run.failed).",
        ("reason",),
    ),
    _M("RunsCancelled", "Count", "gateway", "Runs cancelled by a client.", ()),
    _M("RunDuration", "Milliseconds", "gateway", "run.requested to the run's final event.", ()),
    _M("TasksResumed", "Count", "orchestrator", "Task tokens answered (SendTaskSuccess/Failure)."),
    _M("TaskHeartbeats", "Count", "orchestrator", "Worker heartbeats passed on (SendTaskHeartbeat)."),
    _M(
        "ApprovalsRequested",
        "Count",
        "gateway",
        "Tool calls that asked for a human decision (projected run.approval.requested, once each).",
        ("tool",),
    ),
    _M("ApprovalsWaiting", "Count", "gateway", "Approvals pending in the read model when one is projected.", ()),
    _M("AuthRejected", "Count", "gateway", "Requests refused for a missing or wrong credential."),
    # model calls
    _M("Completions", "Count", "llm", "Model turns answered (including cache hits)."),
    _M("CompletionsFailed", "Count", "llm", "Model turns answered with llm.completion.failed."),
    _M("CompletionErrors", "Count", "llm", "Failed model turns by error code.", ("code",)),
    _M("CompletionLatency", "Milliseconds", "llm", "Duration of a model turn as the llm service saw it."),
    _M("ModelLatency", "Milliseconds", "llm", "Provider call duration per model.", ("provider", "model")),
    _M("InputTokens", "Count", "llm", "Prompt tokens billed."),
    _M("OutputTokens", "Count", "llm", "Completion tokens billed."),
    _M("CacheReadInputTokens", "Count", "llm", "Prompt tokens read from the provider's prompt cache."),
    _M("CacheCreationInputTokens", "Count", "llm", "Prompt tokens written to the provider's prompt cache."),
    _M("CostMicroUSD", "Count", "llm", "Cost of model calls in micro-dollars (1e-6 USD)."),
    _M("ModelErrors", "Count", "llm", "Provider errors per model and code.", ("provider", "model", "code")),
    _M("Throttles", "Count", "llm", "Rate limits (ours or the provider's 429/529) per model.", ("provider", "model")),
    _M("ResponseCacheHits", "Count", "llm", "Completions answered from the response cache.", ("provider", "model")),
    _M("BudgetRefusals", "Count", "llm", "Calls refused because the run's cost or token budget is spent."),
    # tools
    _M("ToolCalls", "Count", "tools", "Tool executions.", ("tool",)),
    _M("ToolErrors", "Count", "tools", "Tool executions whose result is an error.", ("tool",)),
    _M("ToolLatency", "Milliseconds", "tools", "Tool execution duration.", ("tool",)),
    # memory
    _M("ContextTokens", "Count", "memory", "Estimated tokens of the context window returned."),
    _M("ContextFailures", "Count", "memory", "Context requests answered with memory.context.failed."),
    _M("CompactionsStored", "Count", "memory", "Compaction summaries stored."),
    # every consumer
    _M("RecordsFailed", "Count", "every consumer", "SQS records reported in batchItemFailures (retried, then DLQ)."),
    _M(
        "DlqArrivals",
        "Count",
        "AWS/SQS",
        "Not EMF: ApproximateNumberOfMessagesVisible of every `*-dlq` queue (dimension QueueName).",
        ("QueueName",),
    ),
)


def metric(name: str) -> Metric:
    for candidate in METRICS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"{name} is not in the metrics catalogue")
