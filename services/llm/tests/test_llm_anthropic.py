"""The Anthropic provider against documented Messages API bodies, served by an in-memory transport.

The SDK talks through httpx2 (which respx does not intercept), so the fake is httpx2's own
MockTransport: the real SDK builds the real request and parses the real response.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from agentwire_contracts.consumer import StepError
from agentwire_contracts.content import Message, ToolResultBlock, ToolUseBlock
from agentwire_llm.completion import CallDirectly, CompletionService
from agentwire_llm.model import CUT_OFF_NOTES, CompletionRequest
from agentwire_llm.providers.anthropic import AnthropicProvider
from agentwire_llm.settings import LlmSettings
from llm_testkit import CALCULATOR, completion_request_event, user

API_KEY = "sk-ant-test-not-a-real-key"

# The tool_use example response of the Messages API documentation.
TOOL_USE_BODY = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "text", "text": "I'll use the calculator."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "calculator",
            "input": {"expression": "1234 * 5678"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 384,
        "output_tokens": 62,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 256,
    },
}

REQUEST = CompletionRequest(
    model="claude-sonnet-5-5",
    system="Be brief.",
    messages=[
        user("What is 1234 * 5678?"),
        Message(
            role="assistant",
            content=[ToolUseBlock(id="toolu_1", name="calculator", input={"expression": "1234 * 5678"})],
        ),
        Message(role="user", content=[ToolResultBlock(tool_use_id="toolu_1", content="7006652")]),
    ],
    tools=[CALCULATOR],
    max_tokens=256,
    temperature=0.2,
)


def provider_answering(respond: Callable[[httpx2.Request], httpx2.Response]) -> tuple[AnthropicProvider, list]:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return respond(request)

    settings = LlmSettings(ANTHROPIC_API_KEY=API_KEY, AGENTWIRE_LLM_PROVIDER="anthropic")
    provider = AnthropicProvider.from_settings(
        settings, http_client=httpx2.Client(transport=httpx2.MockTransport(handler))
    )
    return provider, seen


def error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> httpx2.Response:
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_011"}
    return httpx2.Response(status, json=body, headers=headers or {})


def test_llm_anthropic_sends_the_request_and_maps_the_answer() -> None:
    provider, seen = provider_answering(lambda request: httpx2.Response(200, json=TOOL_USE_BODY))

    completion = provider.complete(REQUEST)

    [sent] = seen
    assert sent.method == "POST" and sent.url.path == "/v1/messages"
    assert API_KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "").removeprefix("Bearer "))
    assert "anthropic-version" in sent.headers
    body: dict[str, Any] = json.loads(sent.content)
    assert body["model"] == "claude-sonnet-5-5" and body["max_tokens"] == 256
    ephemeral = {"type": "ephemeral"}
    assert body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": ephemeral}]
    assert "temperature" not in body  # rejected by the API version the SDK speaks
    assert body["tools"] == [
        {
            "name": "calculator",
            "description": CALCULATOR.description,
            "input_schema": CALCULATOR.input_schema,
            "cache_control": ephemeral,
        }
    ]
    assert body["messages"][1]["content"][0] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "calculator",
        "input": {"expression": "1234 * 5678"},
    }
    # Breakpoints: the newest message and the user message before it.
    assert body["messages"][2]["content"][-1]["cache_control"] == ephemeral
    assert body["messages"][0]["content"][-1]["cache_control"] == ephemeral
    assert "cache_control" not in body["messages"][1]["content"][-1]
    assert body["messages"][2]["content"][0]["type"] == "tool_result"
    assert body["messages"][2]["content"][0]["tool_use_id"] == "toolu_1"

    assert completion.provider == "anthropic"
    assert completion.model == "claude-sonnet-4-5-20250929"
    assert completion.stop_reason == "tool_use"
    assert [(c.id, c.name, c.input) for c in completion.tool_calls] == [
        ("toolu_01A09q90qw90lq917835lq9", "calculator", {"expression": "1234 * 5678"})
    ]
    assert completion.usage.input_tokens == 384 and completion.usage.cache_read_input_tokens == 256


@pytest.mark.parametrize(
    ("response", "code", "retryable", "retry_after"),
    [
        (
            error(429, "rate_limit_error", "Number of requests has exceeded your rate limit", {"retry-after": "12"}),
            "Llm.RateLimited",
            True,
            12.0,
        ),
        (error(529, "overloaded_error", "Overloaded"), "Llm.Overloaded", True, None),
        (error(500, "api_error", "Internal server error"), "Llm.Unavailable", True, None),
        (
            error(400, "invalid_request_error", "prompt is too long: 215000 tokens > 200000 maximum"),
            "Llm.ContextTooLong",
            False,
            None,
        ),
        (error(400, "invalid_request_error", "messages.1: tool_use ids must be unique"), "Llm.BadRequest", False, None),
        (error(401, "authentication_error", "invalid x-api-key"), "Llm.Unauthorized", False, None),
        (httpx2.Response(502, text="<html>Bad Gateway</html>"), "Llm.Unavailable", True, None),
        (httpx2.Response(529, text="overloaded"), "Llm.Overloaded", True, None),
    ],
)
def test_llm_anthropic_errors_map_to_step_errors(response, code, retryable, retry_after) -> None:
    provider, seen = provider_answering(lambda request: response)
    with pytest.raises(StepError) as raised:
        provider.complete(REQUEST)
    assert (raised.value.code, raised.value.retryable, raised.value.retry_after_s) == (code, retryable, retry_after)
    assert API_KEY not in str(raised.value)
    assert len(seen) == 1  # the SDK does not retry: Step Functions does, with backoff and jitter


def test_llm_anthropic_timeout_and_connection_errors() -> None:
    def time_out(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    for respond, code in ((time_out, "Llm.Timeout"), (refuse, "Llm.Unavailable")):
        provider, _ = provider_answering(respond)
        with pytest.raises(StepError) as raised:
            provider.complete(REQUEST)
        assert raised.value.code == code and raised.value.retryable is True


def cut_short_body(stop_reason: str) -> dict[str, Any]:
    """A documented Messages API answer that stopped before the model finished (text only)."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5-5",
        "content": [{"type": "text", "text": "The product of 1234 and 5678 is, worked out step by"}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 412, "output_tokens": 256},
    }


