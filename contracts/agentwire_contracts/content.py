"""Provider-neutral conversation content: messages made of text, tool_use and tool_result blocks.

The shapes follow the Anthropic Messages API (the most expressive of the three providers); the llm
service maps them to and from each provider's own format.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ContractModel(BaseModel):
    """Base of every contract model.

    Built in code (a producer), a model forbids unknown fields; parsed from the bus (a consumer, through
    `agentwire_contracts.parsing`), unknown fields are ignored, so producers may add optional fields.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TextBlock(ContractModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(ContractModel):
    type: Literal["tool_use"] = "tool_use"
    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=128)
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResultBlock(ContractModel):
    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str = Field(min_length=1, max_length=128)
    content: str
    is_error: bool = False


ContentBlock = Annotated[TextBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")]


class Message(ContractModel):
    role: Literal["user", "assistant"]
    content: list[ContentBlock] = Field(min_length=1)

    def text(self) -> str:
        """The concatenated text blocks of this message."""
        return "".join(block.text for block in self.content if isinstance(block, TextBlock))

    def tool_uses(self) -> list[ToolUseBlock]:
        return [block for block in self.content if isinstance(block, ToolUseBlock)]


class Usage(ContractModel):
    """Token usage of one model call or the total of a run."""

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_creation_input_tokens: int = Field(default=0, ge=0)
    cache_read_input_tokens: int = Field(default=0, ge=0)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
        )


class ToolSpec(ContractModel):
    """What a model sees of a tool: its name, description and JSON Schema of its input."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str
    input_schema: dict[str, Any]


def canonical_args_hash(arguments: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a tool call's input: sorted keys, no spaces, UTF-8.

    An approval is bound to this hash, so it cannot approve different arguments."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ToolCall(ContractModel):
    """One tool call the model asked for."""

    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=128)
    input: dict[str, Any] = Field(default_factory=dict)
    #: `canonical_args_hash(input)`, set by the llm service so approvals can be bound to the arguments.
    args_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @classmethod
    def of(cls, id: str, name: str, input: dict[str, Any]) -> ToolCall:
        return cls(id=id, name=name, input=input, args_hash=canonical_args_hash(input))


class PayloadRef(ContractModel):
    """A claim check: a large payload stored in the payload bucket instead of travelling in an event.

    Resolve it with `agentwire_contracts.payload` (the only code that reads or writes the bucket)."""

    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1, max_length=1024)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    content_type: str = "application/json"


class ErrorInfo(ContractModel):
    """A machine-readable error: `code` is stable (e.g. `Llm.RateLimited`), `message` is for people."""

    code: str = Field(min_length=1, max_length=128)
    message: str = Field(default="", max_length=4096)
