"""What the Lambda runtime (with the ADOT layer) adds around a handler, done by the local runtime: a
consumer span per SQS record, a server span per HTTP request, and the last failure reason of every
record a handler reports failed (so `agentwire dlq` can say why a message is there).

Each record's span is a child of the trace context in the event's metadata (`traceparent`, else the
X-Ray `trace_header` that Step Functions copies into every request) and is *current* while the record
handler runs: spans the service makes with `agentwire_contracts.telemetry` become its children, and
`telemetry.answer` carries it on to the next hop.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentwire_contracts import telemetry

#: Where the workers append failure reasons (relative to their working directory, the stack's workdir).
FAILURES_FILE = "failures.jsonl"
ENV_FAILURES_FILE = "AGENTWIRE_FAILURES_FILE"
MAX_REASON_CHARS = 500

_collector = threading.local()
_instrumented: list[str] = []
_instrument_lock = threading.Lock()


def failures_path() -> Path | None:
    explicit = os.environ.get(ENV_FAILURES_FILE)
    if explicit:
        return Path(explicit)
    return Path(FAILURES_FILE) if os.environ.get(telemetry.ENV_STAGE) == "local" else None


def exception_reason(exc: BaseException) -> str:
    return telemetry.truncate(telemetry.redact(f"{type(exc).__name__}: {exc}"), MAX_REASON_CHARS)


def _powertools_reason(failure: str) -> tuple[str, str]:
    """Powertools' failure string `<class 'pkg.Error'>:message` → (`Error`, `Error: message`)."""
    match = re.match(r"<class '([^']+)'>:(.*)", failure, re.DOTALL)
    if not match:
        return "Error", telemetry.truncate(telemetry.redact(failure), MAX_REASON_CHARS)
    error_type = match.group(1).rsplit(".", 1)[-1]
    reason = f"{error_type}: {match.group(2).strip()}"
    return error_type, telemetry.truncate(telemetry.redact(reason), MAX_REASON_CHARS)


@contextmanager
def collect_record_failures() -> Iterator[dict[str, str]]:
    """Within the block (one handler invocation on this thread), failed records' reasons by message id."""
    reasons: dict[str, str] = {}
    _collector.reasons = reasons
    try:
        yield reasons
    finally:
        _collector.reasons = None


def record_metadata(record: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The event metadata and detail-type inside an SQS record's body (an EventBridge envelope)."""
    try:
        envelope = json.loads(record.get("body") or "")
        detail = envelope.get("detail") or {}
        metadata = detail.get("metadata")
        return (metadata if isinstance(metadata, dict) else None), envelope.get("detail-type")
    except (ValueError, AttributeError):
        return None, None


def instrument(service: str) -> None:
    """Configure tracing for this worker process and wrap Powertools' per-record processing in spans."""
    with _instrument_lock:
        if _instrumented:
            return
        telemetry.configure(service)
        from aws_lambda_powertools.utilities.batch import BatchProcessor

        original = BatchProcessor._process_record

        def traced_process_record(self: Any, record: dict[str, Any]) -> Any:
            metadata, detail_type = record_metadata(record)
            queue = str(record.get("eventSourceARN", "")).rsplit(":", 1)[-1]
            attributes = {
                "messaging.system": "aws_sqs",
                "messaging.operation.type": "process",
                "messaging.destination.name": queue,
                "messaging.message.id": str(record.get("messageId", "")),
                telemetry.ATTR_SERVICE: service,
            }
            name = f"process {detail_type or 'record'}"
            with telemetry.span_for_event(name, metadata, detail_type=detail_type, attributes=attributes) as span:
                result = original(self, record)
                if isinstance(result, tuple) and result and result[0] == "fail":
                    error_type, reason = _powertools_reason(str(result[1]))
                    telemetry.mark_failed(span, error_type)
                    reasons = getattr(_collector, "reasons", None)
                    if reasons is not None and record.get("messageId"):
                        reasons[str(record["messageId"])] = reason
                return result

        BatchProcessor._process_record = traced_process_record  # type: ignore[method-assign]
        add_trace_ids_to_log_records()
        _instrumented.append(service)


def add_trace_ids_to_log_records() -> None:
    """Every log record made while a span is current carries `trace_id` and `span_id` (Powertools' JSON
    formatter prints a record's extra attributes), as OpenTelemetry's logging instrumentation does."""
    import logging

    from opentelemetry import trace

    make_record = logging.getLogRecordFactory()

    def record_with_trace(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = f"{span_context.trace_id:032x}"
            record.span_id = f"{span_context.span_id:016x}"
        return record

    logging.setLogRecordFactory(record_with_trace)


class FailureLog:
    """Appends `{message_id, queue, reason, ...}` lines for records that failed (None: records nothing)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(self, queue: Any, messages: Sequence[dict[str, Any]], failed: set[str], reasons: dict[str, str]) -> None:
        if self.path is None or not failed:
            return
        lines = []
        for message in messages:
            message_id = message["MessageId"]
            if message_id not in failed:
                continue
            attributes = message.get("Attributes") or {}
            lines.append(
                json.dumps(
                    {
                        "message_id": message_id,
                        "service": queue.service,
                        "consumer": queue.consumer,
                        "queue": queue.queue_name,
                        "dlq": queue.dlq_name,
                        "receive_count": int(attributes.get("ApproximateReceiveCount", 0) or 0),
                        "max_receive_count": queue.max_receive_count,
                        "reason": reasons.get(message_id, "reported in batchItemFailures (no reason given)"),
                        "at": time.time(),
                    }
                )
            )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, ("\n".join(lines) + "\n").encode())
            finally:
                os.close(fd)


def read_failures(path: Path) -> dict[str, dict[str, Any]]:
    """The last recorded failure of each message id."""
    last: dict[str, dict[str, Any]] = {}
    try:
        text = path.read_text()
    except OSError:
        return last
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        last[str(entry.get("message_id"))] = entry
    return last
