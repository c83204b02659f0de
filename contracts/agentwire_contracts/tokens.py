"""The local token estimate every service uses: one calibration, so a budget memory assembles to is the
same budget the tools service sized the tool specs with and the llm service checks a request against.

No provider tokenizer is called: the estimate has to be available offline, in every service, for every
provider. It is calibrated to be slightly conservative (it over-counts more often than it under-counts),
which is the side a context budget must err on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from agentwire_contracts.content import ContentBlock, Message, TextBlock, ToolSpec, ToolUseBlock

#: Claude's and OpenAI's tokenizers average 3.5-4 characters per token on English prose and JSON;
#: counting UTF-8 *bytes* over 3.5 lands on that for ASCII and stays conservative for other scripts (a
#: CJK character is 3 bytes, ~0.9 token).
BYTES_PER_TOKEN = 3.5
#: Every message and content block costs a few tokens of framing on the provider side.
MESSAGE_OVERHEAD_TOKENS = 4
BLOCK_OVERHEAD_TOKENS = 3
#: A tool definition's framing beyond its name, description and schema (Anthropic documents a
#: tool-use system prompt of a few hundred tokens per request; per tool the framing is small).
TOOL_OVERHEAD_TOKENS = 8
#: What offering any tools at all adds to a request: the provider's tool-use system prompt (Anthropic
#: documents 313-346 tokens for its current models; OpenAI's function framing is smaller).
TOOL_USE_PROMPT_TOKENS = 350


def estimate_text_tokens(text: str) -> int:
    if not text:
        return 0
    return math.ceil(len(text.encode()) / BYTES_PER_TOKEN)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def estimate_block_tokens(block: ContentBlock) -> int:
    if isinstance(block, TextBlock):
        body = block.text
    elif isinstance(block, ToolUseBlock):
        body = block.name + _json(block.input)
    else:
        body = block.tool_use_id + block.content
    return BLOCK_OVERHEAD_TOKENS + estimate_text_tokens(body)


def estimate_message_tokens(message: Message) -> int:
    """The estimate of a message's input tokens (see BYTES_PER_TOKEN for the calibration)."""
    return MESSAGE_OVERHEAD_TOKENS + sum(estimate_block_tokens(block) for block in message.content)


def estimate_tool_specs_tokens(specs: Iterable[ToolSpec]) -> int:
    """What offering these tools costs in input tokens on every model call (0 for no tools)."""
    total = sum(
        TOOL_OVERHEAD_TOKENS + estimate_text_tokens(spec.name + spec.description + _json(spec.input_schema))
        for spec in specs
    )
    return total + TOOL_USE_PROMPT_TOKENS if total else 0
