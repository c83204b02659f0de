"""The registry: tools are data, the catalog is sorted and byte-stable, teams plug in their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from agentwire_tools.builtins import builtin_tools
from agentwire_tools.dependencies import build_registry
from agentwire_tools.execution import execute
from agentwire_tools.registry import (
    ENTRY_POINT_GROUP,
    DuplicateTool,
    SideEffect,
    Tool,
    ToolRegistry,
    UnknownTool,
    load_entry_point_tools,
)
from agentwire_tools.settings import ToolsSettings
from pydantic import BaseModel, Field
from tools_testkit import EchoInput


class Refund(BaseModel):
    order_id: str = Field(pattern=r"^ord_[0-9]+$", description="The order to refund.")
    amount_cents: int = Field(gt=0, description="How much to refund, in cents.")
    reason: str | None = None


def refund_tool() -> Tool[Refund]:
    return Tool(
        untrusted_output=False,
        name="issue_refund",
        description="Refund part or all of an order.",
        input_model=Refund,
        run=lambda call: {"refunded": call.amount_cents},
        timeout_s=20,
        needs_approval=True,
        side_effect=SideEffect.IRREVERSIBLE,
    )


def catalog_json(registry: ToolRegistry, names: list[str]) -> str:
    return json.dumps([spec.model_dump(mode="json") for spec in registry.catalog(names)])


def test_tools_registry_catalog_is_sorted_by_name_and_deduplicated() -> None:
    registry = ToolRegistry([*builtin_tools(), refund_tool()])
    specs = registry.catalog(["issue_refund", "current_time", "calculator", "calculator"])
    assert [spec.name for spec in specs] == ["calculator", "current_time", "issue_refund"]


def test_tools_registry_catalog_is_byte_identical_whatever_the_registration_order() -> None:
    names = ["issue_refund", "calculator", "current_time"]
    forward = ToolRegistry([*builtin_tools(), refund_tool()])
    backward = ToolRegistry([refund_tool(), *reversed(builtin_tools())])
    first = catalog_json(forward, names)
    assert first == catalog_json(forward, list(reversed(names)))
    assert first == catalog_json(backward, names)


def test_tools_registry_catalog_is_byte_identical_across_processes() -> None:
    """The prompt prefix is cached by the provider: a new Lambda sandbox must send the same bytes."""
    script = textwrap.dedent(
        """
        import json
        from agentwire_tools.builtins import builtin_tools
        from agentwire_tools.registry import ToolRegistry
        specs = ToolRegistry(builtin_tools()).catalog(["current_time", "calculator"])
        print(json.dumps([s.model_dump(mode="json") for s in specs]))
        """
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == catalog_json(ToolRegistry(builtin_tools()), ["calculator", "current_time"])


def test_tools_registry_spec_carries_the_input_models_json_schema() -> None:
    spec = refund_tool().spec
    assert spec.name == "issue_refund"
    assert spec.description == "Refund part or all of an order."
    schema = spec.input_schema
    assert schema["type"] == "object"
    assert schema["required"] == ["order_id", "amount_cents"]
    assert schema["properties"]["amount_cents"] == {
        "description": "How much to refund, in cents.",
        "exclusiveMinimum": 0,
        "title": "Amount Cents",
        "type": "integer",
    }
    # keys are sorted at every level, so the bytes never depend on a generator's whims
    assert list(schema) == sorted(schema)
    assert list(schema["properties"]) == sorted(schema["properties"])


def test_tools_registry_keeps_the_policy_fields_later_steps_build_on() -> None:
    tool = refund_tool()
    assert tool.needs_approval is True
    assert tool.side_effect is SideEffect.IRREVERSIBLE
    assert tool.timeout_s == 20
    effects = {tool.name: tool.side_effect for tool in builtin_tools()}
    assert effects == {
        "calculator": SideEffect.READ_ONLY,
        "current_time": SideEffect.READ_ONLY,
        "http_fetch": SideEffect.READ_ONLY,
        "send_notification": SideEffect.IRREVERSIBLE,
    }
    assert [effect.value for effect in SideEffect] == ["read_only", "idempotent", "compensatable", "irreversible"]


def test_tools_registry_unknown_names_in_the_catalog_are_all_reported() -> None:
    registry = ToolRegistry(builtin_tools())
    with pytest.raises(UnknownTool) as raised:
        registry.catalog(["calculator", "web_search", "bash"])
    assert raised.value.names == ["bash", "web_search"]
    assert "available: calculator, current_time" in str(raised.value)


def test_tools_registry_refuses_a_duplicate_name() -> None:
    registry = ToolRegistry(builtin_tools())
    clash = Tool(
        untrusted_output=False,
        name="calculator",
        description="Another one.",
        input_model=EchoInput,
        run=lambda c: c.text,
    )
    with pytest.raises(DuplicateTool):
        registry.register(clash)
    assert registry.get("calculator").description.startswith("Evaluate an arithmetic expression")


@pytest.mark.parametrize("bad_name", ["has space", "dots.are.not.allowed", "", "x" * 65])
def test_tools_registry_refuses_a_name_the_model_apis_would_reject(bad_name: str) -> None:
    with pytest.raises(ValueError):
        Tool(untrusted_output=False, name=bad_name, description="d", input_model=EchoInput, run=lambda c: c.text)


def test_tools_registry_refuses_a_nonsensical_timeout() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        Tool(
            untrusted_output=False, name="t", description="d", input_model=EchoInput, run=lambda c: c.text, timeout_s=0
        )


def test_tools_registry_a_team_registers_its_own_tool_and_it_runs() -> None:
    registry = ToolRegistry(builtin_tools())
    registry.register(refund_tool())
    assert registry.names() == [
        "calculator",
        "current_time",
        "http_fetch",
        "issue_refund",
        "send_notification",
    ]
    assert execute(registry, "issue_refund", {"order_id": "ord_42", "amount_cents": 500}).content == '{"refunded":500}'
    bad = execute(registry, "issue_refund", {"order_id": "42", "amount_cents": -1})
    assert bad.is_error
    assert "order_id: String should match pattern" in bad.content
    assert "amount_cents: Input should be greater than 0" in bad.content


TEAM_PACKAGE = """
from pydantic import BaseModel
from agentwire_tools.registry import SideEffect, Tool


