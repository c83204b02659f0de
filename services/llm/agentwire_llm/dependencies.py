"""What the handler needs, built once per Lambda execution environment (and replaceable in tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from agentwire_contracts.publish import EventPublisher

from agentwire_llm.adapters.budget import DynamoDbTenantBudget
from agentwire_llm.adapters.idempotency import PowertoolsOncePerStep
from agentwire_llm.adapters.payloads import payload_message_store
from agentwire_llm.adapters.rate_limiter import DynamoDbRateLimiter
from agentwire_llm.adapters.reasoning import DynamoDbReasoningStore
from agentwire_llm.adapters.response_cache import DynamoDbResponseCache
from agentwire_llm.adapters.script_cursor import DynamoDbScriptCursor
from agentwire_llm.completion import CompletionService
from agentwire_llm.fallbacks import FallbackChains
from agentwire_llm.pricing import load_price_table
from agentwire_llm.providers.factory import build_router
from agentwire_llm.providers.scripted import Script
from agentwire_llm.settings import LlmSettings, get_settings


class LambdaContextAware(Protocol):
    def register_lambda_context(self, context: Any) -> None: ...


@dataclass
class Dependencies:
    completions: CompletionService
    publisher: EventPublisher
    #: Told about each invocation's context (idempotency uses its remaining time).
    context_aware: tuple[LambdaContextAware, ...] = ()

    def register_lambda_context(self, context: Any) -> None:
        for item in self.context_aware:
            item.register_lambda_context(context)


def build_dependencies(settings: LlmSettings) -> Dependencies:
    # Clients are made here, not at import, so tests can wrap the build in moto and endpoints can be
    # set through the environment (AWS_ENDPOINT_URL in local mode).
    dynamodb = boto3.client("dynamodb")
    once = PowertoolsOncePerStep(
        settings.idempotency_table_name, client=dynamodb, expires_after_seconds=settings.idempotency_ttl_s
    )

    def script_cursor(script: Script) -> DynamoDbScriptCursor:
        return DynamoDbScriptCursor(dynamodb, settings.state_table_name, script.fingerprint)

    prices = load_price_table(settings.price_table_path)
    if settings.resolved_provider() == "offline":
        # The offline provider answers every call, whatever model the agent names, and costs what its own
        # model costs (nothing): an agent on a model the table does not list still runs under its caps.
        prices = prices.with_default(prices.price_of(settings.offline_model))
    completions = CompletionService(
        build_router(settings, script_cursor),
        once,
        resolve_model=settings.resolve_model,
        fallbacks=FallbackChains(settings.fallbacks, resolve_model=settings.resolve_model),
        prices=prices,
        rate_limiter=(
            DynamoDbRateLimiter(dynamodb, settings.state_table_name, settings.rate_limit_of)
            if settings.rate_limits
            else None
        ),
        tenant_budget=(
            DynamoDbTenantBudget(dynamodb, settings.state_table_name, settings.daily_budget_of)
            if settings.tenant_daily_budget_microusd is not None or settings.tenant_daily_budgets
            else None
        ),
        response_cache=DynamoDbResponseCache(dynamodb, settings.state_table_name, settings.response_cache_ttl_s),
        message_store=payload_message_store(),
        reasoning=DynamoDbReasoningStore(dynamodb, settings.state_table_name, settings.reasoning_ttl_s),
    )
    return Dependencies(
        completions=completions,
        publisher=EventPublisher(client=boto3.client("events"), bus_name=settings.event_bus_name),
        context_aware=(once,),
    )


_dependencies: Dependencies | None = None


def get_dependencies() -> Dependencies:
    global _dependencies  # noqa: PLW0603 - one lazily built set per execution environment
    if _dependencies is None:
        _dependencies = build_dependencies(get_settings())
    return _dependencies


def set_dependencies(dependencies: Dependencies | None) -> None:
    """Replace (or with None, forget) the dependencies the handler uses."""
    global _dependencies  # noqa: PLW0603
    _dependencies = dependencies
