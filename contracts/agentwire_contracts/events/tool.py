"""Tool events: the catalog a run offers the model, and one tool invocation."""

from __future__ import annotations

from pydantic import Field

from agentwire_contracts.content import ContractModel, PayloadRef, ToolCall, ToolResultBlock, ToolSpec
from agentwire_contracts.envelope import EventData
from agentwire_contracts.events.run import SESSION_ID
from agentwire_contracts.failure import FailureData
from agentwire_contracts.names import DetailType, Source


class ToolCatalogRequested(EventData):
    detail_type = DetailType.TOOL_CATALOG_REQUESTED
    source = Source.ORCHESTRATOR
    description = "Describe these tools (name, description, input schema) for the model."

    session_id: str = SESSION_ID
    tool_names: list[str] = Field(default_factory=list, max_length=128)


class ToolCatalogReady(EventData):
    detail_type = DetailType.TOOL_CATALOG_READY
    source = Source.TOOLS
    description = "The specs of the requested tools, in a deterministic order."
    schema_version = "1.1"

    session_id: str = SESSION_ID
    tools: list[ToolSpec] = Field(default_factory=list)
    #: What offering these tools costs on every model call, by the shared estimate
    #: (`agentwire_contracts.tokens`): memory leaves this room in the model's window (since 1.1).
    tools_tokens: int = Field(default=0, ge=0)
    #: Names of the offered tools whose calls need a human approval first (by the tool's declaration).
    approval_required: list[str] = Field(default_factory=list)


class ToolCatalogFailed(FailureData):
    detail_type = DetailType.TOOL_CATALOG_FAILED
    source = Source.TOOLS
    description = "The catalog could not be built (e.g. Tools.UnknownTool)."


class ApprovalProof(ContractModel):
    """The human decision that allowed this call (required for tools that need approval)."""

    approval_id: str = Field(min_length=1, max_length=128)
    args_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    decided_by: str = Field(default="", max_length=128)


class ToolInvocationRequested(EventData):
    detail_type = DetailType.TOOL_INVOCATION_REQUESTED
    source = Source.ORCHESTRATOR
    description = "Run one tool call; idempotent per run_id and tool_call.id."

    session_id: str = SESSION_ID
    step: int = Field(ge=0, le=100_000)
    tool_call: ToolCall
    #: Who is calling, for the authorization policy (default deny).
    agent: str = Field(default="", max_length=64)
    user_id: str | None = Field(default=None, max_length=128)
    approval: ApprovalProof | None = None


class ToolInvocationCompleted(EventData):
    detail_type = DetailType.TOOL_INVOCATION_COMPLETED
    source = Source.TOOLS
    description = "The tool's result (a tool error is a result with is_error, not a failure)."

    session_id: str = SESSION_ID
    step: int = Field(ge=0)
    tool_name: str
    result: ToolResultBlock
    #: The full output when it exceeded the tool's inline cap (`result` then holds a truncated copy).
    result_ref: PayloadRef | None = None
    duration_ms: float = Field(default=0, ge=0)


class ToolInvocationHeartbeat(EventData):
    detail_type = DetailType.TOOL_INVOCATION_HEARTBEAT
    source = Source.TOOLS
    description = (
        "The tool call is still running (sent every few seconds while it runs, with the request's task token): "
        "the run's HeartbeatSeconds notices a worker that stopped well before the step's timeout."
    )

    session_id: str = SESSION_ID
    step: int = Field(ge=0, le=100_000)
    tool_name: str
    tool_call_id: str = Field(min_length=1, max_length=128)
    elapsed_ms: float = Field(ge=0)


class ToolInvocationFailed(FailureData):
    detail_type = DetailType.TOOL_INVOCATION_FAILED
    source = Source.TOOLS
    description = "The tools service could not run the call at all (infrastructure failure)."
