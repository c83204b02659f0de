"""Provider routing by model id, keys from Secrets Manager, fallbacks from configuration and agents."""

from __future__ import annotations

import boto3
import httpx2
import pytest
from agentwire_contracts.agents import AgentCatalog, AgentDefinition
from agentwire_contracts.consumer import StepError
from agentwire_llm.fallbacks import FallbackChains
from agentwire_llm.model import CompletionRequest
from agentwire_llm.providers.anthropic import AnthropicProvider
from agentwire_llm.providers.factory import LiveRouter, read_secret
from agentwire_llm.settings import LlmSettings
from llm_testkit import user
from moto import mock_aws

SECRET = "sk-from-secrets-manager-not-real"


def test_llm_routes_each_model_to_its_provider() -> None:
    router = LiveRouter(
        LlmSettings(
            OPENAI_API_KEY="sk-o",
            ANTHROPIC_API_KEY="sk-a",
            AGENTWIRE_LLM_BEDROCK="true",
            AGENTWIRE_LLM_MODEL_PROVIDERS={"my-finetune": "openai"},
        )
    )
    assert router.provider_for("claude-haiku-4-5").name == "anthropic"
    assert router.provider_for("gpt-4o-mini").name == "openai"
    assert router.provider_for("us.anthropic.claude-sonnet-4-5-20250929-v1:0").name == "bedrock"
    assert router.provider_for("my-finetune-v2").name == "openai"
    with pytest.raises(StepError) as raised:
        router.provider_for("llama-local").complete(CompletionRequest(model="llama-local", messages=[user("hi")]))
    assert raised.value.code == "Llm.BadRequest"


def test_llm_keys_come_from_secrets_manager_and_a_missing_key_is_unauthorized() -> None:
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="agentwire/openai", SecretString=SECRET
        )["ARN"]
        router = LiveRouter(LlmSettings(OPENAI_API_KEY_SECRET_ARN=arn))
        provider = router.provider_for("gpt-4o")
    assert provider.name == "openai" and provider._client.api_key == SECRET  # type: ignore[attr-defined]
    assert read_secret is not None
    missing = LiveRouter(LlmSettings(OPENAI_API_KEY_SECRET_ARN=arn)).provider_for("claude-sonnet-4-5")
    with pytest.raises(StepError) as raised:
        missing.complete(CompletionRequest(model="claude-sonnet-4-5", messages=[user("hi")]))
    assert raised.value.code == "Llm.Unauthorized" and not raised.value.retryable


def test_llm_a_rotated_key_rebuilds_the_provider_and_an_unchanged_one_reuses_it() -> None:
    secrets = {"arn:anthropic": "sk-ant-old"}
    reads: list[str] = []

    def read(secret_id: str) -> str:
        reads.append(secret_id)
        return secrets[secret_id]

    router = LiveRouter(LlmSettings(ANTHROPIC_API_KEY_SECRET_ARN="arn:anthropic"), read_secret=read)
    first = router.provider_for("claude-haiku-4-5")
    assert router.provider_for("claude-sonnet-5-5") is first  # same key: one provider, one client
    secrets["arn:anthropic"] = "sk-ant-new"  # rotated (the secret cache has read the new value)
    rotated = router.provider_for("claude-haiku-4-5")
    assert rotated is not first and rotated._client.api_key == "sk-ant-new"  # type: ignore[attr-defined]
    assert first._client.api_key == "sk-ant-old"  # type: ignore[attr-defined]
    assert reads == ["arn:anthropic"] * 3  # read on every call: the Powertools cache keeps it cheap


def test_llm_auto_is_live_with_any_credential_and_offline_without() -> None:
    assert LlmSettings().resolved_provider() == "offline"
    assert LlmSettings(OPENAI_API_KEY="").resolved_provider() == "offline"
    assert LlmSettings(OPENAI_API_KEY_SECRET_ARN="arn:x").resolved_provider() == "live"
    assert LlmSettings(AGENTWIRE_LLM_PROVIDER="scripted").resolved_provider() == "scripted"


