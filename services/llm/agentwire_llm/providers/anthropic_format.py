"""The Anthropic Messages API's shapes, mapped to and from the contract: pure functions, no SDK.

The scripted provider replays response bodies in this shape and the Anthropic provider sends and
receives them, so both share one mapping (and one error table).
"""

from __future__ import annotations

import copy
from typing import Any

from agentwire_contracts.consumer import StepError
from agentwire_contracts.content import ContentBlock, Message, TextBlock, ToolUseBlock, Usage
from pydantic import ValidationError

from agentwire_llm import errors
from agentwire_llm.model import STOP_REASONS, Completion, CompletionRequest, turn_digest

#: Anthropic's `error.type` → our code. Unknown types are treated as the provider being unavailable.
ERROR_CODES: dict[str, str] = {
    "rate_limit_error": errors.RATE_LIMITED,
    "overloaded_error": errors.OVERLOADED,
    "api_error": errors.UNAVAILABLE,
    "timeout_error": errors.TIMEOUT,
    "invalid_request_error": errors.BAD_REQUEST,
    "not_found_error": errors.BAD_REQUEST,
    "request_too_large": errors.CONTEXT_TOO_LONG,
    "authentication_error": errors.UNAUTHORIZED,
    "permission_error": errors.UNAUTHORIZED,
    "billing_error": errors.UNAUTHORIZED,
}
#: How Anthropic words an invalid request whose prompt does not fit the model's context window.
_CONTEXT_TOO_LONG_HINTS = ("prompt is too long", "context window", "context length", "too many tokens")


def is_error_body(body: dict[str, Any]) -> bool:
    return body.get("type") == "error"


def error_from_body(body: dict[str, Any], *, retry_after_s: float | None = None) -> StepError:
    """The `StepError` for an Anthropic error body `{"type": "error", "error": {"type", "message"}}`."""
    raw_error = body.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    error_type = str(error.get("type", "unknown_error"))
    message = str(error.get("message", ""))
    code = ERROR_CODES.get(error_type, errors.UNAVAILABLE)
    if code == errors.BAD_REQUEST and any(hint in message.lower() for hint in _CONTEXT_TOO_LONG_HINTS):
        code = errors.CONTEXT_TOO_LONG
    return errors.llm_error(code, f"{error_type}: {message}".strip(": "), retry_after_s=retry_after_s)


def completion_from_body(body: dict[str, Any], *, provider: str, requested_model: str) -> Completion:
    """A `Completion` from an Anthropic Messages API response body.

    Block types the contract does not carry are dropped from the message; reasoning blocks (`thinking`,
    `redacted_thinking`) are kept with the whole content as `native_content`, to be sent back with this
    turn. A body that does not hold a usable assistant message is answered as `Llm.Unavailable`.
    """
    content: list[ContentBlock] = []
    for block in body.get("content") or []:
        kind = block.get("type") if isinstance(block, dict) else None
        try:
            if kind == "text":
                content.append(TextBlock(text=str(block.get("text", ""))))
            elif kind == "tool_use":
                content.append(ToolUseBlock(id=block["id"], name=block["name"], input=block.get("input") or {}))
        except (KeyError, ValidationError) as exc:
            raise errors.unavailable(f"malformed {kind} block in the response: {exc}") from exc
    if not content:
        # The contract requires a non-empty message; an empty answer (e.g. end_turn right after a tool
        # result) is represented as one empty text block, which is what the model said (the completion
        # service keeps a note instead, see `model.only_finished_tool_calls`).
        content.append(TextBlock(text=""))
    stop_reason = body.get("stop_reason") or "end_turn"
    if stop_reason not in STOP_REASONS:
        # The answer was cut by the context window, as Bedrock's mapping says too; anything else (e.g.
        # "pause_turn" or "refusal"): the turn is over as far as the run is concerned.
        stop_reason = _CUT_SHORT.get(stop_reason, "end_turn")
    raw_usage = body.get("usage") or {}
    usage = Usage(
        input_tokens=int(raw_usage.get("input_tokens") or 0),
        output_tokens=int(raw_usage.get("output_tokens") or 0),
        cache_creation_input_tokens=int(raw_usage.get("cache_creation_input_tokens") or 0),
        cache_read_input_tokens=int(raw_usage.get("cache_read_input_tokens") or 0),
    )
    raw_content = [block for block in body.get("content") or [] if isinstance(block, dict)]
    reasons = any(block.get("type") in REASONING_BLOCKS for block in raw_content)
    return Completion(
        message=Message(role="assistant", content=content),
        stop_reason=stop_reason,
        usage=usage,
        model=str(body.get("model") or requested_model),
        provider=provider,
        native_content=raw_content if reasons else None,
    )


