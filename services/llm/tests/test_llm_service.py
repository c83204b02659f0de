"""The completion logic with its ports faked: cost, run caps, tenant budget, response cache, fallbacks,
rate limits, claim-checked contexts and the idempotency key."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from agentwire_contracts.consumer import StepError
from agentwire_contracts.content import Message, PayloadRef, TextBlock, ToolUseBlock, Usage, canonical_args_hash
from agentwire_llm import errors
from agentwire_llm.completion import CallDirectly, CompletionService, StepKey, step_key, usage_total
from agentwire_llm.model import Completion, CompletionRequest, estimate_input_tokens
from agentwire_llm.ports import Admission, Reservation
from llm_testkit import completion_request_event, user

MODEL = "claude-sonnet-4-5"


@dataclass
class FakeProvider:
    """Answers per model: a Completion, or a StepError to raise."""

    answers: dict[str, Completion | StepError]
    calls: list[str] = field(default_factory=list)
    name: str = "fake"

    def complete(self, request: CompletionRequest) -> Completion:
        self.calls.append(request.model)
        answer = self.answers[request.model]
        if isinstance(answer, StepError):
            raise answer
        return answer


def answer(
    model: str = MODEL,
    *,
    input_tokens: int = 1000,
    output_tokens: int = 100,
    cache_write: int = 0,
    cache_read: int = 0,
    tool: bool = False,
) -> Completion:
    content: list = [TextBlock(text="done")]
    if tool:
        content.append(ToolUseBlock(id="toolu_1", name="calculator", input={"expression": "2+2", "a": [1]}))
    return Completion(
        message=Message(role="assistant", content=content),
        stop_reason="tool_use" if tool else "end_turn",
        usage=Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_creation_input_tokens=cache_write,
            cache_read_input_tokens=cache_read,
        ),
        model=model + "-20250929",
        provider="anthropic",
    )


@dataclass
class FakeBudget:
    room: int
    settled: list[tuple[int, int]] = field(default_factory=list)
    reserved: list[int] = field(default_factory=list)
    #: False: the tenant has no daily budget (the adapter's `limit_of` is None).
    limited: bool = True

    def applies_to(self, tenant_id: str) -> bool:
        return self.limited

    def reserve(self, tenant_id: str, microusd: int) -> Reservation | None:
        if microusd > self.room:
            return None
        self.room -= microusd
        self.reserved.append(microusd)
        return Reservation(tenant_id, "2025-01-01", microusd)

    def settle(self, reservation: Reservation, actual_microusd: int) -> None:
        self.room += reservation.microusd - actual_microusd
        self.settled.append((reservation.microusd, actual_microusd))


@dataclass
class FakeLimiter:
    refuse: set[str] = field(default_factory=set)
    cooled: list[tuple[str, float]] = field(default_factory=list)
    settled: list[tuple[str, str, int, int]] = field(default_factory=list)
    acquired: list[str] = field(default_factory=list)

    def acquire(self, tenant_id: str, model: str, tokens: int) -> Admission:
        self.acquired.append(model)
        return Admission(False, 7.5, "requests") if model in self.refuse else Admission(True)

    def cool_down(self, model: str, seconds: float) -> None:
        self.cooled.append((model, seconds))

    def settle(self, tenant_id: str, model: str, charged_tokens: int, used_tokens: int) -> None:
        self.settled.append((tenant_id, model, charged_tokens, used_tokens))


@dataclass
class DictCache:
    items: dict[tuple[str, str], Completion] = field(default_factory=dict)

    def get(self, tenant_id: str, key: str) -> Completion | None:
        return self.items.get((tenant_id, key))

    def put(self, tenant_id: str, key: str, completion: Completion) -> None:
        self.items[(tenant_id, key)] = completion


def service(provider: FakeProvider, **ports) -> CompletionService:
    return CompletionService(provider, CallDirectly(), **ports)


def test_llm_cost_from_the_price_table_in_usd_and_micro_dollars_and_args_hash() -> None:
    provider = FakeProvider(
        {MODEL: answer(input_tokens=1000, output_tokens=100, cache_write=2000, cache_read=10_000, tool=True)}
    )
    data = service(provider).answer(completion_request_event([user("hi")], model=MODEL)).data
    # 1000 x 3 + 100 x 15 + 2000 x 3.75 + 10000 x 0.3 micro-dollars
    assert data.cost_microusd == 3000 + 1500 + 7500 + 3000
    assert data.cost_usd == pytest.approx(0.015)
    [call] = data.tool_calls
    assert call.args_hash == canonical_args_hash({"expression": "2+2", "a": [1]})
    assert data.cached is False and data.fallback_from is None and data.purpose == "turn"


def test_llm_run_dollar_cap_refuses_before_calling() -> None:
    provider = FakeProvider({MODEL: answer()})
    # max_tokens 512 at 15 micro-dollars each alone is 7,680: a run with 5,000 left cannot afford it.
    event = completion_request_event([user("hi")], model=MODEL, spent_microusd=995_000, max_cost_microusd=1_000_000)
    with pytest.raises(StepError) as raised:
        service(provider).answer(event)
    assert raised.value.code == errors.BUDGET_EXCEEDED and not raised.value.retryable
    assert provider.calls == []
    roomy = completion_request_event([user("hi")], model=MODEL, spent_microusd=10, max_cost_microusd=1_000_000)
    assert service(provider).answer(roomy).data.cost_microusd > 0


def test_llm_run_token_cap_refuses_before_calling() -> None:
    provider = FakeProvider({MODEL: answer()})
    event = completion_request_event([user("hi")], model=MODEL, spent_tokens=9_700, max_total_tokens=10_000)
    with pytest.raises(StepError) as raised:
        service(provider).answer(event)
    assert raised.value.code == errors.BUDGET_EXCEEDED and provider.calls == []


def test_llm_tenant_budget_is_reserved_then_settled_and_released_on_failure() -> None:
    budget = FakeBudget(room=100_000)
    ok = FakeProvider({MODEL: answer()})
    data = service(ok, tenant_budget=budget).answer(completion_request_event([user("hi")], model=MODEL)).data
    [(reserved, actual)] = budget.settled
    assert reserved >= actual == data.cost_microusd and budget.room == 100_000 - data.cost_microusd

    failing = FakeProvider({MODEL: errors.llm_error(errors.BAD_REQUEST, "no")})
    with pytest.raises(StepError):
        service(failing, tenant_budget=budget).answer(completion_request_event([user("hi")], model=MODEL, step=1))
    assert budget.settled[-1][1] == 0 and budget.room == 100_000 - data.cost_microusd

    broke = FakeBudget(room=10)
    with pytest.raises(StepError) as raised:
        service(ok, tenant_budget=broke).answer(completion_request_event([user("hi")], model=MODEL, step=2))
    assert raised.value.code == errors.BUDGET_EXCEEDED


def test_llm_response_cache_serves_deterministic_opted_in_requests_for_free() -> None:
    cache = DictCache()
    provider = FakeProvider({MODEL: answer()})
    svc = service(provider, response_cache=cache)

    def ask(step: int, tenant: str = "tenant-1", **fields):
        return svc.answer(
            completion_request_event([user("2+2?")], model=MODEL, step=step, tenant_id=tenant, **fields)
        ).data

    first = ask(0, temperature=0, cache_responses=True)
    second = ask(1, temperature=0, cache_responses=True)
    assert provider.calls == [MODEL] and first.cached is False and first.cost_microusd > 0
    assert second.cached is True and second.cost_microusd == 0 and second.cost_usd == 0
    assert second.message == first.message
    ask(2, tenant="tenant-2", temperature=0, cache_responses=True)  # scoped to the tenant
    ask(3, temperature=0.7, cache_responses=True)  # not deterministic
    ask(4, temperature=0)  # not opted in
    assert len(provider.calls) == 4


def test_llm_fallback_answers_when_the_model_is_overloaded_but_not_on_a_bad_request() -> None:
    provider = FakeProvider({MODEL: errors.overloaded("busy"), "gpt-4o": answer("gpt-4o", input_tokens=100)})
    svc = service(provider, fallbacks=lambda model, agent: ["gpt-4o"])
    data = svc.answer(completion_request_event([user("hi")], model=MODEL)).data
    assert provider.calls == [MODEL, "gpt-4o"]
    assert data.fallback_from == MODEL and data.model == "gpt-4o-20250929"
    assert data.cost_microusd == 100 * 2.5 + 100 * 10  # priced as the model that answered
    assert svc.last_report.failed_models == [(MODEL, errors.OVERLOADED)]

    refused = FakeProvider({MODEL: errors.bad_request("invalid"), "gpt-4o": answer("gpt-4o")})
    with pytest.raises(StepError) as raised:
        service(refused, fallbacks=lambda model, agent: ["gpt-4o"]).answer(
            completion_request_event([user("hi")], model=MODEL)
        )
    assert raised.value.code == errors.BAD_REQUEST and refused.calls == [MODEL]

    everyone_busy = FakeProvider({MODEL: errors.overloaded("busy"), "gpt-4o": errors.unavailable("down")})
    with pytest.raises(StepError) as raised:
        service(everyone_busy, fallbacks=lambda model, agent: ["gpt-4o"]).answer(
            completion_request_event([user("hi")], model=MODEL)
        )
    assert raised.value.code == errors.OVERLOADED  # the first model's reason, retried by the state machine


def test_llm_rate_limited_carries_the_wait_and_provider_retry_after_cools_the_model_down() -> None:
    limiter = FakeLimiter(refuse={MODEL})
    provider = FakeProvider({MODEL: answer()})
    with pytest.raises(StepError) as raised:
        service(provider, rate_limiter=limiter).answer(completion_request_event([user("hi")], model=MODEL))
    assert (raised.value.code, raised.value.retryable, raised.value.retry_after_s) == (errors.RATE_LIMITED, True, 7.5)
    assert provider.calls == []

    limiter = FakeLimiter()
    throttled = FakeProvider({MODEL: errors.rate_limited("429", retry_after_s=20)})
    with pytest.raises(StepError) as raised:
        service(throttled, rate_limiter=limiter).answer(completion_request_event([user("hi")], model=MODEL))
    assert raised.value.retry_after_s == 20 and limiter.cooled == [(MODEL, 20)]
    # The wait travels to the state machine at the end of the message (whole seconds, rounded up).
    assert raised.value.message == "429; retry_after_s=20"
    assert limiter.settled == []  # a failed call keeps its estimate in the tokens bucket


def test_llm_a_completed_call_settles_the_tokens_bucket_with_what_it_used() -> None:
    limiter = FakeLimiter()
    provider = FakeProvider({MODEL: answer()})
    event = completion_request_event([user("hi")], model=MODEL)
    service(provider, rate_limiter=limiter).answer(event)
    [(tenant, model, charged, used)] = limiter.settled
    assert (tenant, model) == (event.metadata.tenant_id, MODEL)
    assert charged > 0 and used == usage_total(answer().usage) and used != charged


def test_llm_purpose_is_part_of_the_idempotency_key() -> None:
    turn = step_key(completion_request_event([user("hi")], step=3))
    compaction = step_key(completion_request_event([user("hi")], step=3, purpose="compaction"))
    assert turn == StepKey("tenant-1", "run-1", 3, "turn") and str(turn) == "tenant-1#run-1#3"
    assert str(compaction) == "tenant-1#run-1#3#compaction"


@dataclass
class FakeMessageStore:
    messages: list[Message]
    asked: list[tuple[str, PayloadRef]] = field(default_factory=list)

    def load_messages(self, tenant_id: str, ref: PayloadRef) -> list[Message]:
        self.asked.append((tenant_id, ref))
        return self.messages


def test_llm_claim_checked_context_is_resolved_for_the_requests_tenant() -> None:
    ref = PayloadRef(
        bucket="agentwire-payloads", key="tenants/tenant-1/sessions/s/context/x.json", sha256="a" * 64, size_bytes=100
    )
    store = FakeMessageStore([user("from the payload store")])
    provider = FakeProvider({MODEL: answer()})
    svc = service(provider, message_store=store)
    event = completion_request_event([], model=MODEL, messages_ref=ref)
    assert svc.request_of(event.data, "tenant-1").messages == store.messages
    svc.answer(event)
    assert store.asked[-1] == ("tenant-1", ref)
    with pytest.raises(StepError) as raised:
        service(provider).answer(event)  # no payload store configured
    assert raised.value.code == errors.BAD_REQUEST


# -- a model without a price never passes a budget ------------------------------------------------------

UNPRICED = "o3-mini"  # routed to OpenAI by default, absent from the price table


def test_llm_an_unpriced_model_is_refused_under_the_runs_dollar_cap_before_any_call() -> None:
    provider, limiter = FakeProvider({UNPRICED: answer(UNPRICED)}), FakeLimiter()
    event = completion_request_event([user("hi")], model=UNPRICED, spent_microusd=0, max_cost_microusd=1_000_000)

    with pytest.raises(StepError) as raised:
        service(provider, rate_limiter=limiter).answer(event)

    assert (raised.value.code, raised.value.retryable) == (errors.BAD_REQUEST, False)
    assert f"{UNPRICED!r} has no price" in raised.value.message and "price table" in raised.value.message
    assert provider.calls == [] and limiter.acquired == []  # refused before the limiter and the provider
    # Without a cap or a budget nothing is bounded by its price: it is answered (and costs what the table says).
    free = service(provider).answer(completion_request_event([user("hi")], model=UNPRICED, step=1)).data
    assert provider.calls == [UNPRICED] and free.cost_microusd == 0


def test_llm_an_unpriced_model_is_refused_when_the_tenant_has_a_daily_budget() -> None:
    provider, budget = FakeProvider({UNPRICED: answer(UNPRICED)}), FakeBudget(room=10**9)
    with pytest.raises(StepError) as raised:
        service(provider, tenant_budget=budget).answer(completion_request_event([user("hi")], model=UNPRICED))
    assert raised.value.code == errors.BAD_REQUEST and "daily budget" in raised.value.message
    assert provider.calls == [] and budget.reserved == [] and budget.room == 10**9

    # A tenant the budget does not cover is not refused.
    unbudgeted = FakeBudget(room=0, limited=False)
    service(provider, tenant_budget=unbudgeted).answer(completion_request_event([user("hi")], model=UNPRICED, step=1))
    assert provider.calls == [UNPRICED]


def test_llm_the_local_stand_ins_answer_as_priced_models() -> None:
    # Every run has a dollar cap (AgentLimits.max_cost_usd), so their models must be in the table.
    from agentwire_llm.pricing import default_price_table
    from agentwire_llm.providers.offline import OfflineProvider
    from agentwire_llm.providers.scripted import script_message

    prices = default_price_table()
    offline = OfflineProvider().complete(CompletionRequest(model="anything", messages=[user("hi")]))
    assert prices.knows(offline.model) and prices.estimate_microusd(offline.model, 1000, 1000) == 0
    assert prices.knows(script_message()["model"])
    assert prices.estimate_microusd("not-a-listed-model", 1000, 1000) is None


CHEAP, DEAR = "claude-haiku-4-5", "claude-opus-4-1"


def busy_then(fallback_answer: Completion | StepError, fallback: str = DEAR) -> FakeProvider:
    return FakeProvider({CHEAP: errors.overloaded("busy"), fallback: fallback_answer})


def test_llm_a_fallback_is_held_to_the_runs_cap_at_its_own_price() -> None:
    # 512 tokens of output: ~2,600 micro-dollars on haiku, over 38,400 on opus; the run has 10,000 left.
    provider = busy_then(answer(DEAR))
    svc = service(provider, fallbacks=lambda model, agent: [DEAR])
    event = completion_request_event([user("hi")], model=CHEAP, spent_microusd=990_000, max_cost_microusd=1_000_000)

    with pytest.raises(StepError) as raised:
        svc.answer(event)

    assert provider.calls == [CHEAP]  # the dear fallback was never called
    # The first model's retryable failure stands: the run retries the model it can afford.
    assert (raised.value.code, raised.value.retryable) == (errors.OVERLOADED, True)
    assert svc.last_report.failed_models == [(CHEAP, errors.OVERLOADED), (DEAR, errors.BUDGET_EXCEEDED)]
    assert svc.last_report.budget_refused


def test_llm_a_fallback_reserves_the_tenant_budget_at_its_own_price() -> None:
    provider, budget = busy_then(answer(DEAR)), FakeBudget(room=10**9)
    svc = service(provider, fallbacks=lambda model, agent: [DEAR], tenant_budget=budget)
    event = completion_request_event([user("hi")], model=CHEAP, max_cost_microusd=1_000_000)
    input_tokens = estimate_input_tokens(svc.request_of(event.data))

    data = svc.answer(event).data

    assert data.fallback_from == CHEAP and provider.calls == [CHEAP, DEAR]
    assert budget.reserved == [
        svc.prices.estimate_microusd(CHEAP, input_tokens, 512),
        svc.prices.estimate_microusd(DEAR, input_tokens, 512),
    ]
    assert budget.reserved[1] > 10 * budget.reserved[0]
    assert budget.settled == [(budget.reserved[0], 0), (budget.reserved[1], data.cost_microusd)]


def test_llm_an_unpriced_fallback_is_never_called_under_a_cap() -> None:
    provider = busy_then(answer(UNPRICED), fallback=UNPRICED)
    svc = service(provider, fallbacks=lambda model, agent: [UNPRICED])
    with pytest.raises(StepError) as raised:
        svc.answer(completion_request_event([user("hi")], model=CHEAP, max_cost_microusd=1_000_000))
    assert raised.value.code == errors.OVERLOADED and provider.calls == [CHEAP]
    assert svc.last_report.failed_models == [(CHEAP, errors.OVERLOADED), (UNPRICED, errors.BAD_REQUEST)]
