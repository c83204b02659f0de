"""Agent definitions are data: validated, versioned, loaded the same way by every service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agentwire_contracts.agents import (
    DEFAULT_AGENT,
    AgentDefinition,
    InvalidAgentDefinition,
    UnknownAgent,
    load_catalog,
)


def write(directory: Path, name: str, **fields: object) -> None:
    body = {"name": name, "model": "m", **fields}
    (directory / f"{name}-{fields.get('version', '1')}.json").write_text(json.dumps(body))


def test_packaged_defaults_validate_and_offer_the_default_agent() -> None:
    catalog = load_catalog()
    agent = catalog.get(DEFAULT_AGENT)
    assert agent.tools and agent.limits.max_model_turns >= 1


def test_latest_version_wins_and_a_pinned_version_stays_reachable(tmp_path: Path) -> None:
    write(tmp_path, "helper", version="2", system="new")
    write(tmp_path, "helper", version="10", system="newest")
    write(tmp_path, "helper", version="1", system="old")
    catalog = load_catalog(tmp_path)
    assert catalog.get("helper").version == "10"
    assert catalog.get("helper", "1").system == "old"
    assert catalog.versions("helper") == ["1", "2", "10"]
    with pytest.raises(UnknownAgent):
        catalog.get("helper", "3")
    # A reference, as a session pins it and every service resolves it: `name@version`, or `name` (latest).
    assert catalog.get_ref("helper@1").system == "old"
    assert catalog.get_ref("helper").version == "10"
    with pytest.raises(UnknownAgent):
        catalog.get_ref("helper@3")


def test_invalid_files_are_rejected_with_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"name": "x"}')
    with pytest.raises(InvalidAgentDefinition, match="broken.json"):
        load_catalog(tmp_path)


def test_approval_rules_must_name_offered_tools() -> None:
    with pytest.raises(ValueError, match="does not offer"):
        AgentDefinition(name="a", model="m", tools=("calculator",), approval={"require_for": ["send_email"]})


def test_an_answer_that_fills_the_models_window_is_rejected_at_load() -> None:
    with pytest.raises(ValueError, match="leaves no room"):
        AgentDefinition(name="a", model="m", max_tokens=8_192, context={"model_context_tokens": 8_192})
    fits = AgentDefinition(name="a", model="m", max_tokens=4_096, context={"model_context_tokens": 8_192})
    assert fits.context.model_context_tokens == 8_192


def test_environment_points_every_service_at_one_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "ops", tools=["calculator"])
    monkeypatch.setenv("AGENTWIRE_AGENTS_DIR", str(tmp_path))
    assert load_catalog().names() == ["ops"]


def test_the_packaged_agents_latest_versions_use_models_that_are_neither_deprecated_nor_unpriced() -> None:
    # The Anthropic SDK pinned in uv.lock lists the models it warns about (retirement dates); a packaged agent
    # on one of them fails every call once it retires (claude-sonnet-4-5 retired on 2026-11-30). Exactly
    # priced: a prefix match would guess (e.g. "claude-sonnet" at $3/$15 for a $2/$10 model).
    from agentwire_llm.pricing import default_price_table
    from agentwire_llm.settings import LlmSettings
    from anthropic._data.deprecated_models import DEPRECATED_MODELS

    catalog = load_catalog()
    prices = default_price_table()
    latest = {catalog.get(name) for name in {agent.name for agent in catalog}}
    default_model = LlmSettings().resolve_model("default")
    for model in {agent.model for agent in latest} | {default_model}:
        assert model not in DEPRECATED_MODELS, f"{model} is deprecated: {DEPRECATED_MODELS[model]}"
        assert prices.has_exact(model), f"{model} has no price of its own in data/prices.json"
