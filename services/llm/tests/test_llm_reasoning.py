"""A model that reasons before a tool call gets its reasoning back, unchanged, in the next request of the
tool loop (the Messages API refuses the request otherwise). The real SDK over an in-memory transport; the
bodies are shaped as the Messages API documents adaptive thinking with tool use."""

from __future__ import annotations

import json
from typing import Any

import httpx2
from agentwire_contracts.content import Message
from agentwire_llm.adapters.reasoning import DynamoDbReasoningStore
from agentwire_llm.completion import CallDirectly, CompletionService, current_tool_loop
from agentwire_llm.ports import InMemoryReasoningStore, ReasoningStore
from agentwire_llm.providers.anthropic import AnthropicProvider
from agentwire_llm.providers.anthropic_format import completion_from_body
from agentwire_llm.settings import LlmSettings
from llm_testkit import STATE_TABLE, assistant_tool_use, completion_request_event, text_response, tool_result, user

THINKING = {
    "type": "thinking",
    "thinking": "The user wants a product; use the calculator.",
    "signature": "EqQBCgIYAhIM1gbcDa9GJwZA",
}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"}
REASONED_TOOL_USE = {
    "id": "msg_01Reasoned", "type": "message", "role": "assistant", "model": "claude-sonnet-5-5",
    "content": [
        THINKING,
        REDACTED,
        {"type": "text", "text": "Let me calculate."},
        {"type": "tool_use", "id": "toolu_think1", "name": "calculator", "input": {"expression": "1234 * 5678"}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 120, "output_tokens": 80},
}  # fmt: skip


def test_reasoning_blocks_are_kept_beside_the_neutral_message() -> None:
    completion = completion_from_body(REASONED_TOOL_USE, provider="anthropic", requested_model="claude-sonnet-5-5")
    assert [block.type for block in completion.message.content] == ["text", "tool_use"]
    assert completion.native_content == REASONED_TOOL_USE["content"]
    plain = completion_from_body(text_response("hi"), provider="anthropic", requested_model="m")
    assert plain.native_content is None


class Api:
    """The Messages API behind the real SDK: answers in order, keeps every request body."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.bodies.append(json.loads(request.content))
        return httpx2.Response(200, json=self.answers.pop(0))


def service(api: Api, reasoning: ReasoningStore) -> CompletionService:
    settings = LlmSettings(ANTHROPIC_API_KEY="sk-ant-test-not-a-real-key", AGENTWIRE_LLM_PROVIDER="anthropic")
    provider = AnthropicProvider.from_settings(settings, http_client=httpx2.Client(transport=httpx2.MockTransport(api)))
    return CompletionService(provider, CallDirectly(), reasoning=reasoning)


def as_memory_returns(message: Message) -> Message:
    """The assistant turn as the transcript gives it back: through JSON, like every event."""
    return Message.model_validate_json(message.model_dump_json())


def run_tool_loop(reasoning: ReasoningStore, second_model: str = "claude-sonnet-5-5") -> Api:
    api = Api(REASONED_TOOL_USE, text_response("1234 * 5678 = 7006652."))
    llm = service(api, reasoning)
    question = user("What is 1234 * 5678?")
    first = llm.answer(completion_request_event([question], step=0, model="claude-sonnet-5-5")).data
    assert first.stop_reason == "tool_use"
    loop = [question, as_memory_returns(first.message), tool_result("toolu_think1", "7006652")]
    second = llm.answer(completion_request_event(loop, step=1, model=second_model)).data
    assert second.text == "1234 * 5678 = 7006652."
    return api


def test_the_reasoned_turn_goes_back_exactly_as_the_model_wrote_it() -> None:
    api = run_tool_loop(InMemoryReasoningStore())
    sent = api.bodies[1]["messages"][1]
    assert sent["role"] == "assistant"
    assert sent["content"] == REASONED_TOOL_USE["content"]  # thinking first, signatures untouched


def test_without_a_stored_turn_the_neutral_form_is_sent() -> None:
    class Forgetful(InMemoryReasoningStore):
        def put(self, tenant_id: str, digest: str, model: str, native: list[dict[str, Any]]) -> None:
            return None

    api = run_tool_loop(Forgetful())
    assert [block["type"] for block in api.bodies[1]["messages"][1]["content"]] == ["text", "tool_use"]


def test_a_turn_is_sent_back_only_to_the_model_that_reasoned_it() -> None:
    # Another model (a fallback, an agent changed mid-loop) cannot read the reasoning: the neutral form.
    store = InMemoryReasoningStore()
    api = run_tool_loop(store, second_model="claude-opus-5-5")
    assert [block["type"] for block in api.bodies[1]["messages"][1]["content"]] == ["text", "tool_use"]
    [((tenant, digest), (model, _))] = store.turns.items()
    assert (tenant, model) == ("tenant-1", "claude-sonnet-5-5")
    assert store.get("tenant-1", [digest]) and not store.get("tenant-2", [digest])


def test_only_the_current_tool_loop_is_replayed() -> None:
    earlier = [user("hi"), Message(role="assistant", content=[{"type": "text", "text": "Hello!"}])]
    loop = [user("What is 2 * 3?"), Message(role="assistant", content=[{"type": "text", "text": "Calculating."}])]
    assert current_tool_loop([*earlier, *loop, tool_result("t1", "6")]) == [loop[1], tool_result("t1", "6")]


def test_the_dynamodb_store_keeps_turns_per_tenant_until_they_expire(dynamodb: Any) -> None:
    now = [1_000_000.0]
    store = DynamoDbReasoningStore(dynamodb, STATE_TABLE, ttl_s=60, clock=lambda: now[0])
    native = REASONED_TOOL_USE["content"]
    store.put("acme", "d1", "claude-sonnet-5-5", native)
    assert store.get("acme", ["d1", "d2"]) == {"d1": ("claude-sonnet-5-5", native)}
    assert store.get("other", ["d1"]) == {}
    now[0] += 61
    assert store.get("acme", ["d1"]) == {}


def test_the_loop_works_end_to_end_on_the_dynamodb_store(dynamodb: Any) -> None:
    api = run_tool_loop(DynamoDbReasoningStore(dynamodb, STATE_TABLE, ttl_s=3600))
    assert api.bodies[1]["messages"][1]["content"] == REASONED_TOOL_USE["content"]


def test_no_store_read_for_a_provider_that_never_returns_reasoning() -> None:
    from agentwire_llm.providers.offline import OfflineProvider

    class CountingStore(InMemoryReasoningStore):
        def __init__(self) -> None:
            super().__init__()
            self.reads = 0

        def get(self, tenant_id: str, digests: list[str]) -> dict[str, tuple[str, list[dict[str, Any]]]]:
            self.reads += 1
            return super().get(tenant_id, digests)

    offline, anthropic = CountingStore(), CountingStore()
    loop = [
        user("What is 2 * 3?"),
        assistant_tool_use("t1", "calculator", {"expression": "2 * 3"}),
        tool_result("t1", "6"),
    ]
    CompletionService(OfflineProvider(), CallDirectly(), reasoning=offline).answer(
        completion_request_event(loop, step=1)
    )
    assert offline.reads == 0
    run_tool_loop(anthropic)
    assert anthropic.reads == 1  # the loop's second call looks its first turn up
