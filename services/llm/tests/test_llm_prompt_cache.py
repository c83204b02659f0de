"""Anthropic prompt caching: breakpoints, a byte-identical prefix across turns, and the recorded usage."""

from __future__ import annotations

import json
from typing import Any

import httpx2
from agentwire_contracts.content import Message, TextBlock, ToolResultBlock, ToolSpec, ToolUseBlock
from agentwire_llm.cache_simulator import PromptCache, fake_messages_api
from agentwire_llm.model import CompletionRequest
from agentwire_llm.providers.anthropic import AnthropicProvider
from agentwire_llm.providers.anthropic_format import request_params
from llm_testkit import CALCULATOR, CURRENT_TIME, user

SYSTEM = "You are a careful assistant. " * 400  # ~2,800 tokens: above the minimum cacheable prefix
SEARCH = ToolSpec(
    name="web_search",
    description="Search the web.",
    input_schema={"type": "object", "required": ["query"], "properties": {"query": {"type": "string"}}},
)


def conversation(turns: int) -> list[Message]:
    messages = [user("Find three facts.")]
    for n in range(1, turns):
        messages.append(
            Message(
                role="assistant",
                content=[
                    TextBlock(text=f"Looking up fact {n}."),
                    ToolUseBlock(id=f"toolu_{n}", name="web_search", input={"query": f"fact {n}"}),
                ],
            )
        )
        messages.append(Message(role="user", content=[ToolResultBlock(tool_use_id=f"toolu_{n}", content=f"fact {n}")]))
    return messages


def wire(params: dict[str, Any]) -> str:
    return json.dumps(params, separators=(",", ":"), ensure_ascii=False)


def without_cache_control(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [without_cache_control(v) for v in value]
    return value


def test_llm_prompt_prefix_is_byte_identical_across_turns_whatever_the_tool_order() -> None:
    tools = [CALCULATOR, SEARCH, CURRENT_TIME]
    # The next turn's tools arrive in another order, with the schema's keys in another order too.
    reordered = [
        CURRENT_TIME,
        ToolSpec(
            name=SEARCH.name,
            description=SEARCH.description,
            input_schema=dict(reversed(list(SEARCH.input_schema.items()))),
        ),
        CALCULATOR,
    ]
    turn_2 = request_params(
        CompletionRequest(model="claude-sonnet-4-5", system=SYSTEM, messages=conversation(2), tools=tools)
    )
    turn_3 = request_params(
        CompletionRequest(model="claude-sonnet-4-5", system=SYSTEM, messages=conversation(3), tools=reordered)
    )

    # Tools and system: the same bytes, breakpoints included.
    assert wire(turn_2["tools"]) == wire(turn_3["tools"])
    assert wire(turn_2["system"]) == wire(turn_3["system"])
    assert [t["name"] for t in turn_3["tools"]] == ["calculator", "current_time", "web_search"]
    # The conversation of turn 2 is, block for block, the start of turn 3's (breakpoints move forward).
    earlier = without_cache_control(turn_2["messages"])
    assert wire(without_cache_control(turn_3["messages"])[: len(earlier)]) == wire(earlier)
    # Breakpoints: last tool, system, newest message and the previous user message; never more than 4.
    marked = [b for m in turn_3["messages"] for b in m["content"] if "cache_control" in b]
    assert marked == [turn_3["messages"][-3]["content"][-1], turn_3["messages"][-1]["content"][-1]]
    assert "cache_control" in turn_3["tools"][-1] and "cache_control" in turn_3["system"][-1]
    assert sum("cache_control" in t for t in turn_3["tools"]) == 1


def test_llm_prompt_caching_reads_the_previous_prefix_on_every_later_turn() -> None:
    counter = {"n": 0}

    def replies(body: dict[str, Any]) -> dict[str, Any]:
        counter["n"] += 1
        n = counter["n"]
        return {
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "tool_use", "id": f"toolu_{n}", "name": "web_search", "input": {"query": f"fact {n}"}}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
        }

    transport, _ = fake_messages_api(replies, PromptCache())
    provider = AnthropicProvider.create("sk-ant-test", http_client=httpx2.Client(transport=transport))
    messages = [user("Find four facts.")]
    usages = []
    for _ in range(4):
        completion = provider.complete(
            CompletionRequest(model="claude-sonnet-4-5", system=SYSTEM, messages=messages, tools=[SEARCH, CALCULATOR])
        )
        usages.append(completion.usage)
        [use] = completion.message.tool_uses()
        messages = [
            *messages,
            completion.message,
            Message(role="user", content=[ToolResultBlock(tool_use_id=use.id, content="a result")]),
        ]

    assert usages[0].cache_read_input_tokens == 0 and usages[0].cache_creation_input_tokens > 2500
    for before, after in zip(usages, usages[1:], strict=False):
        # Each turn reads everything the previous one cached and writes only the new turn.
        assert after.cache_read_input_tokens == before.cache_read_input_tokens + before.cache_creation_input_tokens
        assert 0 < after.cache_creation_input_tokens < 200


def test_llm_prompt_caching_can_be_turned_off() -> None:
    params = request_params(
        CompletionRequest(model="m", system=SYSTEM, messages=conversation(2), tools=[SEARCH]), cache_prompt=False
    )
    assert "cache_control" not in wire(params)
    assert params["system"] == [{"type": "text", "text": SYSTEM}]
