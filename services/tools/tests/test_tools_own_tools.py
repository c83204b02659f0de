"""A team adds a tool from its own package through a registration module (TOOLS_REGISTRATION_MODULES):
the service's wiring loads it, the policy governs it like any tool, and it honours the idempotency key."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentwire_contracts.agents import AgentCatalog, AgentDefinition
from agentwire_contracts.content import ToolCall
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.tool import ToolInvocationRequested
from agentwire_tools.audit import InMemoryAuditLog
from agentwire_tools.dependencies import build_registry
from agentwire_tools.registry import SideEffect, ToolRegistry, load_registration_modules
from agentwire_tools.service import ToolsService
from agentwire_tools.settings import ToolsSettings

sys_path = str(Path(__file__).parent)


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(sys_path)


def test_tools_own_tools_registration_module_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLS_REGISTRATION_MODULES", "acme_team_tools")
    registry = build_registry(ToolsSettings())
    tool = registry.get("issue_refund")
    assert tool.side_effect is SideEffect.IDEMPOTENT and "calculator" in registry


def test_tools_own_tools_a_module_without_tools_is_refused() -> None:
    with pytest.raises(TypeError, match="neither register"):
        load_registration_modules(ToolRegistry(), ["json"])


def call(call_id: str, agent: str) -> Event[ToolInvocationRequested]:
    return Event.create(
        ToolInvocationRequested(
            session_id="s",
            step=1,
            tool_call=ToolCall.of(call_id, "issue_refund", {"order_id": "ord_7", "amount_cents": 250}),
            agent=agent,
            user_id="alice",
        ),
        tenant_id="acme",
        run_id="run-9",
    )


def test_tools_own_tools_are_authorized_and_honour_the_idempotency_key() -> None:
    import acme_team_tools

    registry = ToolRegistry()
    load_registration_modules(registry, ["acme_team_tools"])
    audit = InMemoryAuditLog()
    agents = AgentCatalog(
        [
            AgentDefinition(name="support", model="m", tools=("issue_refund",)),
            AgentDefinition(name="assistant", model="m", tools=()),
        ]
    )
    service = ToolsService(registry, agents=agents, audit=audit)
    # Not offered to the assistant: denied by default, never run.
    assert service.invoke(call("toolu_a", "assistant")).result.is_error
    assert acme_team_tools.ISSUED == {}
    # Offered to support: runs; the same call id run again (no idempotency store here) refunds once.
    first = service.invoke(call("toolu_b", "support"))
    again = service.invoke(call("toolu_b", "support"))
    assert not first.result.is_error and first.result.content == again.result.content
    assert acme_team_tools.ISSUED == {"acme/run-9/toolu_b": 250}
    assert [r.decision for r in audit.records] == ["deny", "allow", "allow"]
