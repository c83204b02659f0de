"""The HTTP API: Powertools' resolver with pydantic validation and OpenAPI, every error a problem.

Routes stay thin: validate (the resolver does), call `Gateway`, shape the response. Authentication runs
before the resolver (see `handler.http_handler`), so a route reads the verified principal from context.
"""

from __future__ import annotations

import base64
import json
import os
import re
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

from agentwire_contracts.agents import load_catalog
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.metrics import MetricUnit

from agentwire_gateway import admin, problems
from agentwire_gateway.auth import SCOPE_ADMIN, SCOPE_RUNS_READ, SCOPE_RUNS_WRITE
from agentwire_gateway.dependencies import get_dependencies
from agentwire_gateway.model import Principal, RunStatus, rfc3339
from agentwire_gateway.routing import MatchKind, RouteTable
from agentwire_gateway.schemas import (
    AgentList,
    AgentView,
    ApprovalList,
    ApprovalView,
    CancelRunRequest,
    CreateKeyRequest,
    CreateSessionRequest,
    CreateTenantRequest,
    DecisionRequest,
    KeyCreated,
    KeyList,
    KeyView,
    MessagesView,
    MessageView,
    PostMessageRequest,
    RunAccepted,
    RunEventsPage,
    RunEventView,
    RunView,
    SessionCreated,
    SessionList,
    SessionView,
    TenantList,
    TenantView,
)
from agentwire_gateway.service import OnBusy

logger = Logger(service="gateway", child=True)
metrics = Metrics(namespace="agentwire", service="gateway")

PRINCIPAL_CONTEXT_KEY = "principal"
MAX_TRACE_HEADER_CHARS = 1024
ID_PATH = Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
TENANT_PATH = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

app = APIGatewayHttpResolver(enable_validation=True)
app.configure_openapi(
    title="agentwire",
    version="1.0.0",
    description="Stateful multi-turn AI agents: sessions, messages, runs. Errors are RFC 9457 problems.",
    security_schemes={
        "bearer": HTTPBearer(description="An agentwire API key (awk_...) or a JWT from the configured OIDC issuer")
    },
    security=[{"bearer": []}],
)
app.enable_swagger(path="/docs")
ROUTES = RouteTable()
ROUTES.add("GET", "/docs", scope=None)


def endpoint(method: str, path: str, *, scope: str | None, **options: Any) -> Any:
    """Register a route with the resolver and in the route table the pre-routing auth step reads."""
    ROUTES.add(method, path, scope=scope)
    if scope is None:
        options.setdefault("security", [])
    return app.route(path, method, **options)


def lambda_trace_header() -> str | None:
    """The X-Ray header of this invocation, so the run continues the request's trace. Read from the Lambda
    runtime, never from a client header: a client must not be able to put arbitrary text on the bus."""
    value = os.environ.get("_X_AMZN_TRACE_ID")
    return value if value and len(value) <= MAX_TRACE_HEADER_CHARS else None


def current_principal() -> Principal:
    principal = app.context.get(PRINCIPAL_CONTEXT_KEY)
    if not isinstance(principal, Principal):
        # Only reachable if a protected route were registered without a scope: fail closed.
        raise problems.unauthorized()
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def _json(status: HTTPStatus, body: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(status_code=status.value, content_type="application/json", body=body, headers=headers)


def problem_response(error: problems.ProblemError) -> Response[Any]:
    problem = error.problem(instance=app.current_event.path)
    return Response(
        status_code=problem.status,
        content_type=problems.PROBLEM_CONTENT_TYPE,
        body=json.dumps(problem.body(), separators=(",", ":")),
        headers=error.headers,
    )


# --- routes -------------------------------------------------------------------------------------


@endpoint("GET", "/healthz", scope=None, summary="Liveness", tags=["meta"])
def healthz() -> dict[str, str]:
    return {"status": "ok", "time": rfc3339(datetime.now(UTC))}


#: The error answers every authenticated operation may give, each an RFC 9457 problem.
ERROR_STATUSES = {
    401: "Missing or invalid credentials",
    403: "The credential lacks the scope this route needs",
    404: "No such resource for this caller (another tenant's ids, and another user's for a JWT, answer this too)",
    409: "Conflict: the session is busy, the approval was decided, the run has ended",
    413: "The request body is too large",
    415: "The body is not JSON",
    422: "The request is not valid (or reuses an Idempotency-Key with another request)",
    429: "The tenant's request rate limit; see Retry-After",
    500: "An unexpected error",
    503: "A dependency is unavailable; retry",
}


#: How every POST's Idempotency-Key is documented (the one route that reads it declares it itself).
IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "idempotency-key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
    "description": "The same key with the same request answers the original response "
    "(Idempotent-Replayed: true) and does nothing new; with another request, 422. Kept 24 h.",
}


