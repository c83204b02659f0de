"""The OpenAI provider against documented Chat Completions bodies, through the real SDK.

The SDK talks through httpx2, which respx does not intercept, so the fake is httpx2's own MockTransport
passed as the SDK's `http_client`: the SDK builds the real request and parses the real response.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from agentwire_contracts.consumer import StepError
from agentwire_contracts.content import Message, TextBlock, ToolResultBlock, ToolUseBlock
from agentwire_llm.completion import CallDirectly, CompletionService
from agentwire_llm.model import CUT_OFF_NOTES, CompletionRequest
from agentwire_llm.providers.openai import OpenAIProvider
from llm_testkit import CALCULATOR, CURRENT_TIME, completion_request_event, user

API_KEY = "sk-proj-test-not-a-real-key"

# Shaped as the Chat Completions reference's function-calling example.
TOOL_CALL_BODY = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1699896916,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_abc123",
                        "type": "function",
                        "function": {"name": "calculator", "arguments": '{\n"expression": "1234 * 5678"\n}'},
                    }
                ],
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 1082,
        "completion_tokens": 17,
        "total_tokens": 1099,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_44709d6fcb",
}


def text_body(text: str, finish_reason: str = "stop") -> dict[str, Any]:
    body = json.loads(json.dumps(TOOL_CALL_BODY))
    body["choices"][0]["message"] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    body["choices"][0]["finish_reason"] = finish_reason
    return body


REQUEST = CompletionRequest(
    model="gpt-4o-mini",
    system="Be brief.",
    messages=[
        user("What is 1234 * 5678?"),
        Message(
            role="assistant",
            content=[
                TextBlock(text="Let me compute."),
                ToolUseBlock(id="call_1", name="calculator", input={"expression": "1234 * 5678"}),
            ],
        ),
        Message(
            role="user",
            content=[ToolResultBlock(tool_use_id="call_1", content="7006652"), TextBlock(text="And in words?")],
        ),
    ],
    tools=[CURRENT_TIME, CALCULATOR],
    max_tokens=256,
    temperature=0,
)


def provider_answering(respond: Callable[[httpx2.Request], httpx2.Response]) -> tuple[OpenAIProvider, list]:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return respond(request)

    provider = OpenAIProvider.create(API_KEY, http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    return provider, seen


def error(status: int, message: str, type_: str, code: str | None, headers: dict[str, str] | None = None):
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return httpx2.Response(status, json=body, headers=headers or {})


def test_llm_openai_sends_messages_and_function_tools_and_maps_the_tool_call() -> None:
    provider, seen = provider_answering(lambda request: httpx2.Response(200, json=TOOL_CALL_BODY))

    completion = provider.complete(REQUEST)

    [sent] = seen
    assert sent.url.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    body = json.loads(sent.content)
    assert body["model"] == "gpt-4o-mini" and body["max_completion_tokens"] == 256 and body["temperature"] == 0
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 1234 * 5678?"},
        {
            "role": "assistant",
            "content": "Let me compute.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression":"1234 * 5678"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "7006652"},
        {"role": "user", "content": "And in words?"},
    ]
    assert [t["function"]["name"] for t in body["tools"]] == ["calculator", "current_time"]
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": CALCULATOR.description,
            "parameters": CALCULATOR.input_schema,
        },
    }

    assert completion.provider == "openai" and completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.stop_reason == "tool_use"
    assert [(c.id, c.name, c.input) for c in completion.tool_calls] == [
        ("call_abc123", "calculator", {"expression": "1234 * 5678"})
    ]
    # prompt_tokens include the cached ones: split into uncached input and cache reads.
    assert completion.usage.input_tokens == 58 and completion.usage.cache_read_input_tokens == 1024
    assert completion.usage.output_tokens == 17


@pytest.mark.parametrize(
    ("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "end_turn")]
)
def test_llm_openai_finish_reasons(finish: str, stop: str) -> None:
    provider, _ = provider_answering(lambda request: httpx2.Response(200, json=text_body("Seven million.", finish)))
    completion = provider.complete(REQUEST)
    assert completion.stop_reason == stop and completion.text == "Seven million."


@pytest.mark.parametrize(
    ("response", "code", "retryable", "retry_after"),
    [
        (
            error(429, "Rate limit reached for gpt-4o-mini", "requests", "rate_limit_exceeded", {"retry-after": "20"}),
            "Llm.RateLimited",
            True,
            20.0,
        ),
        (
            error(429, "Rate limit reached", "tokens", "rate_limit_exceeded", {"retry-after-ms": "1500"}),
            "Llm.RateLimited",
            True,
            1.5,
        ),
        (
            error(429, "You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
            "Llm.Unauthorized",
            False,
            None,
        ),
        (error(500, "The server had an error", "server_error", None), "Llm.Unavailable", True, None),
        (error(503, "The engine is currently overloaded", "server_error", None), "Llm.Overloaded", True, None),
        (
            error(
                400,
                "This model's maximum context length is 128000 tokens",
                "invalid_request_error",
                "context_length_exceeded",
            ),
            "Llm.ContextTooLong",
            False,
            None,
        ),
        (
            error(400, "Invalid 'messages[2].tool_call_id'", "invalid_request_error", None),
            "Llm.BadRequest",
            False,
            None,
        ),
        (
            error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
            "Llm.Unauthorized",
            False,
            None,
        ),
        (httpx2.Response(502, text="<html>Bad Gateway</html>"), "Llm.Unavailable", True, None),
    ],
)
def test_llm_openai_errors_map_to_step_errors(response, code, retryable, retry_after) -> None:
    provider, seen = provider_answering(lambda request: response)
    with pytest.raises(StepError) as raised:
        provider.complete(REQUEST)
    assert (raised.value.code, raised.value.retryable, raised.value.retry_after_s) == (code, retryable, retry_after)
    assert API_KEY not in str(raised.value)
    assert len(seen) == 1  # no SDK retries: Step Functions retries with backoff and jitter


def test_llm_openai_timeouts_connection_errors_and_malformed_bodies() -> None:
    def time_out(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    bad_arguments = json.loads(json.dumps(TOOL_CALL_BODY))
    bad_arguments["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"expression": '
    cases = [
        (time_out, "Llm.Timeout"),
        (refuse, "Llm.Unavailable"),
        (lambda request: httpx2.Response(200, text="<html>not json</html>"), "Llm.Unavailable"),
        (lambda request: httpx2.Response(200, json={"object": "chat.completion", "choices": []}), "Llm.Unavailable"),
        (lambda request: httpx2.Response(200, json=bad_arguments), "Llm.Unavailable"),
    ]
    for respond, code in cases:
        provider, _ = provider_answering(respond)
        with pytest.raises(StepError) as raised:
            provider.complete(REQUEST)
        assert raised.value.code == code and raised.value.retryable is True


@pytest.mark.parametrize("arguments", ['{"expression": "1234 *', '{"expression": "1234"}'])
def test_llm_openai_a_tool_call_cut_at_the_length_limit_is_no_call(arguments: str) -> None:
    # Before, `length` with tool calls became tool_use (a truncated call to run) or, with broken JSON, a
    # retryable failure that the same cut would repeat.
    cut = json.loads(json.dumps(TOOL_CALL_BODY))
    cut["choices"][0]["finish_reason"] = "length"
    cut["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = arguments
    provider, _ = provider_answering(lambda request: httpx2.Response(200, json=cut))

    assert provider.complete(REQUEST).stop_reason == "max_tokens"
    llm = CompletionService(provider, CallDirectly())
    answer = llm.answer(completion_request_event([user("What is 1234 * 5678?")], model="gpt-4o-mini")).data
    assert (answer.stop_reason, answer.tool_calls, answer.text) == ("max_tokens", [], CUT_OFF_NOTES["max_tokens"])
    assert llm.last_report.dropped_tool_calls == 1
