"""An answer that did not stop to make its tool calls (cut at max_tokens, a stop sequence, a refusal) keeps
none of them: a call without a result in the transcript breaks every later turn of the session."""

from __future__ import annotations

from typing import Any

import pytest
from agentwire_contracts.content import Message, TextBlock, ToolUseBlock, Usage
from agentwire_llm.completion import CallDirectly, CompletionService
from agentwire_llm.model import (
    CUT_OFF_NOTES,
    EMPTY_ANSWER_NOTE,
    Completion,
    CompletionRequest,
    StopReason,
    only_finished_tool_calls,
)
from agentwire_llm.ports import InMemoryReasoningStore
from agentwire_llm.providers import anthropic_format, bedrock_format, openai_format
from llm_testkit import completion_request_event, user

MODEL = "claude-sonnet-5-5"
PARTIAL_CALL = ToolUseBlock(id="toolu_cut", name="calculator", input={"expression": "1234 *"})
THINKING = [{"type": "thinking", "thinking": "Let me call the calculator.", "signature": "sig"}]


def completion(stop_reason: StopReason, *content: TextBlock | ToolUseBlock, native: Any = None) -> Completion:
    return Completion(
        message=Message(role="assistant", content=list(content)),
        stop_reason=stop_reason,
        usage=Usage(input_tokens=300, output_tokens=256),
        model=MODEL,
        provider="anthropic",
        native_content=native,
    )


def test_llm_a_call_cut_at_max_tokens_is_dropped_and_the_text_kept() -> None:
    cut = completion("max_tokens", TextBlock(text="I'll compute that."), PARTIAL_CALL, native=THINKING)

    kept, dropped = only_finished_tool_calls(cut)

    assert dropped == 1
    assert kept.message.content == [TextBlock(text="I'll compute that.")] and kept.tool_calls == []
    assert (kept.stop_reason, kept.usage, kept.model) == ("max_tokens", cut.usage, MODEL)  # what it cost is unchanged
    # The reasoning no longer matches the message, and only a tool loop needs it back.
    assert kept.native_content is None


@pytest.mark.parametrize("stop_reason", ["max_tokens", "stop_sequence", "end_turn"])
def test_llm_an_answer_left_empty_says_why_and_every_provider_accepts_it_next_turn(stop_reason: StopReason) -> None:
    kept, dropped = only_finished_tool_calls(completion(stop_reason, TextBlock(text=" "), PARTIAL_CALL))

    assert dropped == 1
    assert kept.message.content == [TextBlock(text=CUT_OFF_NOTES[stop_reason])]
    # The turn goes back in the session's next request: no provider takes an empty assistant message.
    anthropic = anthropic_format.message_param(kept.message)
    assert anthropic["content"] and all(block["type"] == "text" and block["text"] for block in anthropic["content"])
    assert bedrock_format.message_param(kept.message)["content"] == [{"text": CUT_OFF_NOTES[stop_reason]}]
    assert openai_format.message_params(kept.message) == [{"role": "assistant", "content": CUT_OFF_NOTES[stop_reason]}]


def test_llm_a_call_the_model_stopped_for_is_kept_untouched() -> None:
    call = completion("tool_use", TextBlock(text="Computing."), PARTIAL_CALL, native=THINKING)
    assert only_finished_tool_calls(call) == (call, 0)


def test_llm_an_answer_cut_before_it_said_anything_says_it_was_cut() -> None:
    # All of max_tokens spent reasoning: the formats give one empty text block, which no provider accepts back.
    silent, dropped = only_finished_tool_calls(completion("max_tokens", TextBlock(text=""), native=THINKING))
    assert dropped == 0 and silent.text == CUT_OFF_NOTES["max_tokens"] and silent.native_content is None
    # A finished text answer stays as it is, cut or not.
    finished_answers = (
        completion("end_turn", TextBlock(text="Done.")),
        completion("max_tokens", TextBlock(text="Half")),
    )
    for finished in finished_answers:
        assert only_finished_tool_calls(finished) == (finished, 0)


@pytest.mark.parametrize("stop_reason", ["end_turn", "stop_sequence"])
def test_llm_an_answer_that_finished_without_a_word_says_so_and_every_provider_accepts_it_next_turn(
    stop_reason: StopReason,
) -> None:
    """E.g. end_turn right after a tool result: kept empty, the next request of the session is refused."""
    empty, dropped = only_finished_tool_calls(completion(stop_reason, TextBlock(text="")))
    assert dropped == 0 and empty.message.content == [TextBlock(text=EMPTY_ANSWER_NOTE)]
    assert anthropic_format.message_param(empty.message)["content"] == [{"type": "text", "text": EMPTY_ANSWER_NOTE}]
    assert bedrock_format.message_param(empty.message)["content"] == [{"text": EMPTY_ANSWER_NOTE}]
    assert only_finished_tool_calls(empty) == (empty, 0)


def test_llm_dropping_unfinished_calls_is_idempotent() -> None:
    once, _ = only_finished_tool_calls(completion("max_tokens", PARTIAL_CALL, PARTIAL_CALL))
    assert only_finished_tool_calls(once) == (once, 0)


class CutProvider:
    name = "anthropic"

    def __init__(self, answer: Completion) -> None:
        self.answer = answer

    def complete(self, request: CompletionRequest) -> Completion:
        return self.answer


class DictCache:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Completion] = {}

    def get(self, tenant_id: str, key: str) -> Completion | None:
        return self.items.get((tenant_id, key))

    def put(self, tenant_id: str, key: str, completion: Completion) -> None:
        self.items[(tenant_id, key)] = completion


def test_llm_service_answers_and_keeps_only_the_finished_turn() -> None:
    cut = completion("max_tokens", TextBlock(text="I'll compute that."), PARTIAL_CALL, native=THINKING)
    reasoning, cache = InMemoryReasoningStore(), DictCache()
    llm = CompletionService(CutProvider(cut), CallDirectly(), reasoning=reasoning, response_cache=cache)
    event = completion_request_event([user("1234 * 5678?")], model=MODEL, temperature=0, cache_responses=True)

    data = llm.answer(event).data

    assert data.stop_reason == "max_tokens" and data.tool_calls == [] and data.message.tool_uses() == []
    assert data.text == "I'll compute that." and data.usage == cut.usage and data.cost_microusd > 0
    assert llm.last_report.dropped_tool_calls == 1  # for the handler's warning
    # Nothing kept holds the partial call: not its reasoning, not the cached answer.
    assert reasoning.turns == {}
    [cached] = cache.items.values()
    assert cached.message == data.message
