"""Lambda entry points: the HTTP API and the read-model projector. Thin: parse, delegate, shape."""

from __future__ import annotations

import base64
import functools
import json
import threading
import time
from typing import Any

from agentwire_contracts import telemetry
from agentwire_contracts.envelope import Event
from agentwire_contracts.parsing import parse_eventbridge
from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from agentwire_gateway import guards, problems
from agentwire_gateway.api import PRINCIPAL_CONTEXT_KEY, ROUTES, app, lambda_trace_header
from agentwire_gateway.dependencies import get_dependencies
from agentwire_gateway.guards import Claim, IdempotencyClaim
from agentwire_gateway.model import ApprovalStatus, RunStatus
from agentwire_gateway.routing import MatchKind
from agentwire_gateway.service import ProjectionResult

logger = Logger(service="gateway")
tracer = Tracer(service="gateway")
metrics = Metrics(namespace="agentwire", service="gateway")
processor = BatchProcessor(event_type=EventType.SQS)
SERVICE = "gateway"
NAMESPACE = "agentwire"
telemetry.configure(SERVICE)


def _header(event: dict[str, Any], name: str) -> str | None:
    headers = event.get("headers") or {}
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def _request_line(event: dict[str, Any]) -> tuple[str, str]:
    http = (event.get("requestContext") or {}).get("http") or {}
    return str(http.get("method", "GET")).upper(), str(event.get("rawPath") or http.get("path") or "/")


#: Serializes the resolver (per-request state on a module-level object, as in a Lambda container) while
#: letting waits happen outside it: a long poll or an idempotent replay waiting for its original
#: request holds no lock while it sleeps. On Lambda each container serves one request, so it never blocks.
_RESOLVER_LOCK = threading.Lock()
POLL_INTERVAL_S = 0.2
#: How long a request waits for another in-flight request with the same Idempotency-Key.
IDEMPOTENCY_WAIT_S = 10.0
EVENTS_TEMPLATE = "/v1/runs/<run_id>/events"
_POLL = "_agentwire_poll"
_RETRY = "_agentwire_retry"
STREAM_NEXT_HEADER = "x-agentwire-stream-next"


