"""Run lifecycle events: requested by the gateway, driven and reported by the orchestrator."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agentwire_contracts.content import ErrorInfo, Message, ToolCall, Usage
from agentwire_contracts.envelope import EventData
from agentwire_contracts.names import DetailType, Source

SESSION_ID = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")


class RunRequested(EventData):
    detail_type = DetailType.RUN_REQUESTED
    source = Source.GATEWAY
    description = "A user message was accepted; the orchestrator starts a run for it (run_id in metadata)."

    session_id: str = SESSION_ID
    input: Message
    agent: str = Field(default="assistant", min_length=1, max_length=64)
    user_id: str | None = Field(default=None, max_length=128)
    #: The agent version the session is pinned to (None: the latest one).
    agent_version: str | None = Field(default=None, max_length=32)


class RunStarted(EventData):
    detail_type = DetailType.RUN_STARTED
    source = Source.ORCHESTRATOR
    description = "The run's state machine execution started."

    session_id: str = SESSION_ID
    agent: str = ""
    execution_id: str = ""


class RunCompleted(EventData):
    detail_type = DetailType.RUN_COMPLETED
    source = Source.ORCHESTRATOR
    description = "The run finished with the model's final answer."

    session_id: str = SESSION_ID
    output: Message
    output_text: str = ""
    stop_reason: str = ""
    usage: Usage = Field(default_factory=Usage)
    model_turns: int = Field(default=0, ge=0)
    tool_calls: int = Field(default=0, ge=0)
    #: Cost of the run's model calls in millionths of a US dollar (integers add exactly in ASL).
    cost_microusd: int = Field(default=0, ge=0)


class RunFailed(EventData):
    detail_type = DetailType.RUN_FAILED
    source = Source.ORCHESTRATOR
    description = "The run ended without an answer; `error.code` says why."

    session_id: str = SESSION_ID
    error: ErrorInfo
    usage: Usage = Field(default_factory=Usage)
    model_turns: int = Field(default=0, ge=0)
    tool_calls: int = Field(default=0, ge=0)
    cost_microusd: int = Field(default=0, ge=0)


class RunCancelRequested(EventData):
    detail_type = DetailType.RUN_CANCEL_REQUESTED
    source = Source.GATEWAY
    description = "A client asked to stop the run."

    session_id: str = SESSION_ID
    reason: str = Field(default="", max_length=1024)


class RunCancelled(EventData):
    detail_type = DetailType.RUN_CANCELLED
    source = Source.ORCHESTRATOR
    description = "The run was stopped on request."

    session_id: str = SESSION_ID
    reason: str = Field(default="", max_length=1024)
    stage: Literal["queued", "running"] = "running"


APPROVAL_ID = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
ARGS_HASH = Field(pattern=r"^[0-9a-f]{64}$")


class RunApprovalRequested(EventData):
    detail_type = DetailType.RUN_APPROVAL_REQUESTED
    source = Source.ORCHESTRATOR
    description = (
        "A tool call waits for a human decision. The decision must name the same approval_id, "
        "tool_call_id and args_hash, and carry this event's task token back."
    )

    session_id: str = SESSION_ID
    approval_id: str = APPROVAL_ID
    tool_call: ToolCall
    #: SHA-256 (hex) of the canonical JSON of tool_call.input (sorted keys, no spaces).
    args_hash: str = ARGS_HASH
    timeout_s: int = Field(ge=1)
    reason: str = Field(default="", max_length=1024)


class RunApprovalDecided(EventData):
    detail_type = DetailType.RUN_APPROVAL_DECIDED
    source = Source.GATEWAY
    description = "A human approved or rejected one pending tool call; answers run.approval.requested.v1."

    session_id: str = SESSION_ID
    approval_id: str = APPROVAL_ID
    tool_call_id: str = Field(min_length=1, max_length=128)
    args_hash: str = ARGS_HASH
    decision: Literal["approve", "reject"]
    reason: str = Field(default="", max_length=1024)
    decided_by: str = Field(default="", max_length=128)
