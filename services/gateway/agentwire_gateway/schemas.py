"""The HTTP API's request and response bodies (also the source of its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from agentwire_contracts.content import Usage
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentwire_gateway.model import (
    ApprovalRecord,
    RunRecord,
    RunStatus,
    SessionRecord,
    SessionState,
    StepRecord,
    TimelineEvent,
    rfc3339,
)

MAX_MESSAGE_CHARS = 32_000


class RequestBody(BaseModel):
    # Unknown fields are ignored (a tolerant reader, like the event contracts). Identity fields a client
    # might send, such as `tenant_id`, are never read: the tenant comes from the API key only.
    model_config = ConfigDict(extra="ignore")


class CreateSessionRequest(RequestBody):
    agent: str = Field(default="assistant", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    #: The tenant's own identifier of the end user (memory keeps long-term facts per user).
    user_id: str | None = Field(default=None, min_length=1, max_length=128)


class PostMessageRequest(RequestBody):
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content must not be blank")
        return value


class CancelRunRequest(RequestBody):
    reason: str = Field(default="", max_length=1024)


class SessionCreated(BaseModel):
    session_id: str
    agent: str
    created_at: str


class SessionView(BaseModel):
    session_id: str
    agent: str
    agent_version: str | None = None
    user_id: str | None
    created_at: str
    #: The run that is running (or about to) on the session, and those waiting behind it, in order.
    active_run_id: str | None = None
    queued_run_ids: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, session: SessionRecord, state: SessionState | None = None) -> SessionView:
        return cls(
            session_id=session.session_id,
            agent=session.agent,
            agent_version=session.agent_version,
            user_id=session.user_id,
            created_at=rfc3339(session.created_at),
            active_run_id=state.active_run_id if state else None,
            queued_run_ids=list(state.queue) if state else [],
        )


class SessionList(BaseModel):
    sessions: list[SessionView]
    #: Pass as `page_token` for the next page; null on the last one.
    next_page_token: str | None = None


class RunAccepted(BaseModel):
    run_id: str
    session_id: str
    status: RunStatus
    #: 0: the run starts now; n: n runs of the session go first (`?on_busy=enqueue`).
    position: int = 0


class UsageView(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0


def usage_view(usage: Usage, cost_microusd: int) -> UsageView:
    return UsageView(**usage.model_dump(), cost_usd=cost_microusd / 1_000_000)


class RunError(BaseModel):
    code: str
    message: str


class StepView(BaseModel):
    service: str
    kind: str
    detail: str | None
    step: int | None
    duration_ms: float | None
    occurred_at: str
    usage: Usage | None
    error_code: str | None

    @classmethod
    def of(cls, step: StepRecord) -> StepView:
        return cls(
            service=step.service,
            kind=step.kind,
            detail=step.detail,
            step=step.step,
            duration_ms=step.duration_ms,
            occurred_at=rfc3339(step.occurred_at),
            usage=step.usage,
            error_code=step.error_code,
        )


class RunView(BaseModel):
    run_id: str
    session_id: str
    status: RunStatus
    output: str | None
    error: RunError | None
    usage: UsageView
    model_turns: int = 0
    tool_calls: int = 0
    steps: list[StepView]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, run: RunRecord, steps: list[StepRecord]) -> RunView:
        ordered = sorted(steps, key=lambda s: (s.occurred_at, s.event_id))
        return cls(
            run_id=run.run_id,
            session_id=run.session_id,
            status=run.status,
            output=run.output,
            error=RunError(code=run.error.code, message=run.error.message) if run.error else None,
            usage=usage_view(run.usage, run.cost_microusd),
            model_turns=run.model_turns,
            tool_calls=run.tool_calls,
            steps=[StepView.of(step) for step in ordered],
            created_at=rfc3339(run.created_at),
            updated_at=rfc3339(run.updated_at),
        )


class MessageView(BaseModel):
    role: str
    content: list[dict[str, Any]]
    seq: int


class MessagesView(BaseModel):
    messages: list[MessageView]
    #: Pass as `after` for the next page; null on the last one.
    next_after: int | None = None


class RunEventView(BaseModel):
    #: Pass as `after` (or SSE `Last-Event-ID`) to get what came after this event.
    cursor: str
    type: str
    occurred_at: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: TimelineEvent) -> RunEventView:
        return cls(cursor=str(event.seq), type=event.type, occurred_at=rfc3339(event.occurred_at), data=event.data)


class RunEventsPage(BaseModel):
    run_id: str
    status: RunStatus
    events: list[RunEventView]
    next_cursor: str
    #: True once the run has ended and its final event was delivered: stop polling.
    done: bool


class ApprovalView(BaseModel):
    approval_id: str
    status: Literal["pending", "approved", "rejected"]
    tool_call_id: str
    tool_name: str
    tool_input: dict[str, Any]
    args_hash: str
    reason: str
    requested_at: str
    expires_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    decision_reason: str | None = None

    @classmethod
    def of(cls, approval: ApprovalRecord) -> ApprovalView:
        from datetime import timedelta

        return cls(
            approval_id=approval.approval_id,
            status=approval.status.value,
            tool_call_id=approval.tool_call_id,
            tool_name=approval.tool_name,
            tool_input=approval.tool_input,
            args_hash=approval.args_hash,
            reason=approval.reason,
            requested_at=rfc3339(approval.requested_at),
            expires_at=rfc3339(approval.requested_at + timedelta(seconds=approval.timeout_s)),
            decided_by=approval.decided_by,
            decided_at=rfc3339(approval.decided_at) if approval.decided_at else None,
            decision_reason=approval.decision_reason,
        )


class ApprovalList(BaseModel):
    approvals: list[ApprovalView]


class DecisionRequest(RequestBody):
    decision: Literal["approve", "reject"]
    reason: str = Field(default="", max_length=1024)


class AgentView(BaseModel):
    name: str
    version: str
    versions: list[str]
    description: str


class AgentList(BaseModel):
    agents: list[AgentView]


# --- administration ---------------------------------------------------------------------------------

TENANT_ID_FIELD = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CreateTenantRequest(RequestBody):
    tenant_id: str = TENANT_ID_FIELD
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)


class TenantView(BaseModel):
    tenant_id: str
    created_at: str
    rate_limit_per_minute: int | None = None


class TenantList(BaseModel):
    tenants: list[TenantView]
    next_page_token: str | None = None


ScopeName = Literal["runs:write", "runs:read", "admin"]


def _default_scopes() -> list[ScopeName]:
    return ["runs:write", "runs:read"]


class CreateKeyRequest(RequestBody):
    scopes: list[ScopeName] = Field(default_factory=_default_scopes, min_length=1, max_length=3)
    name: str = Field(default="", max_length=128)


class KeyView(BaseModel):
    key_id: str
    tenant_id: str
    display_prefix: str
    scopes: list[str]
    name: str
    created_at: str
    revoked_at: str | None
    last_used_at: str | None


class KeyCreated(BaseModel):
    #: The key itself: shown in this answer only (a replay of the request shows null).
    api_key: str | None
    key: KeyView


class KeyList(BaseModel):
    keys: list[KeyView]
    next_page_token: str | None = None


class Health(BaseModel):
    status: str
    time: datetime
