"""Rate limiter, tenant budget and response cache against DynamoDB (moto, real conditional writes)."""

from __future__ import annotations

from agentwire_contracts.content import Message, TextBlock, Usage
from agentwire_llm.adapters.budget import DynamoDbTenantBudget
from agentwire_llm.adapters.rate_limiter import MICROS, DynamoDbRateLimiter
from agentwire_llm.adapters.response_cache import DynamoDbResponseCache
from agentwire_llm.model import Completion
from agentwire_llm.settings import RateLimit
from llm_testkit import STATE_TABLE

T0 = 1_760_000_000 * MICROS


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def limiter(dynamodb, clock: Clock, rpm: int = 5, tpm: int | None = None) -> DynamoDbRateLimiter:
    return DynamoDbRateLimiter(
        dynamodb, STATE_TABLE, lambda model: RateLimit(requests_per_minute=rpm, tokens_per_minute=tpm), clock_us=clock
    )


def test_llm_rate_limit_admits_a_minute_of_requests_then_refuses_with_the_wait(dynamodb) -> None:
    clock = Clock()
    bucket = limiter(dynamodb, clock, rpm=5)
    results = [bucket.acquire("acme", "claude-x", 10) for _ in range(7)]
    assert [r.admitted for r in results] == [True] * 5 + [False] * 2
    assert results[5].limit == "requests" and results[5].retry_after_s == 12.0  # one request per 12 s
    # Per (tenant, model): another tenant and another model have buckets of their own.
    assert bucket.acquire("globex", "claude-x", 10).admitted
    assert bucket.acquire("acme", "gpt-4o", 10).admitted
    # The bucket refills continuously: 12 s later exactly one more request fits.
    clock.now += 12 * MICROS
    assert [bucket.acquire("acme", "claude-x", 10).admitted for _ in range(2)] == [True, False]
    # Idle for longer than a minute, it is full again, but never more than full.
    clock.now += 600 * MICROS
    assert sum(bucket.acquire("acme", "claude-x", 10).admitted for _ in range(8)) == 5


def test_llm_rate_limit_on_tokens_refunds_the_request(dynamodb) -> None:
    clock = Clock()
    bucket = limiter(dynamodb, clock, rpm=100, tpm=1000)
    assert bucket.acquire("acme", "m", 600).admitted
    refused = bucket.acquire("acme", "m", 600)
    assert not refused.admitted and refused.limit == "tokens"
    assert abs(refused.retry_after_s - 12.0) < 0.01  # 200 more tokens at 1000/min
    assert bucket.acquire("acme", "m", 400).admitted  # the refused call took no request slot and no tokens


def test_llm_provider_retry_after_pauses_the_model_for_every_tenant(dynamodb) -> None:
    clock = Clock()
    bucket = limiter(dynamodb, clock, rpm=100)
    bucket.cool_down("claude-x", 30)
    bucket.cool_down("claude-x", 5)  # an earlier end never shortens the pause
    refused = bucket.acquire("other-tenant", "claude-x", 1)
    assert (refused.admitted, refused.limit, refused.retry_after_s) == (False, "provider", 30.0)
    assert bucket.acquire("acme", "gpt-4o", 1).admitted
    clock.now += 30 * MICROS + 1
    assert bucket.acquire("acme", "claude-x", 1).admitted


def test_llm_tenant_budget_reserves_settles_and_fails_closed(dynamodb) -> None:
    budget = DynamoDbTenantBudget(dynamodb, STATE_TABLE, {"acme": 1000}.get, clock=lambda: T0 / MICROS)
    first = budget.reserve("acme", 600)
    assert first is not None and first.day == "2025-10-09"
    assert budget.reserve("acme", 600) is None  # 600 + 600 > 1000: refused before any call
    budget.settle(first, 150)  # the call cost less than estimated: the rest is free again
    assert budget.spent("acme", first.day) == (150, 150)
    second = budget.reserve("acme", 850)
    assert second is not None
    assert budget.reserve("acme", 1) is None
    budget.settle(second, 0)  # a failed call costs nothing
    assert budget.spent("acme", first.day) == (150, 150)
    assert budget.reserve("acme", 2000) is None  # more than the whole budget
    unlimited = budget.reserve("globex", 10**9)
    assert unlimited is not None and unlimited.day == ""
    # Only a tenant with a budget needs every call priced (an unpriced model is refused for it).
    assert budget.applies_to("acme") and not budget.applies_to("globex")