#: Stop reasons outside the contract that mean the answer was cut, not finished.
_CUT_SHORT: dict[str, str] = {"model_context_window_exceeded": "max_tokens"}


#: Blocks the model's reasoning comes in; they must go back unchanged with their turn in a tool loop.
REASONING_BLOCKS = ("thinking", "redacted_thinking")


#: Anthropic's 5-minute prompt cache; a breakpoint caches everything before and including its block.
CACHE_CONTROL: dict[str, str] = {"type": "ephemeral"}


def canonical(value: Any) -> Any:
    """JSON with every object's keys sorted, so a schema's bytes never depend on who built the dict."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def request_params(request: CompletionRequest, *, cache_prompt: bool = True) -> dict[str, Any]:
    """The keyword arguments of `messages.create` for this request.

    The prompt is laid out so its prefix is byte-identical from one turn to the next: tools sorted by
    name with canonical schemas, then the system prompt, then the messages in order. With `cache_prompt`,
    breakpoints mark the end of the tools, the end of the system prompt, the newest message and the
    previous user message, so each turn reads the conversation so far from the cache and writes only
    what is new (at most 4 breakpoints, the API's limit).
    """
    tools = [
        {"name": t.name, "description": t.description, "input_schema": canonical(t.input_schema)}
        for t in sorted(request.tools, key=lambda t: t.name)
    ]
    messages = [native_or_neutral(m, request.native_turns) for m in request.messages]
    params: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens}
    if tools:
        if cache_prompt:
            tools[-1]["cache_control"] = dict(CACHE_CONTROL)
        params["tools"] = tools
    if request.system:
        system: dict[str, Any] = {"type": "text", "text": request.system}
        if cache_prompt:
            system["cache_control"] = dict(CACHE_CONTROL)
        params["system"] = [system]
    if cache_prompt and messages:
        _mark(messages[-1])
        earlier_user = [i for i, m in enumerate(messages[:-1]) if m["role"] == "user"]
        if earlier_user:
            _mark(messages[earlier_user[-1]])
    params["messages"] = messages
    # No `temperature`: the API version the 2.x SDK speaks rejects sampling parameters (HTTP 400, even
    # at their defaults), so the contract's temperature is for the providers that still take it.
    return params


def native_or_neutral(message: Message, native_turns: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """An assistant turn the model reasoned in goes back exactly as it came (thinking blocks and their
    signatures included); every other message is mapped from the contract."""
    if message.role == "assistant" and native_turns:
        native = native_turns.get(turn_digest(message))
        if native is not None:
            return {"role": "assistant", "content": copy.deepcopy(native)}
    return message_param(message)


def _mark(message: dict[str, Any]) -> None:
    content = message["content"]
    # Reasoning blocks cannot carry a breakpoint themselves: mark the last block that is not one.
    markable = (
        [block for block in content if block.get("type") not in REASONING_BLOCKS] if isinstance(content, list) else []
    )
    if markable:
        markable[-1]["cache_control"] = dict(CACHE_CONTROL)


def message_param(message: Message) -> dict[str, Any]:
    # The API rejects empty text blocks, which an empty answer recorded in the transcript may hold.
    blocks = [b for b in message.content if not (isinstance(b, TextBlock) and not b.text)]
    return {"role": message.role, "content": [b.model_dump(mode="json") for b in blocks] or ""}