class Lookup(BaseModel):
    sku: str


def _lookup(call: Lookup) -> dict:
    return {"sku": call.sku, "in_stock": 3}


STOCK = Tool(
    untrusted_output=False, name="stock_level", description="Units in stock for a SKU.", input_model=Lookup, run=_lookup
)


def build_tools():
    return [
        Tool(untrusted_output=False,name="reserve_stock", description="Hold units.", input_model=Lookup, run=_lookup,
             side_effect=SideEffect.COMPENSATABLE, needs_approval=True),
    ]
"""


def test_tools_registry_loads_tools_a_team_declares_as_entry_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme_inventory_tools.py").write_text(TEAM_PACKAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    entry_points = [
        metadata.EntryPoint(name="stock", value="acme_inventory_tools:STOCK", group=ENTRY_POINT_GROUP),
        metadata.EntryPoint(name="reserve", value="acme_inventory_tools:build_tools", group=ENTRY_POINT_GROUP),
    ]
    registry = ToolRegistry(builtin_tools())
    assert load_entry_point_tools(registry, entry_points) == ["stock_level", "reserve_stock"]
    assert registry.get("reserve_stock").side_effect is SideEffect.COMPENSATABLE
    assert execute(registry, "stock_level", {"sku": "A-1"}).content == '{"sku":"A-1","in_stock":3}'
    assert [spec.name for spec in registry.catalog(["stock_level", "calculator"])] == ["calculator", "stock_level"]


def test_tools_registry_refuses_an_entry_point_that_is_not_a_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme_broken_tools.py").write_text("NOT_A_TOOL = ['calculator']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry_point = metadata.EntryPoint(name="broken", value="acme_broken_tools:NOT_A_TOOL", group=ENTRY_POINT_GROUP)
    with pytest.raises(TypeError, match="not a Tool"):
        load_entry_point_tools(ToolRegistry(), [entry_point])


def test_tools_registry_default_registry_reads_the_installed_entry_point_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Any] = []

    def fake_entry_points(*, group: str) -> list[metadata.EntryPoint]:
        seen.append(group)
        return []

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    registry = build_registry(ToolsSettings(TOOLS_IDEMPOTENCY_TABLE_NAME="t"))
    assert seen == [ENTRY_POINT_GROUP]
    assert registry.names() == ["calculator", "current_time", "http_fetch", "send_notification"]
    build_registry(ToolsSettings(TOOLS_IDEMPOTENCY_TABLE_NAME="t", TOOLS_LOAD_ENTRY_POINTS=False))
    assert seen == [ENTRY_POINT_GROUP]