def openapi_schema() -> dict[str, Any]:
    """The generated document, with every error answer documented as the problem document it is."""
    document: dict[str, Any] = json.loads(app.get_openapi_json_schema())
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Problem"] = problems.Problem.model_json_schema()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    public = {
        (route.method.lower(), re.sub(r"<(\w+)>", r"{\1}", route.template))
        for route in ROUTES.routes
        if route.scope is None
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if (method, path) in public:
                operation["security"] = []
                continue
            for status, description in ERROR_STATUSES.items():
                responses[str(status)] = {"description": description, "content": problem}
            if method == "post":
                # The handler honours the header on every POST (not only where a route reads it).
                parameters = operation.setdefault("parameters", [])
                if not any(
                    p.get("in") == "header" and p.get("name", "").lower() == "idempotency-key" for p in parameters
                ):
                    parameters.append(IDEMPOTENCY_KEY_PARAMETER)
            if path.endswith("/events"):
                ok = responses.get("200", {}).setdefault("content", {})
                ok["text/event-stream"] = {"schema": {"type": "string"}}
    return document


@endpoint("GET", "/openapi.json", scope=None, summary="This API's OpenAPI document", tags=["meta"])
def openapi_document() -> Response[Any]:
    return _json(HTTPStatus.OK, openapi_schema())


# --- pagination ----------------------------------------------------------------------------------

PageSize = Annotated[int, Query(ge=1, le=100, description="Items per page")]
PageToken = Annotated[str | None, Query(max_length=512, description="`next_page_token` of the previous page")]


def encode_page_token(position: str | None) -> str | None:
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=") if position else None


def decode_page_token(token: str | None) -> str | None:
    if not token:
        return None
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise problems.invalid_request(
            "page_token is not valid", errors=[{"loc": ["query", "page_token"], "type": "value_error", "msg": "bad"}]
        ) from None


def _accepted(run_id: str, session_id: str, status: RunStatus, position: int = 0) -> Response[RunAccepted]:
    accepted = RunAccepted(run_id=run_id, session_id=session_id, status=status, position=position)
    return _json(HTTPStatus.ACCEPTED, accepted.model_dump(mode="json"), headers={"Location": f"/v1/runs/{run_id}"})


# --- sessions ------------------------------------------------------------------------------------


@endpoint("GET", "/v1/agents", scope=SCOPE_RUNS_READ, summary="The agents a session can choose", tags=["sessions"])
def list_agents(principal: CurrentPrincipal) -> AgentList:
    catalog = load_catalog()
    agents = []
    for name in catalog.names():
        latest = catalog.get(name)
        agents.append(
            AgentView(
                name=name, version=latest.version, versions=catalog.versions(name), description=latest.description
            )
        )
    return AgentList(agents=agents)


@endpoint(
    "POST",
    "/v1/sessions",
    scope=SCOPE_RUNS_WRITE,
    summary="Open a session with an agent (pinned to its latest version)",
    tags=["sessions"],
    status_code=201,
)
def create_session(
    principal: CurrentPrincipal,
    body: Annotated[CreateSessionRequest | None, Body()] = None,
) -> Response[SessionCreated]:
    request = body or CreateSessionRequest()
    session = get_dependencies().gateway.create_session(principal, agent=request.agent, user_id=request.user_id)
    logger.append_keys(session_id=session.session_id)
    metrics.add_metric(name="SessionsCreated", unit=MetricUnit.Count, value=1)
    created = SessionCreated(session_id=session.session_id, agent=session.agent, created_at=rfc3339(session.created_at))
    return _json(
        HTTPStatus.CREATED,
        created.model_dump(mode="json"),
        headers={"Location": f"/v1/sessions/{session.session_id}"},
    )


@endpoint(
    "GET",
    "/v1/sessions",
    scope=SCOPE_RUNS_READ,
    summary="The caller's sessions, newest first (an end user's own; an API key's: the whole tenant's)",
    tags=["sessions"],
)
def list_sessions(principal: CurrentPrincipal, limit: PageSize = 20, page_token: PageToken = None) -> SessionList:
    sessions, last = get_dependencies().gateway.list_sessions(
        principal, limit=limit, after=decode_page_token(page_token)
    )
    return SessionList(sessions=[SessionView.of(s) for s in sessions], next_page_token=encode_page_token(last))


