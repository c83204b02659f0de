"""The llm service's one job: answer a completion request with the model's turn, once per (run, step).

Per call, in order: the run's token cap (from the request), the response cache (deterministic requests
of agents that opted in), then for the model and each of its fallbacks, at that model's own price: a
price at all when a budget applies (fail closed), the run's dollar cap, the (tenant, model) rate limit, a
reservation on the tenant's daily budget, the provider call, and the settlement of the reservation with
the real cost. Tool calls of an answer that did not stop to make them are dropped before it is kept.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agentwire_contracts import telemetry
from agentwire_contracts.agents import split_ref
from agentwire_contracts.consumer import StepError
from agentwire_contracts.content import Message, ToolCall, Usage
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.llm import LlmCompletionCompleted, LlmCompletionRequested
from pydantic import BaseModel, Field

from agentwire_llm import errors
from agentwire_llm.model import (
    Completion,
    CompletionRequest,
    ModelProvider,
    estimate_input_tokens,
    only_finished_tool_calls,
    turn_digest,
)
from agentwire_llm.ports import (
    MessageStore,
    NoRateLimit,
    NoResponseCache,
    NoTenantBudget,
    RateLimiter,
    ReasoningStore,
    Reservation,
    ResponseCache,
    TenantBudget,
)
from agentwire_llm.pricing import Cost, PriceTable, default_price_table

#: Providers whose answers may hold reasoning blocks to send back (scripted replays Anthropic bodies).
REASONING_PROVIDERS = frozenset({"anthropic", "bedrock", "scripted"})
#: Failures for which another model may answer instead.
FALLBACK_CODES = frozenset({errors.OVERLOADED, errors.UNAVAILABLE, errors.RATE_LIMITED})


@dataclass(frozen=True)
class StepKey:
    """Which model call this is: a redelivery of the same (tenant, run, step, purpose) is the same call."""

    tenant_id: str
    run_id: str
    step: int
    purpose: str = "turn"

    def __str__(self) -> str:
        base = f"{self.tenant_id}#{self.run_id}#{self.step}"
        return base if self.purpose == "turn" else f"{base}#{self.purpose}"


class RecordedTurn(BaseModel):
    """What is recorded for a step and replayed to a redelivered request, byte for byte."""

    completion: Completion
    duration_ms: float = Field(ge=0)
    cost_microusd: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0, ge=0)
    cached: bool = False
    fallback_from: str | None = None


class OncePerStep(Protocol):
    """Runs `call` at most once per key and returns its recorded result to every later caller.

    `fingerprint` identifies the request's content: the same key with a different fingerprint is a bug
    upstream and is refused rather than answered with another request's turn. A `StepError` raised by
    `call` is not recorded, so a retry of the step calls the provider again.
    """

    def run_once(self, key: StepKey, fingerprint: str, call: Callable[[], RecordedTurn]) -> RecordedTurn: ...


class CallDirectly:
    """No idempotency: every call reaches the provider (for tools and tests that want exactly that)."""

    def run_once(self, key: StepKey, fingerprint: str, call: Callable[[], RecordedTurn]) -> RecordedTurn:
        return call()


class ProviderRouter(Protocol):
    def provider_for(self, model: str) -> ModelProvider: ...


class SingleProvider:
    """Every model to one provider (offline, scripted, tests)."""

    def __init__(self, provider: ModelProvider) -> None:
        self.provider = provider

    def provider_for(self, model: str) -> ModelProvider:
        return self.provider


def fingerprint(request: CompletionRequest) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def response_cache_key(request: CompletionRequest) -> str:
    """Model and prompt, canonically: tools by name, JSON with sorted keys."""
    canonical = {
        "model": request.model,
        "system": request.system,
        "messages": [m.model_dump(mode="json") for m in request.messages],
        "tools": sorted((t.model_dump(mode="json") for t in request.tools), key=lambda t: t["name"]),
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def step_key(event: Event[LlmCompletionRequested]) -> StepKey:
    metadata = event.metadata
    # Without a run id only the event itself identifies the call; a redelivery carries the same event_id.
    run_id = metadata.run_id or f"event-{metadata.event_id}"
    return StepKey(metadata.tenant_id, run_id, event.data.step, event.data.purpose)


@dataclass(frozen=True)
class StepAnswer:
    data: LlmCompletionCompleted
    #: True when the answer was recorded by an earlier delivery (no provider call, no new usage).
    replayed: bool


@dataclass
class CallReport:
    """What happened inside one answer, for metrics (never recorded, never sent)."""

    throttled: list[str]
    failed_models: list[tuple[str, str]]
    budget_refused: bool = False
    #: Tool calls dropped from an answer that did not stop to make them (see `only_finished_tool_calls`).
    dropped_tool_calls: int = 0


class CompletionService:
    def __init__(
        self,
        provider: ModelProvider | ProviderRouter,
        once: OncePerStep,
        *,
        resolve_model: Callable[[str], str] = lambda model: model,
        fallbacks: Callable[[str, str], Sequence[str]] = lambda model, agent: (),
        prices: PriceTable | None = None,
        rate_limiter: RateLimiter | None = None,
        tenant_budget: TenantBudget | None = None,
        response_cache: ResponseCache | None = None,
        message_store: MessageStore | None = None,
        reasoning: ReasoningStore | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.router: ProviderRouter = provider if hasattr(provider, "provider_for") else SingleProvider(provider)  # type: ignore[arg-type]
        self._once = once
        self._resolve_model = resolve_model
        self._fallbacks = fallbacks
        self.prices = prices or default_price_table()
        self._limiter = rate_limiter or NoRateLimit()
        self._budget = tenant_budget or NoTenantBudget()
        self._cache = response_cache or NoResponseCache()
        self._messages = message_store
        self._reasoning = reasoning
        self._clock = clock
        self.last_report = CallReport([], [])

    @property
    def provider(self) -> ModelProvider:
        """The provider of the default route (its name is the metrics' provider dimension)."""
        return self.router.provider_for(self._resolve_model("default"))

    def messages_of(self, tenant_id: str, data: LlmCompletionRequested) -> list[Message]:
        if data.messages:
            return data.messages
        if data.messages_ref is None or self._messages is None:
            raise errors.bad_request("the request has no messages and no payload store to resolve messages_ref")
        return self._messages.load_messages(tenant_id, data.messages_ref)

    def request_of(self, data: LlmCompletionRequested, tenant_id: str = "") -> CompletionRequest:
        return CompletionRequest(
            model=self._resolve_model(data.model),
            system=data.system,
            messages=self.messages_of(tenant_id, data),
            tools=data.tools,
            max_tokens=data.max_tokens,
            temperature=data.temperature,
        )

    def answer(self, event: Event[LlmCompletionRequested]) -> StepAnswer:
        """The completed answer of the step, or `StepError` with an `Llm.*` code."""
        data = event.data
        request = self.request_of(data, event.metadata.tenant_id)
        report = self.last_report = CallReport([], [])
        called: list[bool] = []

        def call() -> RecordedTurn:
            called.append(True)
            return self._call(event, request, report)

        turn = self._once.run_once(step_key(event), fingerprint(request), call)
        completion = turn.completion
        answer = LlmCompletionCompleted(
            session_id=data.session_id,
            step=data.step,
            message=completion.message,
            text=completion.text,
            tool_calls=[ToolCall.of(c.id, c.name, c.input) for c in completion.tool_calls],
            stop_reason=completion.stop_reason,
            usage=completion.usage,
            model=completion.model,
            provider=completion.provider,
            cost_usd=turn.cost_usd,
            cost_microusd=turn.cost_microusd,
            cached=turn.cached,
            fallback_from=turn.fallback_from,
            purpose=data.purpose,
            duration_ms=float(turn.duration_ms),
        )
        return StepAnswer(data=answer, replayed=not called)

    # -- one call -----------------------------------------------------------------------------------

    def _call(
        self, event: Event[LlmCompletionRequested], request: CompletionRequest, report: CallReport
    ) -> RecordedTurn:
        data = event.data
        tenant_id = event.metadata.tenant_id
        input_tokens = estimate_input_tokens(request)
        # Tokens do not depend on the model; dollars do, so the run's dollar cap is checked per model
        # (`_admit`), with the price of the model actually called.
        self._check_run_tokens(data, request, input_tokens, report)

        cacheable = data.cache_responses and request.temperature == 0
        cache_key = response_cache_key(request) if cacheable else ""
        started = self._clock()
        if cacheable:
            hit = self._cache.get(tenant_id, cache_key)
            if hit is not None:
                return RecordedTurn(completion=hit, duration_ms=self._elapsed_ms(started), cached=True)

        models = [request.model, *[m for m in self._fallbacks(request.model, data.agent) if m != request.model]]
        reasoned = self._reasoned_turns(tenant_id, request.messages, models)
        first_error: StepError | None = None
        for model in models:
            # A turn's reasoning goes back only to the model that produced it (no other can read it).
            native_turns = {digest: native for digest, (by, native) in reasoned.items() if by == model}
            attempt = request.model_copy(update={"model": model, "native_turns": native_turns})
            try:
                reservation = self._admit(tenant_id, attempt, input_tokens, report, data)
            except StepError as refusal:
                report.failed_models.append((model, refusal.code))
                first_error = first_error or refusal
                # A fallback the run or the tenant cannot afford (or that has no price) is passed over: the
                # first model's retryable failure stands, so the run retries the model it can afford rather
                # than ending on the price of a model it only reached because the first was busy.
                if refusal.code in FALLBACK_CODES or model != request.model:
                    continue
                raise
            try:
                completion, cost = self._call_admitted(tenant_id, attempt, input_tokens, reservation, report, data)
            except StepError as error:
                report.failed_models.append((model, error.code))
                first_error = first_error or error
                if error.code in FALLBACK_CODES:
                    continue
                raise
            # Before anything keeps the answer (reasoning store, response cache, the recorded turn).
            completion, report.dropped_tool_calls = only_finished_tool_calls(completion)
            if completion.native_content and self._reasoning is not None:
                self._reasoning.put(tenant_id, turn_digest(completion.message), model, completion.native_content)
            if cacheable:
                self._cache.put(tenant_id, cache_key, completion)
            return RecordedTurn(
                completion=completion,
                duration_ms=self._elapsed_ms(started),
                cost_microusd=cost.microusd,
                cost_usd=cost.usd,
                fallback_from=request.model if model != request.model else None,
            )
        assert first_error is not None
        raise first_error

    def _reasoned_turns(
        self, tenant_id: str, messages: list[Message], models: list[str]
    ) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        """The stored native form of the assistant turns of the current tool loop (after the last user
        message that is not only tool results): what a reasoning model must get back unchanged. Earlier
        turns go in their neutral form, which the API accepts once a loop has ended. No read at all when no
        model of the call is served by a provider that returns reasoning (OpenAI, offline)."""
        if self._reasoning is None:
            return {}
        if not any(self.router.provider_for(model).name in REASONING_PROVIDERS for model in models):
            return {}
        digests = [turn_digest(message) for message in current_tool_loop(messages) if message.role == "assistant"]
        return self._reasoning.get(tenant_id, digests) if digests else {}

    def _check_run_tokens(
        self, data: LlmCompletionRequested, request: CompletionRequest, input_tokens: int, report: CallReport
    ) -> None:
        max_total_tokens = data.max_total_tokens
        if max_total_tokens is not None:
            spent_tokens = data.spent_tokens
            if spent_tokens + input_tokens + request.max_tokens > max_total_tokens:
                report.budget_refused = True
                raise errors.budget_exceeded(
                    f"the run has used {spent_tokens} of its {max_total_tokens} tokens and this call may use up to "
                    f"{input_tokens + request.max_tokens}"
                )

    def _admit(
        self,
        tenant_id: str,
        request: CompletionRequest,
        input_tokens: int,
        report: CallReport,
        data: LlmCompletionRequested,
    ) -> Reservation:
        """What must hold before `request.model` is called, at its own price: a price at all when the run's
        dollar cap or the tenant's daily budget applies (fail closed: a model the table cannot price is
        never counted as free), the run's dollar cap, the (tenant, model) rate limit, and the reservation
        on the tenant's day. Raises the refusal's `StepError`; no provider is called."""
        max_cost = data.max_cost_microusd
        estimate = self.prices.estimate_microusd(request.model, input_tokens, request.max_tokens)
        if estimate is None:
            if max_cost is not None:
                raise errors.unpriced(request.model, "the run's dollar cap")
            if self._budget.applies_to(tenant_id):
                raise errors.unpriced(request.model, "the tenant's daily budget")
            estimate = 0  # no cap and no budget to hold it against
        if max_cost is not None and data.spent_microusd + estimate > max_cost:
            report.budget_refused = True
            raise errors.budget_exceeded(
                f"the run has spent {data.spent_microusd} of its {max_cost} micro-dollars and this call to "
                f"{request.model} may cost up to {estimate}"
            )
        admission = self._limiter.acquire(tenant_id, request.model, input_tokens)
        if not admission.admitted:
            report.throttled.append(request.model)
            raise errors.rate_limited(
                f"{admission.limit} limit of {request.model} reached for this tenant",
                retry_after_s=round(admission.retry_after_s, 3),
            )
        reservation = self._budget.reserve(tenant_id, estimate)
        if reservation is None:
            report.budget_refused = True
            raise errors.budget_exceeded(
                f"the tenant's daily budget cannot cover this call to {request.model} (up to {estimate} micro-dollars)"
            )
        return reservation

    def _call_admitted(
        self,
        tenant_id: str,
        request: CompletionRequest,
        input_tokens: int,
        reservation: Reservation,
        report: CallReport,
        data: LlmCompletionRequested,
    ) -> tuple[Completion, Cost]:
        provider = self.router.provider_for(request.model)
        try:
            completion, cost = self._complete_traced(provider, request, data)
        except StepError as error:
            self._budget.settle(reservation, 0)
            if error.code == errors.RATE_LIMITED and error.retry_after_s:
                report.throttled.append(request.model)
                self._limiter.cool_down(request.model, error.retry_after_s)
            raise
        except Exception:
            self._budget.settle(reservation, 0)
            raise
        self._budget.settle(reservation, cost.microusd)
        self._limiter.settle(tenant_id, request.model, input_tokens, usage_total(completion.usage))
        return completion, cost

    def _complete_traced(
        self, provider: ModelProvider, request: CompletionRequest, data: LlmCompletionRequested | None
    ) -> tuple[Completion, Cost]:
        """The provider call as a GenAI CLIENT span `chat {model}` (a fallback is a span of its own)."""
        failure: StepError | None = None
        with telemetry.span(f"{telemetry.GenAI.OP_CHAT} {request.model}", kind=telemetry.SpanKind.CLIENT) as span:
            span.set_attributes(model_call_span_attributes(provider.name, request, data))
            try:
                completion = provider.complete(request)
            except StepError as error:
                telemetry.mark_failed(span, error.code)
                failure = error  # raised once the span has ended, so it keeps the code, not the class name
            else:
                cost = self.prices.cost(completion.model, completion.usage)
                if not self.prices.knows(completion.model):
                    cost = self.prices.cost(request.model, completion.usage)
                span.set_attributes(
                    telemetry.usage_attributes(
                        completion.usage,
                        response_model=completion.model,
                        finish_reason=completion.stop_reason,
                        cost_microusd=cost.microusd,
                    )
                )
                if telemetry.content_recording_enabled():
                    output = [completion.message.model_dump()]
                    span.set_attributes(telemetry.content_attributes({telemetry.GenAI.OUTPUT_MESSAGES: output}))
        if failure is not None:
            raise failure
        return completion, cost

    def _elapsed_ms(self, started: float) -> float:
        return round((self._clock() - started) * 1000, 3)


def model_call_span_attributes(
    provider: str, request: CompletionRequest, data: LlmCompletionRequested | None
) -> dict[str, Any]:
    """The request side of a `chat {model}` span: GenAI attributes, and content only when recording is on
    (redacted by `content_attributes`)."""
    attributes: dict[str, Any] = telemetry.model_call_attributes(
        provider=provider,
        model=request.model,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        session_id=data.session_id if data else None,
        agent=split_ref(data.agent)[0] if data else None,  # gen_ai.agent.name: the name, not name@version
        step=data.step if data else None,
    )
    if telemetry.content_recording_enabled():
        attributes.update(
            telemetry.content_attributes(
                {
                    telemetry.GenAI.SYSTEM_INSTRUCTIONS: request.system,
                    telemetry.GenAI.INPUT_MESSAGES: [message.model_dump() for message in request.messages],
                }
            )
        )
    return attributes


def current_tool_loop(messages: list[Message]) -> list[Message]:
    """The messages after the last user message that says something (not only tool results)."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.role == "user" and any(block.type != "tool_result" for block in message.content):
            return messages[index + 1 :]
    return messages


def usage_total(usage: Usage) -> int:
    return usage.input_tokens + usage.output_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
