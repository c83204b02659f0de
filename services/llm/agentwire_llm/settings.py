"""The llm service's configuration, read once from the environment."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderChoice = Literal["offline", "scripted", "live", "anthropic", "openai", "bedrock", "auto"]
ProviderName = Literal["anthropic", "openai", "bedrock"]

#: Which provider serves a model id, by prefix (longest wins); configuration may add or override.
DEFAULT_MODEL_PROVIDERS: dict[str, ProviderName] = {
    "claude-": "anthropic",
    "gpt-": "openai",
    "o1": "openai",
    "o3": "openai",
    "o4": "openai",
    "anthropic.": "bedrock",
    "amazon.": "bedrock",
    "meta.": "bedrock",
    "mistral.": "bedrock",
    "cohere.": "bedrock",
    "us.": "bedrock",
    "eu.": "bedrock",
    "apac.": "bedrock",
    "global.": "bedrock",
}


class RateLimit(BaseModel):
    """A token bucket per (tenant, model): capacity = one minute's worth, refilled continuously."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_minute: int = Field(ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)


class LlmSettings(BaseSettings):
    """Environment variable names are spelled out per field (no prefix) so they match the manifest and
    the providers' conventional names (e.g. ANTHROPIC_API_KEY)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    #: `auto` routes by model to the real providers when any credential is configured, else offline.
    provider: ProviderChoice = Field(default="auto", validation_alias="AGENTWIRE_LLM_PROVIDER")
    #: The JSON list of Anthropic-shaped responses the scripted provider replays.
    script_path: Path | None = Field(default=None, validation_alias="AGENTWIRE_LLM_SCRIPT")
    #: Locally the keys come from the environment; on AWS from Secrets Manager (the `*_SECRET_ARN`s).
    anthropic_api_key: SecretStr | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY")
    anthropic_api_key_secret: str | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY_SECRET_ARN")
    anthropic_base_url: str | None = Field(default=None, validation_alias="ANTHROPIC_BASE_URL")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_api_key_secret: str | None = Field(default=None, validation_alias="OPENAI_API_KEY_SECRET_ARN")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    #: Bedrock uses the function's IAM role; set to enable it under `auto`.
    bedrock_enabled: bool = Field(default=False, validation_alias="AGENTWIRE_LLM_BEDROCK")
    bedrock_region: str | None = Field(default=None, validation_alias="AGENTWIRE_LLM_BEDROCK_REGION")
    #: Seconds before a provider call is abandoned and answered as `Llm.Timeout`.
    request_timeout_s: float = Field(default=120.0, gt=0, validation_alias="AGENTWIRE_LLM_REQUEST_TIMEOUT_S")
    #: Model names a run may ask for (e.g. "default") mapped to provider model ids; unknown names pass through.
    model_aliases: dict[str, str] = Field(
        default_factory=lambda: {"default": "claude-sonnet-5-5"}, validation_alias="AGENTWIRE_LLM_MODEL_ALIASES"
    )
    #: Model id prefix → provider (merged over `DEFAULT_MODEL_PROVIDERS`).
    model_providers: dict[str, ProviderName] = Field(
        default_factory=dict, validation_alias="AGENTWIRE_LLM_MODEL_PROVIDERS"
    )
    #: Model id → models tried in order when it is overloaded, unavailable or rate limited.
    fallbacks: dict[str, list[str]] = Field(default_factory=dict, validation_alias="AGENTWIRE_LLM_FALLBACKS")
    #: The name the offline provider reports as the model that answered.
    offline_model: str = Field(default="agentwire-offline-1", validation_alias="AGENTWIRE_LLM_OFFLINE_MODEL")
    #: Anthropic prompt-cache breakpoints (tools, system, conversation).
    prompt_caching: bool = Field(default=True, validation_alias="AGENTWIRE_LLM_PROMPT_CACHING")
    #: A JSON price table replacing the packaged one (see data/prices.json).
    price_table_path: Path | None = Field(default=None, validation_alias="AGENTWIRE_LLM_PRICES")

    #: Model id (or "*") → limits per tenant; empty = no limiter.
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict, validation_alias="AGENTWIRE_LLM_RATE_LIMITS")
    #: Each tenant's spend per UTC day, in micro-dollars; None = unlimited.
    tenant_daily_budget_microusd: int | None = Field(
        default=None, ge=0, validation_alias="AGENTWIRE_LLM_TENANT_DAILY_BUDGET_MICROUSD"
    )
    #: Per-tenant overrides of the daily budget.
    tenant_daily_budgets: dict[str, int] = Field(
        default_factory=dict, validation_alias="AGENTWIRE_LLM_TENANT_DAILY_BUDGETS"
    )
    #: How long a deterministic answer is served from the response cache.
    response_cache_ttl_s: int = Field(default=24 * 3600, ge=1, validation_alias="AGENTWIRE_LLM_RESPONSE_CACHE_TTL_S")
    #: How long the native form of a turn the model reasoned in is kept to be sent back in its tool loop:
    #: longer than a run waits for an approval (default 7 days).
    reasoning_ttl_s: int = Field(default=7 * 24 * 3600, ge=60, validation_alias="AGENTWIRE_LLM_REASONING_TTL_S")

    state_table_name: str = Field(default="agentwire-llm-state", validation_alias="LLM_STATE_TABLE_NAME")
    idempotency_table_name: str = Field(
        default="agentwire-llm-idempotency", validation_alias="LLM_IDEMPOTENCY_TABLE_NAME"
    )
    #: How long a recorded answer is replayed for a redelivered request.
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60, validation_alias="AGENTWIRE_LLM_IDEMPOTENCY_TTL_S")
    event_bus_name: str = Field(default="agentwire", validation_alias="AGENTWIRE_EVENT_BUS_NAME")

    @field_validator(
        "anthropic_api_key",
        "openai_api_key",
        "script_path",
        "anthropic_base_url",
        "openai_base_url",
        "anthropic_api_key_secret",
        "openai_api_key_secret",
        "price_table_path",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # An exported-but-empty variable (`ANTHROPIC_API_KEY=`) must not switch `auto` to a real provider.
        return None if isinstance(value, str) and not value.strip() else value

    def has_credentials(self) -> bool:
        return any(
            (
                self.anthropic_api_key,
                self.anthropic_api_key_secret,
                self.openai_api_key,
                self.openai_api_key_secret,
                self.bedrock_enabled,
            )
        )

    def resolved_provider(self) -> Literal["offline", "scripted", "live"]:
        if self.provider in ("offline", "scripted"):
            return self.provider  # type: ignore[return-value]
        if self.provider == "auto":
            return "live" if self.has_credentials() else "offline"
        return "live"

    def resolve_model(self, requested: str) -> str:
        return self.model_aliases.get(requested, requested)

    def provider_of(self, model: str) -> ProviderName | None:
        table = {**DEFAULT_MODEL_PROVIDERS, **self.model_providers}
        matches = [prefix for prefix in table if model.startswith(prefix)]
        return table[max(matches, key=len)] if matches else None

    def rate_limit_of(self, model: str) -> RateLimit | None:
        return self.rate_limits.get(model) or self.rate_limits.get("*")

    def daily_budget_of(self, tenant_id: str) -> int | None:
        return self.tenant_daily_budgets.get(tenant_id, self.tenant_daily_budget_microusd)


@cache
def get_settings() -> LlmSettings:
    return LlmSettings()