def http_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway HTTP API (payload 2.0). Long polls and waits for an in-flight idempotent request happen
    here, between short invocations of the resolver."""
    try:
        return _http_handler_polling(event, context)
    finally:
        telemetry.flush()  # the sandbox may freeze once the invocation returns


def _http_handler_polling(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline: float | None = None
    attempt = dict(event)
    while True:
        with _RESOLVER_LOCK:
            response = _http_handler(attempt, context)
        poll_s = response.pop(_POLL, None)
        if poll_s is None:
            return response
        now = time.monotonic()
        if deadline is None:
            deadline = now + float(poll_s)
        if now + POLL_INTERVAL_S > deadline:
            response.pop("_final", None)
            return response
        time.sleep(POLL_INTERVAL_S)
        attempt = {**event, _RETRY: True}


#: The local HTTP server may call `http_handler` from several threads: it serializes what must be.
http_handler.concurrent_invocations = True  # type: ignore[attr-defined]


def _query(event: dict[str, Any], name: str) -> str | None:
    return (event.get("queryStringParameters") or {}).get(name)


def _body_bytes(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(body) * 3 // 4
    return len(body.encode())


@functools.cache
def _query_names(method: str, template: str) -> frozenset[str]:
    """The query parameters an operation declares (from its OpenAPI document): any other is a 422."""
    from agentwire_gateway.api import openapi_schema

    path = template.replace("<", "{").replace(">", "}")
    operation = openapi_schema().get("paths", {}).get(path, {}).get(method.lower(), {})
    return frozenset(p["name"] for p in operation.get("parameters", []) if p.get("in") == "query")


def _is_json_object(event: dict[str, Any]) -> bool:
    body = event.get("body") or ""
    try:
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        return isinstance(json.loads(body), dict)
    except ValueError:
        return True  # not JSON at all: the resolver's validation answers it (422), as before


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def _http_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Authenticates before routing, like an authorizer would, so an unauthenticated request is never
    parsed or validated; 404/405 need no credentials. Then the limits, then the Idempotency-Key."""
    method, path = _request_line(event)
    # The trace id of this request on every line: the current span's, else the invocation's X-Ray header.
    logger.append_keys(**telemetry.correlation_keys({"trace_header": lambda_trace_header()}))
    match = ROUTES.match(method, path)
    app.clear_context()
    if not (match.kind is MatchKind.FOUND and match.route is not None and match.route.scope is not None):
        return app.resolve(event, context)
    deps = get_dependencies()
    try:
        principal = deps.authenticator.authenticate(_header(event, "authorization"))
        if not principal.allows(match.route.scope):
            raise problems.forbidden(match.route.scope)
    except problems.ProblemError as error:
        metrics.add_metric(name="AuthRejected", unit=MetricUnit.Count, value=1)
        logger.info("request rejected", extra={"status": error.status.value, "path_template": match.route.template})
        return problems.response_v2(error.problem(instance=path), error.headers)
    except Exception:
        # E.g. the key table is unreachable: still a problem document, never a bare Lambda error.
        logger.exception("authentication failed unexpectedly")
        failure = problems.unavailable("authentication is temporarily unavailable; try again")
        return problems.response_v2(failure.problem(instance=path), failure.headers)
    logger.append_keys(tenant_id=principal.tenant_id, key_id=principal.key_id)
    app.append_context(**{PRINCIPAL_CONTEXT_KEY: principal})
    claim: IdempotencyClaim | None = None
    try:
        if _body_bytes(event) > deps.settings.max_body_bytes:
            raise problems.too_large(deps.settings.max_body_bytes)
        unknown = sorted(set(event.get("queryStringParameters") or {}) - _query_names(method, match.route.template))
        if unknown:
            raise problems.invalid_request(
                "unknown query parameter(s): " + ", ".join(repr(name[:64]) for name in unknown[:5]),
                errors=[
                    {"loc": ["query", name[:64]], "type": "extra_forbidden", "msg": "unknown"} for name in unknown[:5]
                ],
            )
        if method in ("POST", "PUT", "PATCH") and (event.get("body") or "").strip() and not _is_json_object(event):
            raise problems.invalid_request(
                "the body must be a JSON object",
                errors=[{"loc": ["body"], "type": "model_type", "msg": "a JSON object is required"}],
            )
        content_type = (_header(event, "content-type") or "").split(";")[0].strip().lower()
        if (
            event.get("body")
            and content_type
            and not (content_type == "application/json" or content_type.endswith("+json"))
        ):
            raise problems.unsupported_media_type()
        if deps.rate_limiter is not None and not event.get(_RETRY):
            deps.rate_limiter.check(principal.tenant_id)
        key = _header(event, "idempotency-key")
        if method == "POST" and key is not None and deps.idempotency is not None:
            body = event.get("body")
            if event.get("isBase64Encoded") and body:
                body = base64.b64decode(body).decode("utf-8", "replace")
            fingerprint = guards.fingerprint(method, path, event.get("rawQueryString") or "", body)
            owner = principal.key_id if principal.is_end_user else ""
            claim = deps.idempotency.begin(principal.tenant_id, key, fingerprint, owner=owner)
            if claim.kind is Claim.MISMATCH:
                raise problems.invalid_request("this Idempotency-Key was used with a different request")
            if claim.kind is Claim.REPLAY and claim.response is not None:
                metrics.add_metric(name="IdempotentReplays", unit=MetricUnit.Count, value=1)
                replay = dict(claim.response)
                replay["headers"] = {**(replay.get("headers") or {}), "Idempotent-Replayed": "true"}
                replay["isBase64Encoded"] = False
                return replay
            if claim.kind is Claim.IN_PROGRESS:
                busy = problems.conflict("a request with this Idempotency-Key is in progress; retry")
                response = problems.response_v2(busy.problem(instance=path), {"Retry-After": "1"})
                response[_POLL] = IDEMPOTENCY_WAIT_S
                return response
    except problems.ProblemError as error:
        return problems.response_v2(error.problem(instance=path), error.headers)
    if match.route.template == EVENTS_TEMPLATE and _header(event, "last-event-id") and _query(event, "after") is None:
        # An SSE client reconnecting says where it was with Last-Event-ID.
        query = {**(event.get("queryStringParameters") or {}), "after": _header(event, "last-event-id") or "0"}
        event = {**event, "queryStringParameters": query}
    response = app.resolve(event, context)
    if claim is not None and claim.kind is Claim.NEW and deps.idempotency is not None:
        deps.idempotency.finish(principal.tenant_id, claim, response)
    if match.route.template == EVENTS_TEMPLATE and int(response.get("statusCode", 500)) == 200:
        response = _events_response(event, path, response)
    return response