@endpoint("GET", "/v1/sessions/<session_id>", scope=SCOPE_RUNS_READ, summary="A session", tags=["sessions"])
def get_session(principal: CurrentPrincipal, session_id: Annotated[str, ID_PATH]) -> SessionView:
    logger.append_keys(session_id=session_id)
    gateway = get_dependencies().gateway
    session = gateway.session_of(principal, session_id)
    return SessionView.of(session, gateway.session_state(session))


@endpoint(
    "DELETE",
    "/v1/sessions/<session_id>",
    scope=SCOPE_RUNS_WRITE,
    summary="Delete a session everywhere (its active run is cancelled)",
    tags=["sessions"],
    status_code=204,
)
def delete_session(principal: CurrentPrincipal, session_id: Annotated[str, ID_PATH]) -> Response[None]:
    logger.append_keys(session_id=session_id)
    get_dependencies().gateway.delete_session(principal, session_id, trace_header=lambda_trace_header())
    logger.info("session deleted")
    return Response(status_code=HTTPStatus.NO_CONTENT.value, body=None)


@endpoint(
    "POST",
    "/v1/sessions/<session_id>/messages",
    scope=SCOPE_RUNS_WRITE,
    summary="Send a user message; starts a run (409 if one is active, unless on_busy=enqueue)",
    tags=["sessions"],
    status_code=202,
)
def post_message(
    principal: CurrentPrincipal,
    session_id: Annotated[str, ID_PATH],
    body: Annotated[PostMessageRequest, Body()],
    on_busy: Annotated[OnBusy, Query(description="reject (409) or enqueue behind the active run")] = OnBusy.REJECT,
    idempotency_key: Annotated[str | None, Header(alias="idempotency-key", min_length=1, max_length=256)] = None,
) -> Response[RunAccepted]:
    logger.append_keys(session_id=session_id)
    submitted = get_dependencies().gateway.submit_message(
        principal,
        session_id,
        content=body.content,
        idempotency_key=idempotency_key,
        trace_header=lambda_trace_header(),
        on_busy=on_busy,
    )
    run = submitted.run
    if submitted.created:
        metrics.add_metric(name="RunsRequested", unit=MetricUnit.Count, value=1)
    logger.set_correlation_id(run.run_id)
    logger.info(
        "run accepted", extra={"run_id": run.run_id, "replayed": not submitted.created, "position": submitted.position}
    )
    return _accepted(run.run_id, run.session_id, run.status, submitted.position)


