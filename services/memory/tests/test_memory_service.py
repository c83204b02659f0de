"""The context use case: what is appended, answered and published, and how failures are answered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from agentwire_contracts.consumer import StepError
from agentwire_contracts.content import Message, TextBlock, ToolResultBlock, ToolUseBlock
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.memory import (
    MemoryContextFailed,
    MemoryContextReady,
    MemoryContextRequested,
    MemoryMessageAppended,
)
from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.ports import StoreUnavailable
from agentwire_memory.service import CONTEXT_TOO_LARGE, answer_context_request, serve_context_request
from agentwire_memory.transcript import AppendKey, AppendOutcome, SessionRef, TranscriptEntry

TABLE = "agentwire-memory-main"


def user(text: str) -> Message:
    return Message(role="user", content=[TextBlock(text=text)])


def request(
    step: int, append: list[Message], *, include_context: bool = True, run_id: str = "run-1", **extra: Any
) -> Event[MemoryContextRequested]:
    data = MemoryContextRequested(session_id="s1", step=step, append=append, include_context=include_context, **extra)
    return Event.create(data, tenant_id="acme", run_id=run_id, causation_id="req-0", task_token=f"token-{step}")


@pytest.fixture
def store(dynamodb: Any) -> DynamoTranscriptStore:
    return DynamoTranscriptStore(dynamodb, TABLE, sleep=lambda _: None)


def test_first_step_appends_the_user_message_and_returns_it_as_context(store: DynamoTranscriptStore) -> None:
    result = serve_context_request(request(0, [user("hello")]), store)

    assert result.ready.messages == [user("hello")]
    assert (result.ready.appended, result.ready.message_count, result.ready.step) == (1, 1, 0)
    assert result.appended is not None
    assert [(m.seq, m.message) for m in result.appended.messages] == [(1, user("hello"))]


def test_tool_turn_and_final_answer_flow(store: DynamoTranscriptStore) -> None:
    call = Message(role="assistant", content=[ToolUseBlock(id="t1", name="calc", input={"e": "6*7"})])
    result_msg = Message(role="user", content=[ToolResultBlock(tool_use_id="t1", content="42")])
    answer = Message(role="assistant", content=[TextBlock(text="42")])
    serve_context_request(request(0, [user("6*7?")]), store)

    loaded = serve_context_request(request(1, [call, result_msg]), store)
    saved = serve_context_request(request(2, [answer], include_context=False), store)

    assert loaded.ready.messages == [user("6*7?"), call, result_msg]
    assert saved.ready.messages == [] and saved.ready.appended == 1 and saved.ready.message_count == 4
    assert [m.seq for m in saved.appended.messages] == [4]  # type: ignore[union-attr]


def test_empty_append_writes_nothing_and_answers_the_current_transcript(store: DynamoTranscriptStore) -> None:
    serve_context_request(request(0, [user("hello")]), store)

    result = serve_context_request(request(1, [], run_id="run-2"), store)

    assert result.appended is None
    assert (result.ready.appended, result.ready.message_count) == (0, 1)
    assert result.ready.messages == [user("hello")]


def test_a_redelivered_request_answers_the_same_even_after_other_appends(store: DynamoTranscriptStore) -> None:
    first = serve_context_request(request(0, [user("mine")]), store)
    serve_context_request(request(0, [user("another run's")], run_id="run-2"), store)

    again = serve_context_request(request(0, [user("mine")]), store)

    assert again.outcome.duplicate
    assert again.ready.model_dump(exclude={"duration_ms"}) == first.ready.model_dump(exclude={"duration_ms"})
    assert again.appended == first.appended
    assert store.message_count(SessionRef("acme", "s1")) == 2


def test_max_context_tokens_trims_to_the_newest_clean_turns(store: DynamoTranscriptStore) -> None:
    for step, text in enumerate(["a" * 400, "b" * 400, "c"]):
        serve_context_request(request(step, [user(text)]), store)

    result = serve_context_request(request(3, [], max_context_tokens=50), store)

    assert [m.text() for m in result.ready.messages] == ["c"]
    assert result.ready.message_count == 3


def test_the_models_window_caps_the_budget_after_the_answer_and_the_tool_specs(
    store: DynamoTranscriptStore,
) -> None:
    # 20 turns of ~1,008 tokens each. The agent's budget (100,000) would take them all, but its model
    # holds 8,000 tokens, of which the answer needs 4,096 and the tool specs 900: 3,004 are left, and
    # with the 3-token system prompt exactly two turns fit.
    for step in range(20):
        serve_context_request(request(step, [user(f"{step:02d} " + "x" * 3500)]), store)
    window = {"max_context_tokens": 100_000, "system": "Be brief.", "tools_tokens": 900, "max_output_tokens": 4_096}

    capped = serve_context_request(request(20, [], model_context_tokens=8_000, **window), store).ready
    uncapped = serve_context_request(request(21, [], **window), store).ready

    assert capped.budget_tokens == 8_000 - 4_096 - 900
    assert [m.text()[:2] for m in capped.messages] == ["18", "19"]
    assert capped.context_tokens + 4_096 + 900 <= 8_000
    assert uncapped.budget_tokens == 100_000 and len(uncapped.messages) == 20


def test_a_budget_below_what_the_model_leaves_is_kept(store: DynamoTranscriptStore) -> None:
    ready = serve_context_request(
        request(0, [user("hi")], max_context_tokens=2_000, model_context_tokens=200_000, max_output_tokens=4_096),
        store,
    ).ready

    assert ready.budget_tokens == 2_000 and ready.messages == [user("hi")]


def test_an_answer_and_tools_that_fill_the_models_window_fail_before_anything_is_written(
    store: DynamoTranscriptStore,
) -> None:
    doomed = request(0, [user("hi")], model_context_tokens=4_096, max_output_tokens=4_000, tools_tokens=96)

    with pytest.raises(StepError) as raised:
        serve_context_request(doomed, store)

    assert raised.value.code == CONTEXT_TOO_LARGE
    assert "4096-token window" in raised.value.message
    assert store.message_count(SessionRef("acme", "s1")) == 0


class UnavailableStore:
    def append(self, session: SessionRef, key: AppendKey, messages: Sequence[Message], **_: object) -> AppendOutcome:
        raise StoreUnavailable("DynamoDB: ProvisionedThroughputExceededException")

    def read(self, session: SessionRef, *, up_to_seq: int | None = None) -> list[TranscriptEntry]:
        raise StoreUnavailable("DynamoDB: ThrottlingException")

    def message_count(self, session: SessionRef) -> int:
        raise StoreUnavailable("DynamoDB: ThrottlingException")

    def delete_session(self, session: SessionRef) -> int:
        raise StoreUnavailable("DynamoDB: ThrottlingException")


def test_an_unavailable_store_is_answered_with_a_retryable_memory_unavailable(publisher: Any) -> None:
    event = request(0, [user("hello")])

    published, result = answer_context_request(event, UnavailableStore(), publisher)

    assert result is None
    assert publisher.calls == [published]
    (failed,) = published
    assert isinstance(failed.data, MemoryContextFailed)
    assert failed.data.code == "Memory.Unavailable" and failed.data.retryable
    assert failed.metadata.task_token == "token-0"
    assert failed.metadata.causation_id == event.metadata.event_id


def test_answer_publishes_the_appended_event_and_the_answer_in_one_call(
    store: DynamoTranscriptStore, publisher: Any
) -> None:
    event = request(0, [user("hello")])

    answer_context_request(event, store, publisher)

    (call,) = publisher.calls
    appended, ready = call
    assert isinstance(appended.data, MemoryMessageAppended) and isinstance(ready.data, MemoryContextReady)
    assert appended.metadata.task_token is None  # a fact for the gateway, not the step's answer
    assert ready.metadata.task_token == "token-0"
    assert appended.metadata.causation_id == ready.metadata.causation_id == event.metadata.event_id
    assert appended.metadata.run_id == ready.metadata.run_id == "run-1"


def test_an_append_over_the_transaction_limit_is_a_typed_failure(store: DynamoTranscriptStore) -> None:
    from agentwire_contracts.consumer import StepError

    with pytest.raises(StepError) as raised:
        serve_context_request(request(0, [user(str(i)) for i in range(99)]), store)

    assert raised.value.code == "Memory.AppendTooLarge" and not raised.value.retryable
    assert store.message_count(SessionRef("acme", "s1")) == 0


def test_a_context_too_big_to_travel_inline_keeps_the_newest_clean_turns(store: DynamoTranscriptStore) -> None:
    for step, text in enumerate(["old " + "x" * 3000, "mid " + "y" * 3000, "new"]):
        serve_context_request(request(step, [user(text)]), store)

    result = serve_context_request(request(3, []), store, max_context_bytes=4000)

    assert [m.text()[:3] for m in result.ready.messages] == ["mid", "new"]
    assert result.dropped_for_size == 1
    assert result.ready.message_count == 3  # nothing was lost from the transcript itself
    assert len(store.read(SessionRef("acme", "s1"))) == 3
