"""Manifests derive names and routing rules; tool invocations can be routed to the service offering them."""

from __future__ import annotations

import pytest
from agentwire_contracts.manifest import ConsumerSpec, ServiceManifest
from agentwire_contracts.names import DetailType
from agentwire_contracts.remote_tools import REMOTE_TOOLS, tools_served_by

INVOKE = DetailType.TOOL_INVOCATION_REQUESTED


def manifest(*consumers: ConsumerSpec) -> ServiceManifest:
    return ServiceManifest(service="svc", source="agentwire.svc", consumers=consumers)


def test_plain_consumer_has_one_rule_on_detail_types() -> None:
    consumer = ConsumerSpec(name="main", handler="m.h", detail_types=("b.x.v1", "a.x.v1"))
    m = manifest(consumer)
    assert m.event_patterns(consumer) == [{"detail-type": ["a.x.v1", "b.x.v1"]}]
    assert m.event_pattern(consumer) == {"detail-type": ["a.x.v1", "b.x.v1"]}
    assert m.rule_name(consumer) == "agentwire-svc-main-rule"
    assert consumer.visibility_timeout_s == 6 * consumer.function_timeout_s


def test_service_offering_tools_receives_only_their_invocations() -> None:
    consumer = ConsumerSpec(name="tools", handler="m.h", detail_types=(INVOKE,), tool_names=("remember", "forget"))
    assert manifest(consumer).event_patterns(consumer) == [
        {"detail-type": [INVOKE], "detail": {"data": {"tool_call": {"name": ["forget", "remember"]}}}}
    ]


def test_tools_service_receives_every_other_invocation_in_a_second_rule() -> None:
    consumer = ConsumerSpec(
        name="invocations",
        handler="m.h",
        detail_types=(DetailType.TOOL_CATALOG_REQUESTED, INVOKE),
        excluded_tool_names=("remember",),
    )
    m = manifest(consumer)
    assert m.event_patterns(consumer) == [
        {"detail-type": [DetailType.TOOL_CATALOG_REQUESTED]},
        {"detail-type": [INVOKE], "detail": {"data": {"tool_call": {"name": [{"anything-but": ["remember"]}]}}}},
    ]
    assert m.rule_name(consumer, index=1) == "agentwire-svc-invocations-rule-1"
    with pytest.raises(ValueError, match="event_patterns"):
        m.event_pattern(consumer)


def test_tool_routing_is_validated() -> None:
    with pytest.raises(ValueError):
        ConsumerSpec(name="x", handler="m.h", detail_types=("a.b.v1",), tool_names=("remember",))
    with pytest.raises(ValueError):
        ConsumerSpec(name="x", handler="m.h", detail_types=(INVOKE,), tool_names=("a",), excluded_tool_names=("b",))


def test_remote_tools_are_described_for_the_model() -> None:
    assert tools_served_by("memory") == ("forget", "read_state", "remember", "write_state")
    for name, tool in REMOTE_TOOLS.items():
        assert tool.spec.name == name
        schema = tool.spec.input_schema
        assert schema["type"] == "object" and schema["properties"], name
        # What the model must send is marked required; read_state alone takes only optional input.
        assert set(schema.get("required", ())) <= set(schema["properties"]), name
        assert schema.get("required") or name == "read_state", name
