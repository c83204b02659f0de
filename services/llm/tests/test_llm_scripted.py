"""The scripted provider: Anthropic response and error bodies, order, exhaustion, the shared cursor."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentwire_contracts.consumer import StepError
from agentwire_llm.adapters.script_cursor import DynamoDbScriptCursor
from agentwire_llm.model import CompletionRequest
from agentwire_llm.providers.factory import MisconfiguredProvider, build_provider
from agentwire_llm.providers.scripted import InMemoryScriptCursor, Script, ScriptedProvider
from agentwire_llm.settings import LlmSettings
from llm_testkit import STATE_TABLE, error_response, text_response, user, write_script

REQUEST = CompletionRequest(model="claude-test", messages=[user("hello")])

TOOL_USE_RESPONSE = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "content": [
        {"type": "text", "text": "I'll calculate that."},
        {
            "type": "tool_use",
            "id": "toolu_01A09q90qw90lq917835lq9",
            "name": "calculator",
            "input": {"expression": "1234 * 5678"},
        },
    ],
    "model": "claude-sonnet-4-5-20250929",
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 472,
        "output_tokens": 91,
        "cache_creation_input_tokens": 120,
        "cache_read_input_tokens": 2048,
    },
}


def scripted(*entries: dict) -> ScriptedProvider:
    return ScriptedProvider(Script.from_entries(list(entries)), InMemoryScriptCursor())


def test_llm_scripted_maps_a_text_response() -> None:
    completion = scripted(text_response("Hello there!", input_tokens=12, output_tokens=4)).complete(REQUEST)
    assert completion.text == "Hello there!"
    assert completion.stop_reason == "end_turn"
    assert completion.tool_calls == []
    assert completion.usage.input_tokens == 12 and completion.usage.output_tokens == 4
    assert completion.model == "claude-sonnet-4-5-20250929"
    assert completion.provider == "scripted"


def test_llm_scripted_maps_tool_use_and_cache_usage() -> None:
    completion = scripted(TOOL_USE_RESPONSE).complete(REQUEST)
    assert completion.stop_reason == "tool_use"
    assert completion.text == "I'll calculate that."
    [call] = completion.tool_calls
    assert (call.id, call.name, call.input) == (
        "toolu_01A09q90qw90lq917835lq9",
        "calculator",
        {"expression": "1234 * 5678"},
    )
    assert completion.usage.model_dump() == {
        "input_tokens": 472,
        "output_tokens": 91,
        "cache_creation_input_tokens": 120,
        "cache_read_input_tokens": 2048,
    }


def test_llm_scripted_drops_unknown_blocks_and_normalizes_stop_reasons() -> None:
    body = text_response("ok")
    body["content"].insert(0, {"type": "thinking", "thinking": "hmm", "signature": "x"})
    body["stop_reason"] = "pause_turn"
    del body["model"]
    completion = scripted(body).complete(REQUEST)
    assert [block.type for block in completion.message.content] == ["text"]
    assert completion.stop_reason == "end_turn"
    assert completion.model == "claude-test"


@pytest.mark.parametrize(
    ("error_type", "message", "code", "retryable"),
    [
        ("overloaded_error", "Overloaded", "Llm.Overloaded", True),
        ("rate_limit_error", "Number of request tokens has exceeded your rate limit", "Llm.RateLimited", True),
        ("api_error", "Internal server error", "Llm.Unavailable", True),
        ("invalid_request_error", "messages: roles must alternate", "Llm.BadRequest", False),
        ("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum", "Llm.ContextTooLong", False),
        ("authentication_error", "invalid x-api-key", "Llm.Unauthorized", False),
    ],
)
def test_llm_scripted_error_bodies_map_to_step_errors(error_type, message, code, retryable) -> None:
    with pytest.raises(StepError) as raised:
        scripted(error_response(error_type, message)).complete(REQUEST)
    assert raised.value.code == code
    assert raised.value.retryable is retryable
    assert message in raised.value.message


def test_llm_scripted_rate_limit_can_carry_retry_after() -> None:
    entry = {**error_response("rate_limit_error"), "retry_after_s": 7}
    with pytest.raises(StepError) as raised:
        scripted(entry).complete(REQUEST)
    assert raised.value.retry_after_s == 7.0


def test_llm_scripted_entries_are_used_in_order_then_exhausted() -> None:
    provider = scripted(text_response("one"), error_response("overloaded_error"), text_response("three"))
    assert provider.complete(REQUEST).text == "one"
    with pytest.raises(StepError, match="Llm.Overloaded"):
        provider.complete(REQUEST)
    assert provider.complete(REQUEST).text == "three"
    with pytest.raises(StepError) as raised:
        provider.complete(REQUEST)
    assert raised.value.code == "Llm.ScriptExhausted"
    assert raised.value.retryable is False
    assert "has 3 entries" in raised.value.message and "index 3" in raised.value.message


def test_llm_dynamodb_cursor_is_shared_between_processes(dynamodb) -> None:
    script = Script.from_entries([text_response(str(i)) for i in range(4)])
    # Two cursors on one table stand for two worker processes.
    worker_a = ScriptedProvider(script, DynamoDbScriptCursor(dynamodb, STATE_TABLE, script.fingerprint))
    worker_b = ScriptedProvider(script, DynamoDbScriptCursor(dynamodb, STATE_TABLE, script.fingerprint))
    texts = [
        worker_a.complete(REQUEST).text,
        worker_b.complete(REQUEST).text,
        worker_b.complete(REQUEST).text,
        worker_a.complete(REQUEST).text,
    ]
    assert texts == ["0", "1", "2", "3"]
    with pytest.raises(StepError, match="Llm.ScriptExhausted"):
        worker_b.complete(REQUEST)
    item = dynamodb.get_item(TableName=STATE_TABLE, Key={"pk": {"S": "script-cursor"}, "sk": {"S": script.fingerprint}})
    assert item["Item"]["calls"]["N"] == "5"
    assert int(item["Item"]["expires_at"]["N"]) > 0


def test_llm_dynamodb_cursor_starts_afresh_for_another_script(dynamodb) -> None:
    first = Script.from_entries([text_response("a")])
    second = Script.from_entries([text_response("b")])
    assert first.fingerprint != second.fingerprint
    DynamoDbScriptCursor(dynamodb, STATE_TABLE, first.fingerprint).next_index()
    assert DynamoDbScriptCursor(dynamodb, STATE_TABLE, second.fingerprint).next_index() == 0


def test_llm_script_file_is_loaded_and_validated(tmp_path: Path) -> None:
    path = write_script(tmp_path / "script.json", [text_response("from file")])
    assert Script.load(path).entries[0]["content"][0]["text"] == "from file"
    (tmp_path / "bad.json").write_text('[{"type": "nonsense"}]')
    with pytest.raises(StepError, match="Llm.ScriptInvalid"):
        Script.load(tmp_path / "bad.json")
    with pytest.raises(StepError, match="Llm.ScriptInvalid"):
        Script.load(tmp_path / "missing.json")


def test_llm_factory_picks_the_provider_from_settings(tmp_path: Path) -> None:
    def no_cursor(script: Script) -> InMemoryScriptCursor:
        return InMemoryScriptCursor()

    assert build_provider(LlmSettings(), no_cursor).name == "offline"
    assert build_provider(LlmSettings(ANTHROPIC_API_KEY=""), no_cursor).name == "offline"
    assert build_provider(LlmSettings(ANTHROPIC_API_KEY="sk-ant-test"), no_cursor).name == "anthropic"
    path = write_script(tmp_path / "s.json", [text_response("scripted!")])
    provider = build_provider(LlmSettings(AGENTWIRE_LLM_PROVIDER="scripted", AGENTWIRE_LLM_SCRIPT=str(path)), no_cursor)
    assert provider.complete(REQUEST).text == "scripted!"

    # A broken configuration answers each call with a clear code instead of crashing the worker.
    broken = build_provider(LlmSettings(AGENTWIRE_LLM_PROVIDER="scripted"), no_cursor)
    assert isinstance(broken, MisconfiguredProvider)
    with pytest.raises(StepError, match="AGENTWIRE_LLM_SCRIPT is not set"):
        broken.complete(REQUEST)
