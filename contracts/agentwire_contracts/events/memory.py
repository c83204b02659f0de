"""Memory events: the orchestrator asks memory to append what a step produced and return the context."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from agentwire_contracts.content import ContractModel, Message, PayloadRef, Usage
from agentwire_contracts.envelope import EventData
from agentwire_contracts.events.run import SESSION_ID
from agentwire_contracts.failure import FailureData
from agentwire_contracts.names import DetailType, Source


class ContextSummary(ContractModel):
    """A model-written summary of the transcript up to and including `through_seq`."""

    text: str = Field(min_length=1, max_length=100_000)
    through_seq: int = Field(ge=1)
    usage: Usage = Field(default_factory=Usage)
    cost_microusd: int = Field(default=0, ge=0)


class CompactionRequest(ContractModel):
    """Memory asks the run to summarize these older turns (through the llm service) and hand the
    summary back in the next `memory.context.requested.v1` (phase `compaction`)."""

    system: str
    messages: list[Message] = Field(min_length=1)
    through_seq: int = Field(ge=1)
    max_tokens: int = Field(default=1024, ge=1)


STATE_KEY = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")


class AgentStateEntry(ContractModel):
    """One key of a session's agent state (a plan, a counter…): a small JSON value and its version."""

    key: str = STATE_KEY
    value: JsonValue = None
    #: 1 on the first write, +1 on every update: what a writer passes back as `expected_version`.
    version: int = Field(ge=1)


class AgentStateUpdate(ContractModel):
    """Set (or delete) one key of the session's agent state, optionally only if it is still at a version."""

    key: str = STATE_KEY
    value: JsonValue = None
    delete: bool = False
    #: The version the writer last read (0: the key must not exist yet); None: last writer wins.
    expected_version: int | None = Field(default=None, ge=0)


class MemoryContextRequested(EventData):
    detail_type = DetailType.MEMORY_CONTEXT_REQUESTED
    source = Source.ORCHESTRATOR
    description = (
        "Append `append` to the session's transcript (idempotent per run_id and step), then return the "
        "context window for the next model call unless include_context is false."
    )
    schema_version = "1.1"

    session_id: str = SESSION_ID
    step: int = Field(ge=0, le=100_000)
    append: list[Message] = Field(default_factory=list, max_length=256)
    include_context: bool = True
    #: The token budget of the window (the agent's `context.max_context_tokens`).
    max_context_tokens: int | None = Field(default=None, ge=1)
    #: The model's context window; with `max_output_tokens` and `tools_tokens` it caps the budget: the
    #: window never exceeds model_context_tokens - max_output_tokens - tools_tokens (since 1.1).
    model_context_tokens: int | None = Field(default=None, ge=1)
    #: The room the answer needs (the agent's `max_tokens`).
    max_output_tokens: int | None = Field(default=None, ge=0)
    #: What the offered tools' specs take of the window (`tool.catalog.ready.v1`'s `tools_tokens`).
    tools_tokens: int | None = Field(default=None, ge=0)
    #: Ask for compaction once the transcript outside the window exceeds this many tokens.
    compaction_threshold_tokens: int | None = Field(default=None, ge=1)
    #: `turn` appends and assembles; `compaction` stores `summary` and assembles again. Part of the
    #: idempotency key with (run_id, step).
    phase: Literal["turn", "compaction"] = "turn"
    #: The agent's system prompt; memory returns it with the user's facts and the latest summary.
    system: str = Field(default="", max_length=200_000)
    user_id: str | None = Field(default=None, max_length=128)
    summary: ContextSummary | None = None
    #: Agent state writes, applied once per (run_id, step) with conditional writes (see memory's README).
    state_updates: list[AgentStateUpdate] = Field(default_factory=list, max_length=32)
    #: Return the session's agent state in the answer (`state`).
    include_state: bool = False


class MemoryContextReady(EventData):
    detail_type = DetailType.MEMORY_CONTEXT_READY
    source = Source.MEMORY
    description = "The append is durable; `messages` is the context window for the next model call."
    schema_version = "1.1"

    session_id: str = SESSION_ID
    step: int = Field(ge=0)
    messages: list[Message] = Field(default_factory=list)
    #: Claim check for a context too large to travel inline; then `messages` is empty.
    messages_ref: PayloadRef | None = None
    #: The system prompt to send: the agent's, plus the user's long-term facts and the latest summary.
    system: str = ""
    #: Estimated tokens of system + messages.
    context_tokens: int = Field(default=0, ge=0)
    #: The budget the window was assembled to: max_context_tokens, capped by what the model's window
    #: leaves after the answer and the tool specs (since 1.1).
    budget_tokens: int = Field(default=0, ge=0)
    #: Set when older turns should be summarized before the next model call.
    compaction: CompactionRequest | None = None
    appended: int = Field(default=0, ge=0)
    message_count: int = Field(default=0, ge=0)
    duration_ms: float = Field(default=0, ge=0)
    #: The seq the summary in `system` covers (messages after it are in the window), if any.
    summary_through_seq: int | None = Field(default=None, ge=1)
    #: How many of the user's long-term facts are in `system`.
    facts_count: int = Field(default=0, ge=0)
    #: The session's agent state after `state_updates` (when include_state or updates were requested).
    state: list[AgentStateEntry] = Field(default_factory=list)
    #: Keys of `state_updates` not applied because their expected_version no longer matched.
    state_conflicts: list[str] = Field(default_factory=list)


class MemoryContextFailed(FailureData):
    detail_type = DetailType.MEMORY_CONTEXT_FAILED
    source = Source.MEMORY
    description = "Memory could not append or assemble the context."


class SequencedMessage(ContractModel):
    seq: int = Field(ge=1)
    message: Message


class MemoryMessageAppended(EventData):
    detail_type = DetailType.MEMORY_MESSAGE_APPENDED
    source = Source.MEMORY
    description = "Messages were durably appended to a session's transcript (one event per append)."

    session_id: str = SESSION_ID
    messages: list[SequencedMessage] = Field(min_length=1)
