"""The provider-neutral model call: what a provider is given, what it answers, and the port it implements."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, Protocol

from agentwire_contracts.content import Message, TextBlock, ToolCall, ToolSpec, ToolUseBlock, Usage
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


#: What an answer says when it has nothing left to say once its unfinished tool calls are gone (or was cut
#: before it said anything): the providers refuse an assistant message with empty content in the next
#: request, so the transcript must hold something, and this is what happened.
CUT_OFF_NOTES: dict[str, str] = {
    "max_tokens": "[The answer was cut off at the token limit.]",
    "stop_sequence": "[The answer was cut off at a stop sequence before its tool call was made.]",
    "end_turn": "[The answer ended before its tool call was made.]",
}
#: What an answer that finished without a word (e.g. end_turn right after a tool result) holds instead: the
#: Messages API refuses a non-final assistant turn with empty content, and Converse any empty content, so
#: kept empty it would break the session's next request.
EMPTY_ANSWER_NOTE = "[The model ended its turn without saying anything.]"


def only_finished_tool_calls(completion: Completion) -> tuple[Completion, int]:
    """The answer with its tool calls only if the model stopped to make them, and how many were dropped.

    A tool call is a call only when the model stopped for it (`tool_use`). An answer that stopped for
    another reason (cut at `max_tokens`, a stop sequence, a refusal or guardrail mapped to `end_turn`)
    may hold a `tool_use` block whose input is truncated, and the run treats the answer as final, so no
    tool would ever answer it: kept, it would be a call without a result in the transcript, which every
    provider refuses in every later request of the session. Such blocks are dropped here, once, for
    every provider. If that, or a cut before the model said anything, leaves no text, the answer says
    why in a short note (see `CUT_OFF_NOTES`); an answer that finished without a word says that
    (`EMPTY_ANSWER_NOTE`), as no provider takes an empty assistant turn back. The provider's native
    content is dropped with any change: it no longer matches the message, and reasoning only has to go
    back within a tool loop, which an answer without a call ends.
    """
    if completion.stop_reason == "tool_use":
        return completion, 0
    content = completion.message.content
    kept = [block for block in content if not isinstance(block, ToolUseBlock)]
    dropped = len(content) - len(kept)
    says_something = any(isinstance(block, TextBlock) and block.text.strip() for block in kept)
    if not dropped and says_something:
        return completion, 0
    if not says_something:
        if dropped:
            note = CUT_OFF_NOTES.get(completion.stop_reason, CUT_OFF_NOTES["end_turn"])
        elif completion.stop_reason == "max_tokens":  # cut before any text (e.g. all of it spent reasoning)
            note = CUT_OFF_NOTES["max_tokens"]
        else:  # finished without a word
            note = EMPTY_ANSWER_NOTE
        kept = [TextBlock(text=note)]
    message = Message(role=completion.message.role, content=kept)
    return completion.model_copy(update={"message": message, "native_content": None}), dropped


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