@pytest.mark.parametrize("stop_reason", ["max_tokens", "model_context_window_exceeded"])
def test_llm_anthropic_an_answer_cut_short_is_max_tokens(stop_reason: str) -> None:
    # model_context_window_exceeded is the window, not the request's max_tokens, that cut the answer: the
    # run must not take it for a finished turn (Bedrock maps it the same way).
    provider, _ = provider_answering(lambda request: httpx2.Response(200, json=cut_short_body(stop_reason)))

    completion = provider.complete(REQUEST)

    assert completion.stop_reason == "max_tokens"
    assert completion.message.content[0].text == "The product of 1234 and 5678 is, worked out step by"  # type: ignore[union-attr]
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (412, 256)


def cut_tool_use_body(*content: dict[str, Any]) -> dict[str, Any]:
    """A Messages API answer cut at max_tokens while the model was writing a tool call."""
    return {**cut_short_body("max_tokens"), "content": list(content)}


PARTIAL_TOOL_USE = {"type": "tool_use", "id": "toolu_01Cut", "name": "calculator", "input": {"expression": "1234 *"}}


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ([{"type": "text", "text": "I'll use the calculator."}, PARTIAL_TOOL_USE], "I'll use the calculator."),
        ([PARTIAL_TOOL_USE], CUT_OFF_NOTES["max_tokens"]),
    ],
)
def test_llm_anthropic_a_tool_call_cut_at_max_tokens_is_no_call_and_the_next_turn_is_valid(content, said) -> None:
    answers = iter([cut_tool_use_body(*content), cut_short_body("end_turn")])
    provider, seen = provider_answering(lambda request: httpx2.Response(200, json=next(answers)))
    llm = CompletionService(provider, CallDirectly())

    first = llm.answer(completion_request_event([user("What is 1234 * 5678?")], model="claude-sonnet-5-5")).data

    assert first.stop_reason == "max_tokens" and first.tool_calls == [] and first.message.tool_uses() == []
    assert first.text == said and first.usage.output_tokens == 256
    # The session's next turn (memory appends the answer as it came) is one the API accepts: no tool_use
    # without its tool_result, and no assistant message without content.
    history = [user("What is 1234 * 5678?"), first.message, user("Go on.")]
    llm.answer(completion_request_event(history, model="claude-sonnet-5-5", step=1))
    sent = json.loads(seen[1].content)["messages"][1]
    assert sent["role"] == "assistant"
    assert [(block["type"], block["text"]) for block in sent["content"]] == [("text", said)]
