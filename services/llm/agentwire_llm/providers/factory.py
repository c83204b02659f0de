"""Which provider answers which model, from the settings."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from agentwire_contracts.consumer import StepError

from agentwire_llm import errors
from agentwire_llm.completion import ProviderRouter, SingleProvider
from agentwire_llm.model import Completion, CompletionRequest, ModelProvider
from agentwire_llm.providers.offline import OfflineProvider
from agentwire_llm.providers.scripted import Script, ScriptCursor, ScriptedProvider
from agentwire_llm.settings import LlmSettings, ProviderName


class MisconfiguredProvider:
    """Answers every call with the configuration error, so runs fail fast with a clear code instead
    of their requests cycling through SQS into the DLQ."""

    def __init__(self, name: str, error: StepError) -> None:
        self._name = name
        self._error = error

    @property
    def name(self) -> str:
        return self._name

    def complete(self, request: CompletionRequest) -> Completion:
        raise self._error


#: Reads a secret (Secrets Manager on AWS); never logged, never part of an error message.
SecretReader = Callable[[str], str]


def read_secret(secret_id: str) -> str:
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(secret_id, max_age=300)
    return value.decode() if isinstance(value, bytes) else str(value)


class LiveRouter:
    """Routes each model id to its provider (`settings.provider_of`), building each provider on first use
    and again when its key changes: a key rotated in Secrets Manager is used by warm functions as soon as
    the secret cache (5 min) reads the new value, instead of every call failing `Llm.Unauthorized`."""

    def __init__(self, settings: LlmSettings, read_secret: SecretReader = read_secret) -> None:
        self._settings = settings
        self._read_secret = read_secret
        #: provider name -> (a digest of the key it was built with, the provider).
        self._providers: dict[str, tuple[str, ModelProvider]] = {}

    def provider_for(self, model: str) -> ModelProvider:
        name = self._settings.provider_of(model)
        if name is None:
            return MisconfiguredProvider(
                "unknown", errors.bad_request(f"no provider is configured for the model {model!r}")
            )
        key = self._key_of(name)
        # A digest, not the key: the router keeps no second copy of it.
        fingerprint = hashlib.sha256(key.encode()).hexdigest() if key is not None else ""
        built = self._providers.get(name)
        if built is None or built[0] != fingerprint:
            built = (fingerprint, self._build(name, key))
            self._providers[name] = built
        return built[1]

    def _key_of(self, name: ProviderName) -> str | None:
        from pydantic import SecretStr

        s = self._settings
        direct, secret_id = {
            "anthropic": (s.anthropic_api_key, s.anthropic_api_key_secret),
            "openai": (s.openai_api_key, s.openai_api_key_secret),
        }.get(name, (None, None))
        if isinstance(direct, SecretStr):
            return direct.get_secret_value()
        if secret_id:
            return self._read_secret(secret_id)
        return None

    def _build(self, name: ProviderName, key: str | None) -> ModelProvider:
        s = self._settings
        if name == "anthropic":
            if key is None:
                return MisconfiguredProvider("anthropic", errors.llm_error(errors.UNAUTHORIZED, "no Anthropic API key"))
            from agentwire_llm.providers.anthropic import AnthropicProvider

            return AnthropicProvider.create(
                key, base_url=s.anthropic_base_url, timeout_s=s.request_timeout_s, cache_prompt=s.prompt_caching
            )
        if name == "openai":
            if key is None:
                return MisconfiguredProvider("openai", errors.llm_error(errors.UNAUTHORIZED, "no OpenAI API key"))
            from agentwire_llm.providers.openai import OpenAIProvider

            return OpenAIProvider.create(key, base_url=s.openai_base_url, timeout_s=s.request_timeout_s)
        from agentwire_llm.providers.bedrock import BedrockProvider

        return BedrockProvider.create(
            region=s.bedrock_region, timeout_s=s.request_timeout_s, cache_prompt=s.prompt_caching
        )


def build_router(
    settings: LlmSettings,
    script_cursor: Callable[[Script], ScriptCursor],
    read_secret: SecretReader = read_secret,
) -> ProviderRouter:
    """`script_cursor` makes the shared cursor of a script (only called for the scripted provider)."""
    choice = settings.resolved_provider()
    if choice == "offline":
        return SingleProvider(OfflineProvider(model=settings.offline_model))
    if choice == "scripted":
        if settings.script_path is None:
            return SingleProvider(
                MisconfiguredProvider(
                    "scripted", errors.llm_error(errors.SCRIPT_INVALID, "AGENTWIRE_LLM_SCRIPT is not set")
                )
            )
        try:
            script = Script.load(settings.script_path)
        except StepError as error:
            return SingleProvider(MisconfiguredProvider("scripted", error))
        return SingleProvider(ScriptedProvider(script, script_cursor(script)))
    return LiveRouter(settings, read_secret)


def build_provider(settings: LlmSettings, script_cursor: Callable[[Script], ScriptCursor]) -> ModelProvider:
    """The provider of the default model (kept for callers that want one provider)."""
    return build_router(settings, script_cursor).provider_for(settings.resolve_model("default"))
