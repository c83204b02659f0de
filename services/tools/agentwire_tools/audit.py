"""The authorization audit log: one record per decision, with the policy that made it.

A record is written *before* the call runs (an allowed call whose tool then crashes is still on record).
A redelivered call replays its stored result without deciding again, so it adds no record; a call
retried after a crash mid-way is decided again and gets a second record, because it was decided twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import BaseModel, Field


class AuditRecord(BaseModel):
    tenant_id: str
    run_id: str
    tool_call_id: str
    session_id: str = ""
    step: int = 0
    agent: str
    agent_version: str = ""
    user_id: str | None = None
    tool_name: str
    side_effect: str = ""
    #: `canonical_args_hash(input)`: which arguments were decided on, without storing them.
    args_hash: str
    decision: Literal["allow", "deny"]
    #: Ids of the deciding policies (Cedar `@id`s, or `agentwire.*` for the service's own checks).
    policies: list[str] = Field(default_factory=list)
    reason: str = ""
    errors: list[str] = Field(default_factory=list)
    approval_id: str | None = None
    approved_by: str | None = None
    decided_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))


class AuditUnavailable(Exception):
    """The audit log could not be written: the call must not run unrecorded."""


class AuditLog(Protocol):
    def record(self, entry: AuditRecord) -> None: ...


class InMemoryAuditLog:
    """For tests and local experiments."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def record(self, entry: AuditRecord) -> None:
        self.records.append(entry)