@endpoint(
    "GET", "/v1/sessions/<session_id>/messages", scope=SCOPE_RUNS_READ, summary="The transcript", tags=["sessions"]
)
def list_messages(
    principal: CurrentPrincipal,
    session_id: Annotated[str, ID_PATH],
    after: Annotated[int, Query(ge=0, le=10**9, description="`seq` of the last message already read")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> MessagesView:
    logger.append_keys(session_id=session_id)
    records = get_dependencies().gateway.messages(principal, session_id, after_seq=after, limit=limit)
    return MessagesView(
        messages=[MessageView(role=r.message.role, content=r.content_json(), seq=r.seq) for r in records],
        next_after=records[-1].seq if len(records) == limit else None,
    )


# --- runs ----------------------------------------------------------------------------------------


@endpoint(
    "GET", "/v1/runs/<run_id>", scope=SCOPE_RUNS_READ, summary="A run's status, answer, cost and steps", tags=["runs"]
)
def get_run(principal: CurrentPrincipal, run_id: Annotated[str, ID_PATH]) -> RunView:
    logger.set_correlation_id(run_id)
    return get_dependencies().gateway.run_view(principal, run_id)


@endpoint(
    "GET",
    "/v1/runs/<run_id>/events",
    scope=SCOPE_RUNS_READ,
    summary="A run's live events after a cursor; long-polls up to `wait` s (SSE with Accept: text/event-stream)",
    tags=["runs"],
)
def run_events(
    principal: CurrentPrincipal,
    run_id: Annotated[str, ID_PATH],
    after: Annotated[str, Query(pattern=r"^[0-9]{1,10}$", description="`next_cursor` of the last answer")] = "0",
    wait: Annotated[int, Query(ge=0, le=20, description="seconds to wait for a new event")] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> RunEventsPage:
    logger.set_correlation_id(run_id)
    page = get_dependencies().gateway.timeline(principal, run_id, after=int(after), limit=limit)
    return RunEventsPage(
        run_id=run_id,
        status=page.status,
        events=[RunEventView.of(event) for event in page.events],
        next_cursor=str(page.next_cursor),
        done=page.done,
    )


@endpoint(
    "POST",
    "/v1/runs/<run_id>/cancel",
    scope=SCOPE_RUNS_WRITE,
    summary="Ask a queued or running run to stop",
    tags=["runs"],
    status_code=202,
)
def cancel_run(
    principal: CurrentPrincipal,
    run_id: Annotated[str, ID_PATH],
    body: Annotated[CancelRunRequest | None, Body()] = None,
) -> Response[RunAccepted]:
    logger.set_correlation_id(run_id)
    request = body or CancelRunRequest()
    run = get_dependencies().gateway.request_cancel(
        principal, run_id, reason=request.reason, trace_header=lambda_trace_header()
    )
    logger.info("run cancellation requested", extra={"run_id": run_id})
    return _accepted(run.run_id, run.session_id, run.status)


@endpoint("GET", "/v1/runs/<run_id>/approvals", scope=SCOPE_RUNS_READ, summary="A run's approvals", tags=["runs"])
def list_approvals(principal: CurrentPrincipal, run_id: Annotated[str, ID_PATH]) -> ApprovalList:
    logger.set_correlation_id(run_id)
    approvals = get_dependencies().gateway.approvals(principal, run_id)
    return ApprovalList(approvals=[ApprovalView.of(a) for a in approvals])


@endpoint(
    "POST",
    "/v1/runs/<run_id>/approvals/<approval_id>",
    scope=SCOPE_RUNS_WRITE,
    summary="Approve or reject a pending tool call (409 once decided)",
    tags=["runs"],
)
def decide_approval(
    principal: CurrentPrincipal,
    run_id: Annotated[str, ID_PATH],
    approval_id: Annotated[str, ID_PATH],
    body: Annotated[DecisionRequest, Body()],
) -> ApprovalView:
    logger.set_correlation_id(run_id)
    decided = get_dependencies().gateway.decide(
        principal,
        run_id,
        approval_id,
        approve=body.decision == "approve",
        reason=body.reason,
        trace_header=lambda_trace_header(),
    )
    logger.info("approval decided", extra={"approval_id": approval_id, "decision": body.decision})
    return ApprovalView.of(decided)


# --- administration (scope admin) ----------------------------------------------------------------


def _administered_tenant(principal: Principal, tenant_id: str) -> str:
    """An admin key administers its own tenant; the operator tenant's administers every tenant."""
    if principal.tenant_id not in (tenant_id, get_dependencies().settings.operator_tenant):
        raise problems.not_found("tenant")
    return tenant_id


def _require_operator(principal: Principal) -> None:
    if principal.tenant_id != get_dependencies().settings.operator_tenant:
        raise problems.forbidden("admin (of the operator tenant)")


def _keys_store() -> Any:
    store = get_dependencies().keys
    if store is None:
        raise problems.unavailable("administration is not configured")
    return store


def _key_view(record: Any) -> KeyView:
    return KeyView.model_validate(admin.ApiKeyInfo.of(record).model_dump())


@endpoint("POST", "/v1/admin/tenants", scope=SCOPE_ADMIN, summary="Create a tenant", tags=["admin"], status_code=201)
def admin_create_tenant(
    principal: CurrentPrincipal, body: Annotated[CreateTenantRequest, Body()]
) -> Response[TenantView]:
    _require_operator(principal)
    now = datetime.now(UTC)
    limit = body.rate_limit_per_minute
    if not _keys_store().create_tenant(body.tenant_id, created_at=now, rate_limit_per_minute=limit):
        raise problems.conflict("the tenant exists already")
    view = TenantView(tenant_id=body.tenant_id, created_at=rfc3339(now), rate_limit_per_minute=limit)
    return _json(HTTPStatus.CREATED, view.model_dump(mode="json"))


@endpoint("GET", "/v1/admin/tenants", scope=SCOPE_ADMIN, summary="The tenants", tags=["admin"])
def admin_list_tenants(principal: CurrentPrincipal, limit: PageSize = 20, page_token: PageToken = None) -> TenantList:
    _require_operator(principal)
    items, last = _keys_store().list_tenants(limit=limit, after=decode_page_token(page_token))
    return TenantList(tenants=[TenantView.model_validate(i) for i in items], next_page_token=encode_page_token(last))


@endpoint(
    "POST",
    "/v1/admin/tenants/<tenant_id>/keys",
    scope=SCOPE_ADMIN,
    summary="Create an API key (shown once)",
    tags=["admin"],
    status_code=201,
)
def admin_create_key(
    principal: CurrentPrincipal,
    tenant_id: Annotated[str, TENANT_PATH],
    body: Annotated[CreateKeyRequest | None, Body()] = None,
) -> Response[KeyCreated]:
    request = body or CreateKeyRequest()
    api_key, record = admin.issue_key(
        _keys_store(), _administered_tenant(principal, tenant_id), scopes=request.scopes, name=request.name
    )
    logger.info("api key created", extra={"created_key_id": record.key_id})
    return _json(HTTPStatus.CREATED, KeyCreated(api_key=api_key, key=_key_view(record)).model_dump(mode="json"))


@endpoint("GET", "/v1/admin/tenants/<tenant_id>/keys", scope=SCOPE_ADMIN, summary="A tenant's keys", tags=["admin"])
def admin_list_keys(
    principal: CurrentPrincipal,
    tenant_id: Annotated[str, TENANT_PATH],
    limit: PageSize = 20,
    page_token: PageToken = None,
) -> KeyList:
    records, last = _keys_store().list_page(
        _administered_tenant(principal, tenant_id), limit=limit, after=decode_page_token(page_token)
    )
    return KeyList(keys=[_key_view(r) for r in records], next_page_token=encode_page_token(last))


@endpoint(
    "POST",
    "/v1/admin/tenants/<tenant_id>/keys/<key_id>/revoke",
    scope=SCOPE_ADMIN,
    summary="Revoke a key (effective on its next use)",
    tags=["admin"],
)
def admin_revoke_key(
    principal: CurrentPrincipal, tenant_id: Annotated[str, TENANT_PATH], key_id: Annotated[str, ID_PATH]
) -> KeyView:
    store = _keys_store()
    tenant = _administered_tenant(principal, tenant_id)
    if not store.revoke(tenant, key_id, revoked_at=datetime.now(UTC)):
        raise problems.not_found("key")
    return _key_view(store.get_key(tenant, key_id))


@endpoint(
    "POST",
    "/v1/admin/tenants/<tenant_id>/keys/<key_id>/rotate",
    scope=SCOPE_ADMIN,
    summary="Replace a key by a new one with the same scopes (the old one is revoked)",
    tags=["admin"],
    status_code=201,
)
def admin_rotate_key(
    principal: CurrentPrincipal, tenant_id: Annotated[str, TENANT_PATH], key_id: Annotated[str, ID_PATH]
) -> Response[KeyCreated]:
    rotated = admin.rotate_key(_keys_store(), _administered_tenant(principal, tenant_id), key_id)
    if rotated is None:
        raise problems.not_found("key")
    api_key, record = rotated
    logger.info("api key rotated", extra={"created_key_id": record.key_id, "revoked_key_id": key_id})
    return _json(HTTPStatus.CREATED, KeyCreated(api_key=api_key, key=_key_view(record)).model_dump(mode="json"))


# --- errors: every one is application/problem+json ------------------------------------------------


@app.exception_handler(problems.ProblemError)
def _on_problem(error: problems.ProblemError) -> Response[Any]:
    return problem_response(error)


@app.exception_handler(RequestValidationError)
def _on_invalid_request(error: RequestValidationError) -> Response[Any]:
    # loc/type/msg only: pydantic's `input` would echo the request (possibly message content) back.
    reasons = [
        {"loc": [str(part) for part in e.get("loc", ())], "type": e.get("type", ""), "msg": e.get("msg", "")}
        for e in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(r['loc'])}: {r['msg']}" for r in reasons) or "the request is not valid"
    return problem_response(problems.invalid_request(summary, errors=reasons))


@app.exception_handler(RequestUnsupportedContentType)
def _on_unsupported_media(_: RequestUnsupportedContentType) -> Response[Any]:
    return problem_response(
        problems.ProblemError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "send application/json")
    )


@app.not_found
def _on_not_found(_: NotFoundError) -> Response[Any]:
    match = ROUTES.match(app.current_event.http_method, app.current_event.path)
    if match.kind is MatchKind.METHOD_NOT_ALLOWED:
        return problem_response(problems.method_not_allowed(app.current_event.http_method, list(match.allowed_methods)))
    return problem_response(problems.not_found("route"))


@app.exception_handler(Exception)
def _on_unexpected(error: Exception) -> Response[Any]:
    logger.exception("unhandled error", extra={"error_type": type(error).__name__})
    return problem_response(problems.internal_error())
