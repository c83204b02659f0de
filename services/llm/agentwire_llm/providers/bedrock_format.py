"""Amazon Bedrock Converse shapes, mapped to and from the contract: pure functions, no boto3.

Converse speaks content blocks as Anthropic does (`text`, `toolUse`, `toolResult`), keyed by block kind
rather than by a `type` field; its stop reasons are Anthropic's plus a few of Bedrock's own.
"""

from __future__ import annotations

import base64
from typing import Any

from agentwire_contracts.content import ContentBlock, Message, TextBlock, ToolResultBlock, ToolUseBlock, Usage

from agentwire_llm import errors
from agentwire_llm.model import STOP_REASONS, Completion, CompletionRequest, StopReason, turn_digest

_STOP_REASONS: dict[str, StopReason] = {
    "malformed_tool_use": "end_turn",
    "guardrail_intervened": "end_turn",
    "content_filtered": "end_turn",
    "model_context_window_exceeded": "max_tokens",
}

#: Converse error codes → ours (the HTTP status is the fallback).
ERROR_CODES: dict[str, str] = {
    "ThrottlingException": errors.RATE_LIMITED,
    "ServiceUnavailableException": errors.OVERLOADED,
    "ModelNotReadyException": errors.OVERLOADED,
    "ModelTimeoutException": errors.TIMEOUT,
    "InternalServerException": errors.UNAVAILABLE,
    "ModelErrorException": errors.UNAVAILABLE,
    "ValidationException": errors.BAD_REQUEST,
    "ResourceNotFoundException": errors.BAD_REQUEST,
    "AccessDeniedException": errors.UNAUTHORIZED,
    "UnrecognizedClientException": errors.UNAUTHORIZED,
    "ExpiredTokenException": errors.UNAUTHORIZED,
}
_CONTEXT_TOO_LONG_HINTS = ("too long", "context window", "input is too long", "maximum context", "too many tokens")


def error_for(error_code: str, message: str, status: int | None) -> str:
    code = ERROR_CODES.get(error_code)
    if code is None:
        code = {429: errors.RATE_LIMITED, 503: errors.OVERLOADED, 408: errors.TIMEOUT}.get(
            status or 0, errors.BAD_REQUEST if status and 400 <= status < 500 else errors.UNAVAILABLE
        )
    if code == errors.BAD_REQUEST and any(hint in message.lower() for hint in _CONTEXT_TOO_LONG_HINTS):
        code = errors.CONTEXT_TOO_LONG
    return code


#: Model families with Bedrock prompt caching; others reject cache points.
CACHING_FAMILIES = ("anthropic.claude", "amazon.nova")


def supports_cache_points(model: str) -> bool:
    base = model.split(".", 1)[1] if model.split(".", 1)[0] in ("us", "eu", "apac", "global", "jp", "au") else model
    return base.startswith(CACHING_FAMILIES)


def request_params(request: CompletionRequest, *, cache_prompt: bool = False) -> dict[str, Any]:
    """Keyword arguments of `bedrock-runtime` `converse`. `cache_prompt` adds cache points after the
    tools and the system prompt, for the model families that support Bedrock prompt caching."""
    cache_prompt = cache_prompt and supports_cache_points(request.model)
    inference: dict[str, Any] = {"maxTokens": request.max_tokens}
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    params: dict[str, Any] = {
        "modelId": request.model,
        "messages": [native_or_neutral(m, request.native_turns) for m in request.messages],
        "inferenceConfig": inference,
    }
    if request.system:
        system: list[dict[str, Any]] = [{"text": request.system}]
        if cache_prompt:
            system.append({"cachePoint": {"type": "default"}})
        params["system"] = system
    if request.tools:
        tools: list[dict[str, Any]] = [
            {"toolSpec": {"name": t.name, "description": t.description, "inputSchema": {"json": t.input_schema}}}
            for t in sorted(request.tools, key=lambda t: t.name)
        ]
        if cache_prompt:
            tools.append({"cachePoint": {"type": "default"}})
        params["toolConfig"] = {"tools": tools}
    return params


#: Marks bytes (a `redactedContent` blob) in the JSON form of a native turn.
_BYTES = "__base64__"


def native_or_neutral(message: Message, native_turns: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """An assistant turn the model reasoned in goes back exactly as it came (`reasoningContent` blocks with
    their signatures, redacted blobs as bytes again); every other message is mapped from the contract."""
    if message.role == "assistant" and native_turns:
        native = native_turns.get(turn_digest(message))
        if native is not None:
            return {"role": "assistant", "content": _from_json(native)}
    return message_param(message)


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {_BYTES: base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {key: _to_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_json(item) for item in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_BYTES}:
            return base64.b64decode(value[_BYTES])
        return {key: _from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    return value


def message_param(message: Message) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            if block.text:  # Converse rejects blank text blocks
                content.append({"text": block.text})
        elif isinstance(block, ToolUseBlock):
            content.append({"toolUse": {"toolUseId": block.id, "name": block.name, "input": block.input}})
        elif isinstance(block, ToolResultBlock):
            result: dict[str, Any] = {"toolUseId": block.tool_use_id, "content": [{"text": block.content or " "}]}
            if block.is_error:
                result["status"] = "error"
            content.append({"toolResult": result})
    return {"role": message.role, "content": content or [{"text": " "}]}


def completion_from_response(response: dict[str, Any], *, provider: str, requested_model: str) -> Completion:
    output = response.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise errors.unavailable("the Converse response has no output message")
    content: list[ContentBlock] = []
    for block in message["content"]:
        if not isinstance(block, dict):
            raise errors.unavailable("malformed content block in the Converse response")
        if "text" in block:
            content.append(TextBlock(text=str(block["text"])))
        elif "toolUse" in block:
            use = block["toolUse"]
            if not isinstance(use, dict) or not use.get("toolUseId") or not use.get("name"):
                raise errors.unavailable("malformed toolUse block in the Converse response")
            arguments = use.get("input") or {}
            if not isinstance(arguments, dict):
                raise errors.unavailable(f"the model's input for {use['name']} is not a JSON object")
            content.append(ToolUseBlock(id=str(use["toolUseId"]), name=str(use["name"]), input=arguments))
        # reasoningContent (kept whole in native_content below), citations, ...: not carried by the contract
    if not content:
        content.append(TextBlock(text=""))
    raw_stop = str(response.get("stopReason") or "end_turn")
    stop_reason: StopReason = (
        raw_stop if raw_stop in STOP_REASONS else _STOP_REASONS.get(raw_stop, "end_turn")  # type: ignore[assignment]
    )
    raw_usage = response.get("usage") or {}
    usage = Usage(
        input_tokens=int(raw_usage.get("inputTokens") or 0),
        output_tokens=int(raw_usage.get("outputTokens") or 0),
        cache_read_input_tokens=int(raw_usage.get("cacheReadInputTokens") or 0),
        cache_creation_input_tokens=int(raw_usage.get("cacheWriteInputTokens") or 0),
    )
    reasons = any("reasoningContent" in block for block in message["content"])
    return Completion(
        message=Message(role="assistant", content=content),
        stop_reason=stop_reason,
        usage=usage,
        model=requested_model,
        provider=provider,
        native_content=_to_json(message["content"]) if reasons else None,
    )
