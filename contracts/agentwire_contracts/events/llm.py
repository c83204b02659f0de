"""LLM events: one model call, provider-neutral."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from agentwire_contracts.content import Message, PayloadRef, ToolCall, ToolSpec, Usage
from agentwire_contracts.envelope import EventData
from agentwire_contracts.events.run import SESSION_ID
from agentwire_contracts.failure import FailureData
from agentwire_contracts.names import DetailType, Source


class LlmCompletionRequested(EventData):
    detail_type = DetailType.LLM_COMPLETION_REQUESTED
    source = Source.ORCHESTRATOR
    description = "Call the model with this context; idempotent per run_id and step."

    session_id: str = SESSION_ID
    step: int = Field(ge=0, le=100_000)
    model: str = Field(min_length=1, max_length=256)
    system: str = Field(default="", max_length=200_000)
    messages: list[Message] = Field(default_factory=list)
    #: Claim check for a context too large to travel inline; then `messages` is empty.
    messages_ref: PayloadRef | None = None
    tools: list[ToolSpec] = Field(default_factory=list, max_length=128)
    max_tokens: int = Field(default=1024, ge=1, le=200_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    #: `turn` is the agent's own model call; `compaction` summarizes older turns for memory. Part of
    #: the idempotency key, so both can happen at one step.
    purpose: Literal["turn", "compaction"] = "turn"
    agent: str = Field(default="", max_length=64)
    user_id: str | None = Field(default=None, max_length=128)
    #: Opt-in per agent: answer deterministic requests (temperature 0) from the response cache.
    cache_responses: bool = False
    #: What the run has spent so far and its cap, in millionths of a US dollar; the llm service
    #: refuses a call whose estimated cost would cross the cap (`Llm.BudgetExceeded`).
    spent_microusd: int = Field(default=0, ge=0)
    max_cost_microusd: int | None = Field(default=None, ge=0)
    #: Tokens (input + output, all model calls) the run has used so far and its cap; the llm service
    #: refuses a call that could cross the cap (`Llm.BudgetExceeded`).
    spent_tokens: int = Field(default=0, ge=0)
    max_total_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _has_context(self) -> Self:
        if not self.messages and self.messages_ref is None:
            raise ValueError("messages or messages_ref is required")
        return self


class LlmCompletionCompleted(EventData):
    detail_type = DetailType.LLM_COMPLETION_COMPLETED
    source = Source.LLM
    description = "The model answered: the assistant message, its tool calls, stop reason and usage."

    session_id: str = SESSION_ID
    step: int = Field(ge=0)
    message: Message
    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    #: end_turn | tool_use | max_tokens | stop_sequence (Anthropic's names; other providers are mapped)
    stop_reason: str
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    provider: str = ""
    cost_usd: float = Field(default=0, ge=0)
    #: The same cost in millionths of a US dollar, for exact sums in the state machine.
    cost_microusd: int = Field(default=0, ge=0)
    #: Answered from the response cache (costs nothing).
    cached: bool = False
    #: The model first asked for, when a fallback answered instead.
    fallback_from: str | None = None
    purpose: Literal["turn", "compaction"] = "turn"
    duration_ms: float = Field(default=0, ge=0)


class LlmCompletionFailed(FailureData):
    detail_type = DetailType.LLM_COMPLETION_FAILED
    source = Source.LLM
    description = "The model call failed; `code` is Llm.RateLimited, Llm.Overloaded, Llm.BadRequest, ..."
