"""The gateway's HTTP API on a local port: each request becomes an API Gateway HTTP API payload v2 event.

The handler is the deployed Lambda entry point, unchanged. Requests are served on threads, but calls
into the handler are serialized: the Powertools resolver behind it keeps per-request state on a
module-level object (as a Lambda container does, which serves one request at a time).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from agentwire_contracts import telemetry

from agentwire_infra.local.lambda_runtime import Handler, LambdaContext

#: Bodies with these content types are passed as text; anything else is base64, as API Gateway does.
TEXT_CONTENT_TYPES = ("application/json", "application/problem+json", "text/", "application/x-www-form-urlencoded")
#: API Gateway's payload limit.
MAX_BODY_BYTES = 10 * 1024 * 1024
#: Lambda's per-invocation X-Ray header: the handler continues this trace (the gateway puts it on the bus).
XRAY_ENV = "_X_AMZN_TRACE_ID"
#: What API Gateway adds to the request context for a local caller.
LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_API_ID = "local"
#: A streaming (SSE) response names the target of its next page in this header (see `_stream`).
STREAM_NEXT_HEADER = "x-agentwire-stream-next"


def _request_time(now: datetime) -> str:
    # API Gateway's format: 12/Mar/2020:19:03:58 +0000
    return now.strftime("%d/%b/%Y:%H:%M:%S +0000")


def _is_text(content_type: str) -> bool:
    return not content_type or any(content_type.startswith(kind) for kind in TEXT_CONTENT_TYPES)


def api_gateway_v2_event(
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    host: str,
) -> dict[str, Any]:
    """An HTTP request → the API Gateway HTTP API (payload format 2.0) event for a `$default` route."""
    split = urlsplit(target)
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        # API Gateway joins repeated headers with commas.
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(split.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = datetime.now(UTC)
    content_type = merged.get("content-type", "")
    is_base64 = bool(body) and not _is_text(content_type)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": split.path or "/",
        "rawQueryString": split.query,
        "headers": merged,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT_ID,
            "apiId": LOCAL_API_ID,
            "domainName": host,
            "domainPrefix": host.split(".", maxsplit=1)[0],
            "http": {
                "method": method.upper(),
                "path": split.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": _request_time(now),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = base64.b64encode(body).decode() if is_base64 else body.decode("utf-8", "replace")
    return event


class GatewayHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    #: socketserver's default backlog of 5 resets connections under a burst of concurrent clients.
    request_queue_size = 128

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = handler
        # A handler that declares `concurrent_invocations` serializes what it must itself (and so can wait,
        # e.g. in a long poll, without blocking every other request); any other is called one at a time.
        concurrent = bool(getattr(handler, "concurrent_invocations", False))
        self.handler_lock: Any = contextlib.nullcontext() if concurrent else threading.Lock()
        super().__init__((host, port), _RequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        context = LambdaContext(
            function_name="agentwire-gateway-http", memory_limit_in_mb=1024, timeout_s=29, region="us-east-1"
        )
        method = event["requestContext"]["http"]["method"]
        attributes = {
            "http.request.method": method,
            "url.path": event["rawPath"],
            telemetry.ATTR_SERVICE: "gateway",
        }
        with (
            self.handler_lock,
            telemetry.span(f"HTTP {method}", kind=telemetry.SpanKind.SERVER, attributes=attributes) as span,
        ):
            # As Lambda does for each invocation: the X-Ray header of the invocation's segment (here, the
            # server span), which the gateway copies into the events it publishes.
            previous = os.environ.get(XRAY_ENV)
            os.environ[XRAY_ENV] = telemetry.current_trace_header() or ""
            try:
                response = self.handler(event, context)
            finally:
                if previous is None:
                    os.environ.pop(XRAY_ENV, None)
                else:
                    os.environ[XRAY_ENV] = previous
            if not isinstance(response, dict):
                raise TypeError(f"the HTTP handler returned {type(response).__name__}, not a dict")
            status = int(response.get("statusCode", 200))
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                telemetry.mark_failed(span, str(status))
            run_id = _accepted_run_id(response) if status == HTTPStatus.ACCEPTED else None
            if run_id:
                span.set_attribute(telemetry.ATTR_RUN_ID, run_id)
        return response


class _RequestHandler(BaseHTTPRequestHandler):
    server: GatewayHttpServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        started = time.perf_counter()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"content-type": "text/plain"}, b"payload too large")
            return
        body = self.rfile.read(length) if length else b""
        event = api_gateway_v2_event(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            host=self.headers.get("Host", "localhost"),
        )
        try:
            response = self.server.invoke(event)
        except Exception:
            # What API Gateway answers when the integration fails; the traceback is in the worker's log.
            self.log_error("the gateway handler raised:\n%s", _traceback())
            self._send(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"content-type": "application/json"},
                b'{"message":"Internal Server Error"}',
            )
            return
        status = int(response.get("statusCode", 200))
        headers = {str(key).lower(): str(value) for key, value in (response.get("headers") or {}).items()}
        raw = response.get("body") or ""
        payload = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
        if STREAM_NEXT_HEADER in headers and "text/event-stream" in (self.headers.get("Accept") or ""):
            self._stream(status, headers, payload, event)
            return
        headers.pop(STREAM_NEXT_HEADER, None)
        self._send(status, headers, payload, cookies=response.get("cookies") or [])
        self.log_message(
            '"%s %s" %d %.1fms', self.command, urlsplit(self.path).path, status, (time.perf_counter() - started) * 1000
        )

    def _stream(self, status: int, headers: dict[str, str], payload: bytes, event: dict[str, Any]) -> None:
        """Server-sent events: behind API Gateway a response is one page and the client reconnects; here
        the server follows the handler's `x-agentwire-stream-next` (the next page's target) on one open
        connection until the handler sends none (the stream ended) or the client goes away."""
        self.send_response(status)
        for name, value in headers.items():
            if name not in ("content-length", "connection", "transfer-encoding", STREAM_NEXT_HEADER):
                self.send_header(name, value)
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        next_target = headers.get(STREAM_NEXT_HEADER)
        try:
            while True:
                self.wfile.write(payload)
                self.wfile.flush()
                if not next_target:
                    return
                split = urlsplit(next_target)
                event = {
                    **event,
                    "rawPath": split.path,
                    "rawQueryString": split.query,
                    "queryStringParameters": dict(parse_qsl(split.query, keep_blank_values=True)),
                }
                response = self.server.invoke(event)
                if int(response.get("statusCode", 500)) != HTTPStatus.OK:
                    return
                next_headers = {str(k).lower(): str(v) for k, v in (response.get("headers") or {}).items()}
                next_target = next_headers.get(STREAM_NEXT_HEADER)
                payload = str(response.get("body") or "").encode()
        except (BrokenPipeError, ConnectionResetError):
            return

    def _send(self, status: int, headers: dict[str, str], payload: bytes, cookies: list[str] | None = None) -> None:
        self.send_response(status)
        headers.setdefault("content-type", "application/json")
        for name, value in headers.items():
            if name not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        for cookie in cookies or []:
            self.send_header("set-cookie", cookie)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_PATCH = _serve
    do_DELETE = _serve
    do_HEAD = _serve
    do_OPTIONS = _serve
    do_TRACE = _serve

    def __getattr__(self, name: str) -> Any:
        # Any other method (QUERY, PROPFIND, …) goes to the handler too, as API Gateway's $default route does.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """`_serve` logs each request once, with its duration."""

    def log_message(self, format: str, *args: Any) -> None:
        import logging

        logging.getLogger("agentwire.http").info("%s " + format, self.client_address[0], *args)


def _accepted_run_id(response: dict[str, Any]) -> str | None:
    """The run a 202 answer accepted (so the viewer can show where the run's trace began)."""
    try:
        body = json.loads(response.get("body") or "{}")
    except ValueError:
        return None
    run_id = body.get("run_id") if isinstance(body, dict) else None
    return str(run_id) if run_id else None


def _traceback() -> str:
    import traceback

    return traceback.format_exc()