def _events_response(event: dict[str, Any], path: str, response: dict[str, Any]) -> dict[str, Any]:
    """A long poll asks to be called again while nothing is new; SSE clients get the page as SSE frames."""
    page = json.loads(response.get("body") or "{}")
    wait = _query(event, "wait") or "0"
    sse = "text/event-stream" in (_header(event, "accept") or "")
    if not page.get("events") and not page.get("done") and wait.isdigit() and int(wait) > 0:
        response[_POLL] = min(int(wait), get_dependencies().settings.max_wait_s)
    if not sse:
        return response
    frames = [
        f"id: {item['cursor']}\nevent: {item['type']}\ndata: {json.dumps(item, separators=(',', ':'))}\n\n"
        for item in page.get("events", [])
    ]
    if page.get("done"):
        frames.append(f"event: end\ndata: {json.dumps({'status': page.get('status')})}\n\n")
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    if not page.get("done"):
        # Behind API Gateway the client reconnects (EventSource does, with Last-Event-ID); the local server
        # follows this header and keeps the stream open.
        frames.insert(0, "retry: 1000\n\n")
        headers[STREAM_NEXT_HEADER] = f"{path}?after={page.get('next_cursor', '0')}&wait={max(int(wait), 10)}"
    return {**response, "headers": headers, "body": "".join(frames) or ": keep-alive\n\n"}


def project_record(record: SQSRecord) -> None:
    logger.remove_keys(["run_id", "tenant_id", "session_id", "trace_id", "span_id", "detail_type"])
    body = record.body
    event = parse_eventbridge(body)
    source = json.loads(body).get("source") if isinstance(body, str) else None
    with telemetry.record_span(event, service=SERVICE):
        logger.set_correlation_id(event.metadata.run_id)
        session_id = getattr(event.data, "session_id", None)
        logger.append_keys(**telemetry.correlation_keys(event.metadata, session_id=session_id))
        logger.append_keys(detail_type=event.detail_type)
        result = get_dependencies().projector.apply(event, source=source)
        if result.skipped:
            # Redelivery, duplicate publish or out-of-order arrival: the conditional write said no, by design.
            metrics.add_metric(name="ProjectionSkipped", unit=MetricUnit.Count, value=result.skipped)
        _measure_runs(event, result)
        logger.debug("projected", extra={"written": result.written, "skipped": result.skipped})


def _count(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """One EMF blob, so a dimension of this metric never lands on the batch's other metrics."""
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)


def _measure_runs(event: Event[Any], result: ProjectionResult) -> None:
    """Run outcomes, counted once per run (when its end is first recorded), approvals requested (by tool)
    and approvals waiting.

    RunsCompleted and RunsFailed are emitted twice: by service alone (the failure-ratio alarm's metric)
    and with their `agent` / `reason` dimension (the dashboards' breakdown) — two CloudWatch metrics, so
    neither counts anything twice."""
    read_model = get_dependencies().projector.read_model
    finished = result.finished
    if finished is not None:
        if finished.status is RunStatus.COMPLETED:
            session = read_model.get_session(finished.tenant_id, finished.session_id)
            _count("RunsCompleted")
            _count("RunsCompleted", agent=(session.agent if session else "") or "unknown")
        elif finished.status is RunStatus.FAILED:
            reason = finished.error.code if finished.error else "unknown"
            _count("RunsFailed")
            _count("RunsFailed", reason=reason or "unknown")
        elif finished.status is RunStatus.CANCELLED:
            _count("RunsCancelled")
        run = read_model.get_run(finished.tenant_id, finished.run_id)
        if run is not None:
            duration_ms = max(0.0, (finished.occurred_at - run.created_at).total_seconds() * 1000)
            metrics.add_metric(name="RunDuration", unit=MetricUnit.Milliseconds, value=duration_ms)
    if result.approval is not None:
        # Counted here, where each request is first recorded: the state machine publishes it itself.
        _count("ApprovalsRequested", tool=result.approval.tool_name)
        approvals = read_model.list_approvals(result.approval.tenant_id, result.approval.run_id)
        waiting = sum(1 for approval in approvals if approval.status is ApprovalStatus.PENDING)
        metrics.add_metric(name="ApprovalsWaiting", unit=MetricUnit.Count, value=waiting)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def projector_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """SQS batch of bus events → the read model. A record that cannot be parsed or projected is reported
    in batchItemFailures, retried by SQS, and lands in the DLQ with its reason."""
    try:
        response = process_partial_response(
            event=event, record_handler=project_record, processor=processor, context=context
        )
    except Exception:
        # Every record failed (Powertools raises): all of them go back to the queue.
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(event.get("Records", [])))
        raise
    finally:
        telemetry.flush()  # the sandbox may freeze once the invocation returns
    failed = len(response.get("batchItemFailures", []))
    if failed:
        metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=failed)
    return dict(response)
