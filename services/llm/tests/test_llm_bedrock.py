"""The Bedrock provider through boto3's real `bedrock-runtime` client, with botocore's Stubber.

The Stubber validates our parameters against the Converse API model and returns responses shaped as
the Converse API reference documents them."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from agentwire_contracts.consumer import StepError
from agentwire_contracts.content import Message, TextBlock, ToolResultBlock, ToolUseBlock
from agentwire_llm.completion import CallDirectly, CompletionService
from agentwire_llm.model import CUT_OFF_NOTES, CompletionRequest
from agentwire_llm.ports import InMemoryReasoningStore
from agentwire_llm.providers.bedrock import BedrockProvider
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber
from llm_testkit import CALCULATOR, CURRENT_TIME, completion_request_event, user

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
REQUEST = CompletionRequest(
    model=MODEL,
    system="Be brief.",
    messages=[
        user("What is 1234 * 5678?"),
        Message(
            role="assistant",
            content=[
                TextBlock(text="Computing."),
                ToolUseBlock(id="tooluse_1", name="calculator", input={"expression": "1234 * 5678"}),
            ],
        ),
        Message(role="user", content=[ToolResultBlock(tool_use_id="tooluse_1", content="7006652")]),
    ],
    tools=[CURRENT_TIME, CALCULATOR],
    max_tokens=300,
    temperature=0.5,
)
EXPECTED_PARAMS = {
    "modelId": MODEL,
    "system": [{"text": "Be brief."}],
    "messages": [
        {"role": "user", "content": [{"text": "What is 1234 * 5678?"}]},
        {
            "role": "assistant",
            "content": [
                {"text": "Computing."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "calculator", "input": {"expression": "1234 * 5678"}}},
            ],
        },
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "7006652"}]}}]},
    ],
    "inferenceConfig": {"maxTokens": 300, "temperature": 0.5},
    "toolConfig": {
        "tools": [
            {
                "toolSpec": {
                    "name": "calculator",
                    "description": CALCULATOR.description,
                    "inputSchema": {"json": CALCULATOR.input_schema},
                }
            },
            {
                "toolSpec": {
                    "name": "current_time",
                    "description": CURRENT_TIME.description,
                    "inputSchema": {"json": CURRENT_TIME.input_schema},
                }
            },
        ]
    },
}


def converse_response(content: list[dict[str, Any]], stop_reason: str, **usage: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 410, "outputTokens": 58, "totalTokens": 468, **usage},
        "metrics": {"latencyMs": 812},
    }


@pytest.fixture
def stubbed() -> Any:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield BedrockProvider(client), stubber
        stubber.assert_no_pending_responses()


def test_llm_bedrock_sends_converse_and_maps_the_tool_use(stubbed) -> None:
    provider, stubber = stubbed
    stubber.add_response(
        "converse",
        converse_response(
            [
                {"text": "Let me check the time."},
                {
                    "toolUse": {
                        "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                        "name": "current_time",
                        "input": {"timezone": "Europe/Paris"},
                    }
                },
            ],
            "tool_use",
            cacheReadInputTokens=256,
            cacheWriteInputTokens=32,
        ),
        EXPECTED_PARAMS,
    )

    completion = provider.complete(REQUEST)

    assert completion.provider == "bedrock" and completion.model == MODEL
    assert completion.stop_reason == "tool_use" and completion.text == "Let me check the time."
    assert [(c.id, c.name, c.input) for c in completion.tool_calls] == [
        ("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "current_time", {"timezone": "Europe/Paris"})
    ]
    usage = completion.usage
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
    ) == (410, 58, 256, 32)


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("end_turn", "end_turn"),
        ("max_tokens", "max_tokens"),
        ("guardrail_intervened", "end_turn"),
        ("model_context_window_exceeded", "max_tokens"),
    ],
)
def test_llm_bedrock_stop_reasons(stubbed, stop: str, expected: str) -> None:
    provider, stubber = stubbed
    stubber.add_response("converse", converse_response([{"text": "7,006,652."}], stop), EXPECTED_PARAMS)
    assert provider.complete(REQUEST).stop_reason == expected


def test_llm_bedrock_cache_points_after_tools_and_system() -> None:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    expected = {
        **EXPECTED_PARAMS,
        "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
        "toolConfig": {
            "tools": [
                *EXPECTED_PARAMS["toolConfig"]["tools"],  # type: ignore[index]
                {"cachePoint": {"type": "default"}},
            ]
        },
    }
    with Stubber(client) as stubber:
        stubber.add_response("converse", converse_response([{"text": "ok"}], "end_turn"), expected)
        BedrockProvider(client, cache_prompt=True).complete(REQUEST)
        # A family without prompt caching gets none (Bedrock would reject the request).
        llama = REQUEST.model_copy(update={"model": "meta.llama3-3-70b-instruct-v1:0"})
        stubber.add_response(
            "converse", converse_response([{"text": "ok"}], "end_turn"), {**EXPECTED_PARAMS, "modelId": llama.model}
        )
        BedrockProvider(client, cache_prompt=True).complete(llama)
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("error_code", "status", "message", "code", "retryable"),
    [
        ("ThrottlingException", 429, "Too many requests, please wait before trying again.", "Llm.RateLimited", True),
        ("ServiceUnavailableException", 503, "Service is temporarily unavailable.", "Llm.Overloaded", True),
        ("ModelNotReadyException", 429, "The model is not ready.", "Llm.Overloaded", True),
        ("ModelTimeoutException", 408, "Model has timed out in processing the request.", "Llm.Timeout", True),
        ("InternalServerException", 500, "Internal server error.", "Llm.Unavailable", True),
        ("ValidationException", 400, "Input is too long for requested model.", "Llm.ContextTooLong", False),
        ("ValidationException", 400, "The provided model identifier is invalid.", "Llm.BadRequest", False),
        ("AccessDeniedException", 403, "You don't have access to the model.", "Llm.Unauthorized", False),
    ],
)
def test_llm_bedrock_errors_map_to_step_errors(stubbed, error_code, status, message, code, retryable) -> None:
    provider, stubber = stubbed
    stubber.add_client_error(
        "converse",
        service_error_code=error_code,
        service_message=message,
        http_status_code=status,
        expected_params=EXPECTED_PARAMS,
    )
    with pytest.raises(StepError) as raised:
        provider.complete(REQUEST)
    assert (raised.value.code, raised.value.retryable) == (code, retryable)


def test_llm_bedrock_timeouts_and_malformed_responses() -> None:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")

    def time_out(**kwargs: Any) -> Any:
        raise ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com")

    client.converse = time_out  # type: ignore[method-assign]
    with pytest.raises(StepError) as raised:
        BedrockProvider(client).complete(REQUEST)
    assert raised.value.code == "Llm.Timeout" and raised.value.retryable

    for malformed in (
        {"output": {}, "stopReason": "end_turn", "usage": {}},
        {"output": {"message": {"role": "assistant", "content": [{"toolUse": {"name": "x"}}]}}},
    ):
        client.converse = lambda **kwargs: malformed  # type: ignore[method-assign]  # noqa: B023
        with pytest.raises(StepError) as raised:
            BedrockProvider(client).complete(REQUEST)
        assert raised.value.code == "Llm.Unavailable"


def test_llm_bedrock_a_reasoned_turn_goes_back_with_its_reasoning_blocks(stubbed) -> None:
    """Converse `reasoningContent` (text with its signature, and a redacted blob) is kept as the turn's native
    content and sent back as it came in the next request of the loop; the Stubber checks it against the
    Converse model (the blob must be bytes again)."""
    from agentwire_llm.model import turn_digest

    provider, stubber = stubbed
    reasoning = [
        {"reasoningContent": {"reasoningText": {"text": "Use the clock.", "signature": "c2lnbmF0dXJl"}}},
        {"reasoningContent": {"redactedContent": b"\x00\x01opaque"}},
    ]
    tool_use = {"toolUse": {"toolUseId": "tooluse_r1", "name": "current_time", "input": {"timezone": "UTC"}}}
    stubber.add_response("converse", converse_response([*reasoning, {"text": "Checking."}, tool_use], "tool_use"))
    first_request = CompletionRequest(model=MODEL, messages=[user("What time is it?")], tools=[CURRENT_TIME])
    first = provider.complete(first_request)
    assert [block.type for block in first.message.content] == ["text", "tool_use"]
    assert first.native_content is not None
    json_safe = first.native_content  # what the reasoning store keeps (bytes as base64)
    assert json_safe[1] == {"reasoningContent": {"redactedContent": {"__base64__": "AAFvcGFxdWU="}}}

    loop = [
        user("What time is it?"),
        first.message,
        Message(role="user", content=[ToolResultBlock(tool_use_id="tooluse_r1", content="12:00")]),
    ]
    expected_messages = [
        {"role": "user", "content": [{"text": "What time is it?"}]},
        {"role": "assistant", "content": [*reasoning, {"text": "Checking."}, tool_use]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_r1", "content": [{"text": "12:00"}]}}]},
    ]
    stubber.add_response(
        "converse",
        converse_response([{"text": "It is noon."}], "end_turn"),
        {
            "modelId": MODEL,
            "messages": expected_messages,
            "inferenceConfig": {"maxTokens": 1024},
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "name": "current_time",
                            "description": CURRENT_TIME.description,
                            "inputSchema": {"json": CURRENT_TIME.input_schema},
                        }
                    }
                ]
            },
        },
    )
    second = CompletionRequest(
        model=MODEL, messages=loop, tools=[CURRENT_TIME], native_turns={turn_digest(first.message): json_safe}
    )
    assert provider.complete(second).text == "It is noon."


def test_llm_bedrock_a_tool_call_cut_at_max_tokens_is_no_call_and_the_next_turn_is_valid(stubbed) -> None:
    """Converse cut while the model reasoned and began a tool call: the answer keeps neither the call nor
    its reasoning, and the next request of the session (checked against the Converse model) carries the
    turn as a note, not a toolUse without its toolResult and not an empty assistant message."""
    provider, stubber = stubbed
    cut = [
        {"reasoningContent": {"reasoningText": {"text": "Use the calculator.", "signature": "c2ln"}}},
        {"toolUse": {"toolUseId": "tooluse_cut", "name": "calculator", "input": {}}},
    ]
    stubber.add_response("converse", converse_response(cut, "max_tokens"))
    reasoning = InMemoryReasoningStore()
    llm = CompletionService(provider, CallDirectly(), reasoning=reasoning)

    first = llm.answer(completion_request_event([user("What is 1234 * 5678?")], model=MODEL, tools=[])).data

    assert first.stop_reason == "max_tokens" and first.tool_calls == []
    assert first.text == CUT_OFF_NOTES["max_tokens"] and reasoning.turns == {}
    history = [user("What is 1234 * 5678?"), first.message, user("Go on.")]
    stubber.add_response(
        "converse",
        converse_response([{"text": "7,006,652."}], "end_turn"),
        {
            "modelId": MODEL,
            "system": [{"text": "You are a helpful assistant."}],
            "messages": [
                {"role": "user", "content": [{"text": "What is 1234 * 5678?"}]},
                {"role": "assistant", "content": [{"text": CUT_OFF_NOTES["max_tokens"]}]},
                {"role": "user", "content": [{"text": "Go on."}]},
            ],
            "inferenceConfig": {"maxTokens": 512},
        },
    )
    second = llm.answer(completion_request_event(history, model=MODEL, step=1, tools=[])).data
    assert second.text == "7,006,652."
