"""The OpenAI Chat Completions shapes, mapped to and from the contract: pure functions, no SDK.

Contract → OpenAI: `system` becomes a system message; a user message's tool_result blocks become
`role: tool` messages (in order, before the user's text); an assistant's tool_use blocks become
`tool_calls` with JSON-string arguments. OpenAI → contract: `finish_reason` maps onto Anthropic's stop
reasons (`tool_calls` → tool_use, `length` → max_tokens, `stop`/`content_filter` → end_turn), and
`prompt_tokens` (which include cached tokens) splits into uncached input and cache reads.
"""

from __future__ import annotations

import json
from typing import Any

from agentwire_contracts.content import ContentBlock, Message, TextBlock, ToolResultBlock, ToolUseBlock, Usage

from agentwire_llm import errors
from agentwire_llm.model import Completion, CompletionRequest, StopReason

FINISH_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "end_turn",
}


def request_params(request: CompletionRequest) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for message in request.messages:
        messages.extend(message_params(message))
    params: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_completion_tokens": request.max_tokens,
    }
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.input_schema},
            }
            for t in sorted(request.tools, key=lambda t: t.name)
        ]
    return params


def message_params(message: Message) -> list[dict[str, Any]]:
    if message.role == "assistant":
        text = message.text()
        calls = [
            {
                "id": block.id,
                "type": "function",
                "function": {"name": block.name, "arguments": json.dumps(block.input, separators=(",", ":"))},
            }
            for block in message.tool_uses()
        ]
        param: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            param["tool_calls"] = calls
        elif not text:
            param["content"] = ""
        return [param]
    out: list[dict[str, Any]] = [
        {"role": "tool", "tool_call_id": b.tool_use_id, "content": ("Error: " if b.is_error else "") + b.content}
        for b in message.content
        if isinstance(b, ToolResultBlock)
    ]
    text = message.text()
    if text or not out:
        out.append({"role": "user", "content": text})
    return out


def completion_from_body(body: dict[str, Any], *, provider: str, requested_model: str) -> Completion:
    """A `Completion` from a Chat Completions response body (`"object": "chat.completion"`)."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise errors.unavailable("the OpenAI response has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise errors.unavailable("the OpenAI response's choice has no message")
    finish = str(choice.get("finish_reason") or "stop")
    content: list[ContentBlock] = []
    if message.get("content"):
        content.append(TextBlock(text=str(message["content"])))
    elif message.get("refusal"):
        content.append(TextBlock(text=str(message["refusal"])))
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not call.get("id") or not function.get("name"):
            raise errors.unavailable("malformed tool call in the OpenAI response")
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError as exc:
            if finish == "length":
                # Cut off mid-arguments: not a call (the model did not stop to make it). Kept without its
                # input only so the completion logic drops and counts it with every other unfinished call.
                arguments = {}
            else:
                # The model wrote arguments that are not JSON: another sample will likely be well formed.
                raise errors.unavailable(f"the model's arguments for {function['name']} are not JSON") from exc
        if not isinstance(arguments, dict):
            raise errors.unavailable(f"the model's arguments for {function['name']} are not a JSON object")
        content.append(ToolUseBlock(id=str(call["id"]), name=str(function["name"]), input=arguments))
    if not content:
        content.append(TextBlock(text=""))
    stop_reason: StopReason = FINISH_REASONS.get(finish, "end_turn")
    # Some compatible servers say `stop` with tool calls; calls cut off at the length limit stay cut off.
    if stop_reason == "end_turn" and any(isinstance(b, ToolUseBlock) for b in content):
        stop_reason = "tool_use"
    raw_usage = body.get("usage") or {}
    prompt = int(raw_usage.get("prompt_tokens") or 0)
    cached = int((raw_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    usage = Usage(
        input_tokens=max(0, prompt - cached),
        output_tokens=int(raw_usage.get("completion_tokens") or 0),
        cache_read_input_tokens=cached,
    )
    return Completion(
        message=Message(role="assistant", content=content),
        stop_reason=stop_reason,
        usage=usage,
        model=str(body.get("model") or requested_model),
        provider=provider,
    )