def test_llm_fallback_chain_from_configuration_then_the_agent() -> None:
    agents = AgentCatalog(
        [AgentDefinition(name="researcher", model="fast", fallback_models=("gpt-4o", "claude-haiku-4-5"))]
    )
    aliases = {"fast": "claude-haiku-4-5"}
    chains = FallbackChains(
        {"claude-sonnet-4-5": ["fast", "gpt-4o"]}, resolve_model=lambda m: aliases.get(m, m), catalog=lambda: agents
    )
    assert chains("claude-sonnet-4-5", "researcher") == ["claude-haiku-4-5", "gpt-4o"]
    assert chains("claude-sonnet-4-5", "unknown-agent") == ["claude-haiku-4-5", "gpt-4o"]
    assert chains("gpt-4o", "") == []


def test_llm_fallback_chain_is_the_pinned_versions() -> None:
    """The run names its agent as the session pinned it (`name@version`): a later version's fallbacks
    are not the pinned one's."""
    agents = AgentCatalog(
        [
            AgentDefinition(name="a", version="1", model="m", fallback_models=("old",)),
            AgentDefinition(name="a", version="2", model="m", fallback_models=("new",)),
        ]
    )
    chains = FallbackChains({}, catalog=lambda: agents)
    assert chains("m", "a@1") == ["old"]
    assert chains("m", "a@2") == ["new"]
    assert chains("m", "a") == ["new"]  # a bare name (an older orchestrator): the latest
    assert chains("m", "a@9") == []


def test_llm_anthropic_malformed_bodies_are_unavailable() -> None:
    for response in (
        httpx2.Response(200, text="<html>oops</html>"),
        httpx2.Response(200, json={"type": "message", "content": [{"type": "tool_use", "id": "t"}]}),
        httpx2.Response(200, json={"unexpected": True}),
    ):
        provider = AnthropicProvider.create(
            "sk-ant-test", http_client=httpx2.Client(transport=httpx2.MockTransport(lambda request, r=response: r))
        )
        with pytest.raises(StepError) as raised:
            provider.complete(CompletionRequest(model="claude-sonnet-4-5", messages=[user("hi")]))
        assert raised.value.code == "Llm.Unavailable" and raised.value.retryable


def test_llm_models_routed_to_a_provider_without_a_price_fail_closed(dynamodb, monkeypatch) -> None:
    """Built as a cold start builds it: o1/o3/o4, meta., mistral., cohere. go to real providers, but the
    packaged table has no price for them, so under the run's cap (every run has one) they are refused
    before any request. The base URL leads nowhere: a call would have been Llm.Unavailable."""
    from agentwire_llm.dependencies import get_dependencies
    from llm_testkit import completion_request_event

    monkeypatch.setenv("OPENAI_API_KEY", "sk-o-not-real")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("AGENTWIRE_LLM_BEDROCK", "true")
    llm = get_dependencies().completions
    for model in ("o3-mini", "meta.llama3-3-70b-instruct-v1:0", "mistral.mistral-large-2407-v1:0"):
        with pytest.raises(StepError) as raised:
            llm.answer(completion_request_event([user("hi")], model=model, max_cost_microusd=1_000_000))
        assert (raised.value.code, raised.value.retryable) == ("Llm.BadRequest", False)
        assert model in raised.value.message and "price table" in raised.value.message


def test_llm_offline_answers_any_model_under_a_cap_at_its_own_price(dynamodb, monkeypatch) -> None:
    # The offline provider answers every model as agentwire-offline-1, which costs nothing: an agent on a
    # model the table does not list (e.g. "offline") still runs locally under its caps.
    from agentwire_llm.dependencies import get_dependencies
    from llm_testkit import completion_request_event

    monkeypatch.setenv("AGENTWIRE_LLM_PROVIDER", "offline")
    llm = get_dependencies().completions
    data = llm.answer(completion_request_event([user("hi")], model="offline", max_cost_microusd=1)).data
    assert (data.provider, data.cost_microusd) == ("offline", 0)
