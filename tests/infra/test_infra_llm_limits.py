"""The llm's rate limits and tenant budgets are settable at deployment through CDK context (off by default)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agentwire_llm.settings import LlmSettings

pytestmark = pytest.mark.infra

LIMIT_VARIABLES = (
    "AGENTWIRE_LLM_RATE_LIMITS",
    "AGENTWIRE_LLM_TENANT_DAILY_BUDGET_MICROUSD",
    "AGENTWIRE_LLM_TENANT_DAILY_BUDGETS",
)


def llm_environment(synthesized: Any) -> dict[str, Any]:
    functions = synthesized.resources("llm", "AWS::Lambda::Function").values()
    (function,) = [
        f for f in functions if "ANTHROPIC_API_KEY_SECRET_ARN" in f["Properties"]["Environment"]["Variables"]
    ]
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


def test_llm_limits_are_off_unless_configured(synthesized: Any) -> None:
    assert not set(LIMIT_VARIABLES) & set(llm_environment(synthesized))


def test_llm_limits_from_context_reach_the_function_as_the_settings_read_them(
    synthesizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `cdk synth -c llm.requests_per_minute=50 ...` passes them: strings.
    context = {
        "llm.requests_per_minute": "50",
        "llm.tokens_per_minute": "40000",
        "llm.rate_limits": json.dumps({"claude-opus-4-1": {"requests_per_minute": 5}}),
        "llm.tenant_daily_budget_microusd": "20000000",
        "llm.tenant_daily_budgets": json.dumps({"acme": 100000000}),
    }
    environment = llm_environment(synthesizer(tmp_path / "cdk.out", context))

    for key in LIMIT_VARIABLES:  # read back the way the function reads them: from its environment
        monkeypatch.setenv(key, environment[key])
    settings = LlmSettings()
    assert settings.rate_limits["*"].model_dump() == {"requests_per_minute": 50, "tokens_per_minute": 40000}
    assert settings.rate_limits["claude-opus-4-1"].model_dump() == {"requests_per_minute": 5, "tokens_per_minute": None}
    assert settings.tenant_daily_budget_microusd == 20_000_000
    assert settings.tenant_daily_budgets == {"acme": 100_000_000}


def test_llm_a_malformed_limit_fails_synthesis(synthesizer: Any, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="requests_per_minute"):
        synthesizer(tmp_path / "cdk.out", {"llm.rate_limits": json.dumps({"*": {"requests_per_minute": 0}})})