def test_llm_response_cache_is_per_tenant_and_expires(dynamodb) -> None:
    now = {"t": 1000.0}
    cache = DynamoDbResponseCache(dynamodb, STATE_TABLE, ttl_s=60, clock=lambda: now["t"])
    completion = Completion(
        message=Message(role="assistant", content=[TextBlock(text="42")]),
        stop_reason="end_turn",
        usage=Usage(input_tokens=10, output_tokens=2),
        model="m",
        provider="anthropic",
    )
    cache.put("acme", "k1", completion)
    assert cache.get("acme", "k1") == completion
    assert cache.get("globex", "k1") is None
    now["t"] += 61
    assert cache.get("acme", "k1") is None  # past its TTL even before DynamoDB deletes it


def tokens_tat(dynamodb, tenant: str = "acme", model: str = "claude-x") -> int:
    item = dynamodb.get_item(
        TableName=STATE_TABLE, Key={"pk": {"S": f"ratelimit#{tenant}"}, "sk": {"S": f"{model}#tokens"}}
    )["Item"]
    return int(item["tat"]["N"])


def test_llm_tokens_bucket_is_settled_with_the_tokens_a_call_really_used(dynamodb) -> None:
    # 600 tokens per minute: one token is 0.1 s of the bucket.
    clock = Clock()
    bucket = limiter(dynamodb, clock, rpm=100, tpm=600)
    assert bucket.acquire("acme", "claude-x", 100).admitted  # estimated 100 input tokens
    bucket.settle("acme", "claude-x", 100, 600)  # it used 600 (input and output): the whole minute
    assert tokens_tat(dynamodb) == T0 + 60 * MICROS
    refused = bucket.acquire("acme", "claude-x", 500)
    assert not refused.admitted and refused.limit == "tokens"
    assert tokens_tat(dynamodb) == T0 + 60 * MICROS  # a refusal takes nothing

    # The other way: an estimate above the real use is given back, so the room is there again.
    clock.now += 60 * MICROS  # full again
    assert bucket.acquire("acme", "claude-x", 600).admitted
    assert not bucket.acquire("acme", "claude-x", 500).admitted
    bucket.settle("acme", "claude-x", 600, 100)
    assert tokens_tat(dynamodb) == clock.now + 10 * MICROS
    assert bucket.acquire("acme", "claude-x", 500).admitted


def test_llm_tokens_bucket_refund_never_fills_it_past_full(dynamodb) -> None:
    clock = Clock()
    bucket = limiter(dynamodb, clock, rpm=100, tpm=600)
    assert bucket.acquire("acme", "claude-x", 600).admitted
    clock.now += 55 * MICROS  # 5 s of the charge left to drain
    bucket.settle("acme", "claude-x", 600, 0)  # a refund of ~60 s would take tat 55 s into the past
    assert tokens_tat(dynamodb) == clock.now  # full, not fuller
    assert bucket.acquire("acme", "claude-x", 600).admitted
    assert not bucket.acquire("acme", "claude-x", 1).admitted
    # An idle bucket charged more after the fact starts that charge from now.
    clock.now += 120 * MICROS
    bucket.settle("acme", "claude-x", 1, 301)
    assert tokens_tat(dynamodb) == clock.now + 30 * MICROS


def test_llm_settle_without_a_tokens_limit_writes_nothing(dynamodb) -> None:
    clock = Clock()
    bucket = limiter(dynamodb, clock, rpm=5)
    assert bucket.acquire("acme", "claude-x", 10).admitted
    bucket.settle("acme", "claude-x", 10, 5000)
    item = dynamodb.get_item(TableName=STATE_TABLE, Key={"pk": {"S": "ratelimit#acme"}, "sk": {"S": "claude-x#tokens"}})
    assert "Item" not in item
