"""The gateway's domain records: what the read model keeps about sessions, runs, steps and messages.

Pure and typed; the DynamoDB adapter maps these to items, the API maps them to responses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from agentwire_contracts.content import ErrorInfo, Message, Usage
from pydantic import BaseModel, ConfigDict, Field


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def rank(self) -> int:
        """Transitions only ever go up: queued < running < any terminal status. Terminal statuses share a
        rank so the first terminal event wins and a late duplicate of another cannot overwrite it."""
        return _RANKS[self]

    @property
    def is_terminal(self) -> bool:
        return self.rank == _TERMINAL_RANK


_TERMINAL_RANK = 2
_RANKS = {
    RunStatus.QUEUED: 0,
    RunStatus.RUNNING: 1,
    RunStatus.COMPLETED: _TERMINAL_RANK,
    RunStatus.FAILED: _TERMINAL_RANK,
    RunStatus.CANCELLED: _TERMINAL_RANK,
}


def rfc3339(value: datetime) -> str:
    """Fixed-width UTC timestamps, so that lexicographic order (DynamoDB sort keys) is time order."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Principal(Record):
    """Who is calling: established from a verified credential only (an API key or an OIDC token)."""

    tenant_id: str
    #: The API key's id, or `jwt:<hash of issuer and subject>` for a bearer token.
    key_id: str
    scopes: frozenset[str]
    #: The end user: a token's user claim, or the key's id for an API key (a key acts as one user).
    user_id: str = ""
    kind: Literal["api_key", "jwt"] = "api_key"

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_end_user(self) -> bool:
        """A JWT speaks for the one user its token names; an API key is the tenant's service credential
        (a backend acting for many users), so it sees the whole tenant."""
        return self.kind == "jwt"

    def may_see(self, session: SessionRecord) -> bool:
        """Whether this caller may see the session and everything under it (runs, events, approvals,
        transcript). The one ownership rule: every read and write of a session or run goes through it."""
        if session.tenant_id != self.tenant_id:
            return False
        if not self.is_end_user:
            return True
        # Fail closed: an end user without a user id owns nothing (the verifier never makes one, but a
        # session without a user must not match a principal whose user is empty).
        return bool(self.user_id) and session.user_id == self.user_id


class ApiKeyRecord(Record):
    """What is stored about a key: never the key itself, only its hash."""

    key_id: str
    tenant_id: str
    key_hash: str
    #: The first characters of the key, so a person can tell their keys apart (not enough to guess it).
    display_prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None
    name: str = ""
    last_used_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class SessionRecord(Record):
    tenant_id: str
    session_id: str
    agent: str
    #: The agent version the session is pinned to (the latest one when it was created).
    agent_version: str | None = None
    user_id: str | None = None
    created_at: datetime


class SessionState(Record):
    """Who runs on a session now and who waits (double texting), changed under optimistic locking."""

    active_run_id: str | None = None
    queue: tuple[str, ...] = ()
    #: The run whose end promoted `active_run_id` (so a redelivered end event re-publishes, harmlessly).
    promoted_from: str | None = None
    version: int = 0


class RunRecord(Record):
    tenant_id: str
    run_id: str
    session_id: str
    status: RunStatus
    output: str | None = None
    error: ErrorInfo | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_microusd: int = 0
    model_turns: int = 0
    tool_calls: int = 0
    created_at: datetime
    updated_at: datetime


class RunTransition(Record):
    """A status change reported by the orchestrator; applied only if it moves the run forward."""

    tenant_id: str
    run_id: str
    session_id: str
    status: RunStatus
    occurred_at: datetime
    output: str | None = None
    error: ErrorInfo | None = None
    usage: Usage | None = None
    cost_microusd: int | None = None
    model_turns: int | None = None
    tool_calls: int | None = None


class TimelineEntry(Record):
    """One entry of a run's live events (`GET /v1/runs/{id}/events`), before it gets its cursor."""

    tenant_id: str
    run_id: str
    event_id: str
    type: str
    occurred_at: datetime
    data: dict[str, Any] = Field(default_factory=dict)


class TimelineEvent(TimelineEntry):
    """A timeline entry with its position: cursors are these sequence numbers, in projection order."""

    seq: int = Field(ge=1)


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class ApprovalRecord(Record):
    tenant_id: str
    run_id: str
    session_id: str
    approval_id: str
    tool_call_id: str
    tool_name: str
    tool_input: dict[str, Any] = Field(default_factory=dict)
    args_hash: str
    reason: str = ""
    timeout_s: int
    requested_at: datetime
    #: Opaque to the gateway: handed back on the decision so the waiting step resumes.
    task_token: str | None = None
    status: ApprovalStatus = ApprovalStatus.PENDING
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None


class StepRecord(Record):
    """One entry of a run's timeline, from one answer event (idempotent on its event_id)."""

    tenant_id: str
    run_id: str
    event_id: str
    service: str
    kind: str
    detail: str | None = None
    step: int | None = None
    duration_ms: float | None = None
    occurred_at: datetime
    usage: Usage | None = None
    error_code: str | None = None


class MessageRecord(Record):
    tenant_id: str
    session_id: str
    seq: int = Field(ge=1)
    message: Message
    run_id: str | None = None

    def content_json(self) -> list[dict[str, Any]]:
        return [block.model_dump(mode="json") for block in self.message.content]
