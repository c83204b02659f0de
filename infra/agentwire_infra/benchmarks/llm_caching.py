"""Prompt caching: input-token cost of a 10-turn tool-using conversation with and without cache breakpoints.

The real Anthropic provider (the official SDK, request layout and breakpoints as in production) talks to
an in-memory Messages API whose usage follows Anthropic's documented prompt-cache rules
(`agentwire_llm.cache_simulator`). The cost is computed from the recorded usage with the price table's
claude-sonnet-4-5 prices, whose cache prices are the real multipliers: write 1.25x, read 0.1x.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
from agentwire_contracts.content import Message, TextBlock, ToolResultBlock, ToolSpec, ToolUseBlock, Usage
from agentwire_llm.cache_simulator import PromptCache, fake_messages_api
from agentwire_llm.model import CompletionRequest
from agentwire_llm.pricing import default_price_table
from agentwire_llm.providers.anthropic import AnthropicProvider

NAME = "llm_caching"
DESCRIPTION = "Anthropic prompt caching on a 10-turn tool conversation (3,000-token system prompt): input cost"

MODEL = "claude-sonnet-4-5"
TURNS = 10
SYSTEM_TOKENS = 3000


def system_prompt(tokens: int = SYSTEM_TOKENS) -> str:
    rule = "Rule {n}: answer with care, cite the tool you used, and never invent a figure you did not compute. "
    text = ""
    n = 0
    while len(text) < tokens * 4:
        n += 1
        text += rule.format(n=n)
    return text[: tokens * 4]


TOOLS = [
    ToolSpec(
        name=name,
        description=description,
        input_schema={
            "type": "object",
            "properties": {arg: {"type": "string", "description": f"the {arg}"}},
            "required": [arg],
        },
    )
    for name, description, arg in (
        ("web_search", "Search the web and return the top results with snippets.", "query"),
        ("calculator", "Evaluate an arithmetic expression exactly.", "expression"),
        ("current_time", "The current time in an IANA time zone.", "timezone"),
        ("fetch_page", "Fetch a web page and return its readable text.", "url"),
    )
]


def reply_for(turn: int) -> dict[str, Any]:
    """The scripted model: a tool call on turns 1-9, the answer on turn 10."""
    if turn < TURNS:
        content: list[dict[str, Any]] = [
            {"type": "text", "text": f"Step {turn}: I will look this up."},
            {"type": "tool_use", "id": f"toolu_{turn:02d}", "name": "web_search", "input": {"query": f"fact {turn}"}},
        ]
        stop = "tool_use"
    else:
        content, stop = [{"type": "text", "text": "Here is the summary of all ten facts."}], "end_turn"
    return {
        "id": f"msg_{turn:02d}",
        "type": "message",
        "role": "assistant",
        "model": MODEL + "-20250929",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
    }


def conversation(cache_prompt: bool) -> list[Usage]:
    turn = {"n": 0}

    def replies(body: dict[str, Any]) -> dict[str, Any]:
        turn["n"] += 1
        return reply_for(turn["n"])

    transport, _ = fake_messages_api(replies, PromptCache())
    provider = AnthropicProvider.create(
        "sk-ant-bench-not-a-key", cache_prompt=cache_prompt, http_client=httpx2.Client(transport=transport)
    )
    messages = [Message(role="user", content=[TextBlock(text="Research ten facts and summarize them.")])]
    usages: list[Usage] = []
    system = system_prompt()
    for _ in range(TURNS):
        request = CompletionRequest(model=MODEL, system=system, messages=messages, tools=TOOLS, max_tokens=1024)
        completion = provider.complete(request)
        usages.append(completion.usage)
        messages = [*messages, completion.message]
        for use in completion.message.content:
            if isinstance(use, ToolUseBlock):
                result = f"Result for {use.input['query']}: " + "a paragraph of search results. " * 30
                messages.append(Message(role="user", content=[ToolResultBlock(tool_use_id=use.id, content=result)]))
    return usages


def input_cost_microusd(usages: list[Usage]) -> Decimal:
    price = default_price_table().price_of(MODEL)
    assert price is not None
    return sum(
        (
            u.input_tokens * price.input
            + u.cache_creation_input_tokens * price.cache_write
            + u.cache_read_input_tokens * price.cache_read
            for u in usages
        ),
        Decimal(0),
    )


def run(workdir: Path) -> dict[str, Any]:
    cached = conversation(cache_prompt=True)
    plain = conversation(cache_prompt=False)
    with_cache, without = input_cost_microusd(cached), input_cost_microusd(plain)
    reduction = float(1 - with_cache / without)
    price = default_price_table().price_of(MODEL)
    assert price is not None
    print(f"{'turn':>4} {'input':>7} {'write':>7} {'read':>7}   {'uncached input':>14}")
    for n, (c, p) in enumerate(zip(cached, plain, strict=True), start=1):
        print(
            f"{n:>4} {c.input_tokens:>7} {c.cache_creation_input_tokens:>7} {c.cache_read_input_tokens:>7}"
            f"   {p.input_tokens:>14}"
        )
    print(
        f"input cost: {float(with_cache) / 1e6:.6f} USD with caching vs {float(without) / 1e6:.6f} USD without "
        f"-> {reduction:.1%} lower (target >= 70%)"
    )
    figures = {
        "model": MODEL,
        "turns": TURNS,
        "system_prompt_tokens": SYSTEM_TOKENS,
        "multipliers": {
            "cache_write": float(price.cache_write / price.input),
            "cache_read": float(price.cache_read / price.input),
        },
        "input_cost_usd_cached": float(with_cache) / 1e6,
        "input_cost_usd_uncached": float(without) / 1e6,
        "cost_ratio": float(with_cache / without),
        "reduction": round(reduction, 4),
        "target_met": reduction >= 0.70,
        "usage_cached": [u.model_dump() for u in cached],
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "llm_caching.json").write_text(json.dumps(figures, indent=2))
    return figures
