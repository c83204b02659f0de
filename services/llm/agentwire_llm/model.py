"""The provider-neutral model call: what a provider is given, what it answers, and the port it implements."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, Protocol

from agentwire_contracts.content import Message, ToolCall, ToolSpec, Usage
from agentwire_contracts.tokens import (
    BLOCK_OVERHEAD_TOKENS,
    estimate_block_tokens,
    estimate_message_tokens,
    estimate_text_tokens,
    estimate_tool_specs_tokens,
)
from pydantic import BaseModel, ConfigDict, Field

#: Anthropic's names; the other providers' finish reasons are mapped onto these.
StopReason = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence"]
STOP_REASONS: tuple[str, ...] = ("end_turn", "tool_use", "max_tokens", "stop_sequence")


class CompletionRequest(BaseModel):
    """One model call. `model` is the provider's model id (aliases already resolved)."""

    model_config = ConfigDict(frozen=True)

    model: str
    system: str = ""
    messages: list[Message] = Field(min_length=1)
    tools: list[ToolSpec] = Field(default_factory=list)
    max_tokens: int = Field(default=1024, ge=1)
    temperature: float | None = None
    #: `turn_digest` of an assistant message → the provider's own content for it (with its reasoning
    #: blocks), sent instead of the neutral form: see `Completion.native_content`.
    native_turns: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)


def turn_digest(message: Message) -> str:
    """A stable name for one assistant message as the contract carries it (memory stores it verbatim)."""
    canonical = json.dumps(message.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Completion(BaseModel):
    """What a provider answered: one assistant message, why it stopped, and what it cost in tokens."""

    model_config = ConfigDict(frozen=True)

    message: Message
    stop_reason: StopReason
    usage: Usage = Field(default_factory=Usage)
    #: The model that actually answered (a provider may resolve an alias to a dated version).
    model: str
    provider: str
    #: The provider's own content blocks, when they hold what the contract does not carry: the model's
    #: reasoning (Anthropic `thinking`/`redacted_thinking` with their signatures, Bedrock
    #: `reasoningContent`). A model that reasons before a tool call must get those blocks back, unchanged,
    #: with that turn in the next request of the tool loop, or the API refuses it (400).
    native_content: list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        return self.message.text()

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [ToolCall(id=block.id, name=block.name, input=block.input) for block in self.message.tool_uses()]


class ModelProvider(Protocol):
    """A model behind an API (Anthropic, OpenAI, Bedrock) or a local stand-in (offline, scripted).

    `complete` answers one call or raises `StepError` with an `Llm.*` code (see `errors`); any other
    exception is a bug or an infrastructure failure and is left to SQS redelivery.
    """

    @property
    def name(self) -> str: ...

    def complete(self, request: CompletionRequest) -> Completion: ...


def estimate_input_tokens(request: CompletionRequest) -> int:
    """The request's input tokens by the estimate every service shares (memory sized the context with
    it), never below 1."""
    return max(
        1,
        estimate_text_tokens(request.system)
        + sum(estimate_message_tokens(message) for message in request.messages)
        + estimate_tool_specs_tokens(request.tools),
    )


def estimate_output_tokens(message: Message) -> int:
    """An answer's output tokens: its text and tool calls (framing is the provider's, not the model's)."""
    return max(1, sum(estimate_block_tokens(block) - BLOCK_OVERHEAD_TOKENS for block in message.content))
