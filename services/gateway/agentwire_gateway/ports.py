"""The ports the gateway's logic depends on; adapters implement them, tests substitute fakes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from agentwire_contracts.envelope import Event

from agentwire_gateway.model import (
    ApiKeyRecord,
    ApprovalRecord,
    MessageRecord,
    Principal,
    RunRecord,
    RunTransition,
    SessionRecord,
    SessionState,
    StepRecord,
    TimelineEntry,
    TimelineEvent,
)


class ApiKeyStore(Protocol):
    def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...

    def touch(self, record: ApiKeyRecord, *, at: datetime) -> None: ...


class TokenVerifier(Protocol):
    """Verifies a bearer JWT (signature against the issuer's JWKS, issuer, audience, expiry)."""

    def verify(self, token: str) -> Principal: ...


class ReadModel(Protocol):
    """Sessions, runs, steps, timelines, approvals and the transcript view, every one scoped by tenant."""

    def put_session(self, session: SessionRecord) -> None: ...

    def get_session(self, tenant_id: str, session_id: str) -> SessionRecord | None: ...

    def list_sessions(
        self, tenant_id: str, *, limit: int, after: str | None, user_id: str | None = None
    ) -> tuple[list[SessionRecord], str | None]:
        """Newest first: the sessions of `user_id` if given, else every session of the tenant."""
        ...

    def delete_session(self, session: SessionRecord) -> None: ...

    def session_deleted(self, tenant_id: str, session_id: str) -> bool: ...

    def get_session_state(self, tenant_id: str, session_id: str) -> SessionState: ...

    def save_session_state(self, tenant_id: str, session_id: str, state: SessionState, *, expected: int) -> bool: ...

    def put_queued_run(self, tenant_id: str, session_id: str, run_id: str, event_json: str) -> None: ...

    def get_queued_run(self, tenant_id: str, session_id: str, run_id: str) -> str | None: ...

    def delete_queued_run(self, tenant_id: str, session_id: str, run_id: str) -> None: ...

    def put_run(self, run: RunRecord, *, expires_at: datetime) -> bool:
        """Record a new run; False (and no change) if the tenant already has a run with this id."""
        ...

    def get_run(self, tenant_id: str, run_id: str) -> RunRecord | None: ...

    def list_steps(self, tenant_id: str, run_id: str) -> list[StepRecord]: ...

    def list_messages(
        self, tenant_id: str, session_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[MessageRecord]: ...

    def apply_transition(self, transition: RunTransition, *, expires_at: datetime) -> bool:
        """Apply a status change if it moves the run forward; False if it was stale or a duplicate."""
        ...

    def put_step(self, step: StepRecord, *, expires_at: datetime) -> bool:
        """False if this event's step was already recorded."""
        ...

    def put_message(self, message: MessageRecord) -> bool:
        """False if the message with this seq was already recorded."""
        ...

    def append_timeline(self, entry: TimelineEntry, *, expires_at: datetime) -> TimelineEvent | None: ...

    def list_timeline(self, tenant_id: str, run_id: str, *, after: int, limit: int) -> list[TimelineEvent]: ...

    def put_approval(self, approval: ApprovalRecord, *, expires_at: datetime) -> bool: ...

    def get_approval(self, tenant_id: str, run_id: str, approval_id: str) -> ApprovalRecord | None: ...

    def list_approvals(self, tenant_id: str, run_id: str) -> list[ApprovalRecord]: ...

    def decide_approval(self, approval: ApprovalRecord) -> bool: ...

    def reopen_approval(self, approval: ApprovalRecord) -> None: ...


class IdempotencyStore(Protocol):
    def claim(
        self,
        tenant_id: str,
        key_hash: str,
        *,
        fingerprint: str,
        now: datetime,
        expires_at: datetime,
        locked_until: datetime,
    ) -> bool: ...

    def get(self, tenant_id: str, key_hash: str) -> dict[str, Any] | None: ...

    def complete(self, tenant_id: str, key_hash: str, *, response: dict[str, Any]) -> None: ...

    def release(self, tenant_id: str, key_hash: str) -> None: ...


class RateCounter(Protocol):
    def increment(self, tenant_id: str, window: int, *, expires_at: datetime) -> int: ...

    def tenant_limit(self, tenant_id: str) -> int | None: ...


class Publisher(Protocol):
    def publish(self, events: Sequence[Event[Any]]) -> None: ...

    def publish_one(self, event: Event[Any]) -> None: ...
