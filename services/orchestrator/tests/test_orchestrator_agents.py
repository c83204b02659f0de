"""The orchestrator reads agents from the contracts; a run names one as `name` (latest) or `name@version`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agentwire_contracts.agents import AgentCatalog, AgentDefinition, AgentLimits, load_catalog, split_ref
from agentwire_orchestrator.agents import builtin_catalog, resolve
from agentwire_orchestrator.run_input import agent_input


def agent(version: str = "1", **overrides: object) -> AgentDefinition:
    return AgentDefinition.model_validate({"name": "helper", "version": version, "model": "m", **overrides})


def test_the_builtin_catalog_is_the_contracts_defaults() -> None:
    assert builtin_catalog().names() == load_catalog().names()
    assert "assistant" in builtin_catalog().names()


@pytest.mark.parametrize(
    ("ref", "expected"), [("assistant", ("assistant", None)), ("assistant@2", ("assistant", "2")), ("a@", ("a", None))]
)
def test_split_ref(ref: str, expected: tuple[str, str | None]) -> None:
    assert split_ref(ref) == expected


def test_resolve_picks_the_latest_or_the_pinned_version() -> None:
    catalog = AgentCatalog([agent("1"), agent("2"), agent("10")])
    assert resolve(catalog, "helper").version == "10"  # type: ignore[union-attr]
    assert resolve(catalog, "helper@2").version == "2"  # type: ignore[union-attr]
    assert resolve(catalog, "helper@3") is None
    assert resolve(catalog, "helper", "1").version == "1"  # type: ignore[union-attr]  # run.requested's agent_version
    assert resolve(catalog, "nobody") is None


def test_agents_dir_overrides_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "solo.json").write_text(json.dumps({"name": "solo", "model": "m"}))
    monkeypatch.setenv("AGENTWIRE_AGENTS_DIR", str(tmp_path))
    assert load_catalog().names() == ["solo"]


def test_the_run_input_carries_every_policy_the_state_machine_reads() -> None:
    built = agent_input(
        agent(
            tools=["calculator", "send_email"],
            cache_responses=True,
            tool_concurrency=2,
            limits=AgentLimits(max_model_turns=3, max_tool_calls=5, max_total_tokens=999, max_cost_usd=0.25,
                               max_wall_time_s=60),
            approval={"require_for": ["calculator"], "waive_for": ["send_email"], "timeout_s": 30},
            context={"max_context_tokens": 4000, "compaction_threshold_tokens": 1000, "model_context_tokens": 32_000},
        )
    )  # fmt: skip
    assert built["limits"] == {
        "max_model_turns": 3, "max_tool_calls": 5, "max_total_tokens": 999, "max_cost_microusd": 250_000,
        "max_wall_time_s": 60,
    }  # fmt: skip
    assert built["approval"] == {"require_for": ["calculator"], "waive_for": ["send_email"], "timeout_s": 30}
    assert built["context"] == {
        "max_context_tokens": 4000,
        "compaction_threshold_tokens": 1000,
        "model_context_tokens": 32_000,
    }
    assert built["cache_responses"] is True and built["tool_concurrency"] == 2
    assert built["tools"] == ["calculator", "send_email"] and built["version"] == "1"
