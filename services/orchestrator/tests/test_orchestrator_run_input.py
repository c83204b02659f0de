"""The execution input: every path the state machine reads from the input exists in what we build."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from agentwire_contracts.agents import AgentDefinition
from agentwire_orchestrator import asl
from agentwire_orchestrator.agents import builtin_catalog
from agentwire_orchestrator.run_input import (
    StepTimeouts,
    agent_input,
    build_execution_input,
    deadline,
    encode,
    execution_arn,
    is_valid_execution_name,
    rfc3339,
)
from orchestrator_testkit import TENANT, run_requested

#: A reference-path in any string of the ASL (`$.a.b`, also inside intrinsic functions), but not a
#: context-object path (`$$.Task.Token`).
PATH = re.compile(r"(?<!\$)\$((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
#: The parts of the state the input provides; later states add turn, context, catalog, error, ...
INPUT_ROOTS = ("run", "counters", "append")


def load_agent(name: str) -> AgentDefinition:
    return builtin_catalog().get(name)


def asl_paths(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for value in node.values():
            found |= asl_paths(value)
    elif isinstance(node, list):
        for value in node:
            found |= asl_paths(value)
    elif isinstance(node, str):
        found |= {match.group(1) for match in PATH.finditer(node)}
    return found


def input_paths() -> set[str]:
    """Paths of the ASL rooted in the execution input (in the Map, `$.run` is the same object)."""
    return {path for path in asl_paths(json.loads(asl.definition_template())) if path.split(".")[1] in INPUT_ROOTS}


def resolve(document: Any, path: str) -> Any:
    node = document
    for key in path.strip(".").split("."):
        assert isinstance(node, dict) and key in node, f"${path}: no key {key!r}"
        node = node[key]
    return node


def test_the_asl_reads_the_input_we_expect_to_check() -> None:
    paths = input_paths()
    # A guard against the regex silently finding nothing.
    assert {".run.run_id", ".run.agent.limits.max_model_turns", ".counters.model_turns", ".append.messages"} <= paths


@pytest.mark.parametrize("user_id", ["u-1", None])
@pytest.mark.parametrize("trace_header", ["Root=1-5759e988-bd862e3fe1be46a994272793", None])
def test_every_input_path_the_asl_reads_is_present(user_id: str | None, trace_header: str | None) -> None:
    built = build_execution_input(run_requested(user_id=user_id, trace_header=trace_header), load_agent("assistant"))
    for path in input_paths():
        resolve(built, path)


def test_the_input_in_full() -> None:
    event = run_requested("run-9", text="hello")
    agent = load_agent("assistant")
    built = build_execution_input(event, agent)
    assert built == {
        "run": {
            "run_id": "run-9",
            "tenant_id": TENANT,
            "session_id": "s-1",
            "user_id": "u-1",
            "trace_header": None,
            "traceparent": None,
            "request_event_id": event.metadata.event_id,
            "deadline": deadline(event, agent),
            "agent": agent_input(agent),
            "timeouts": {"catalog_s": 60, "memory_s": 60, "model_s": 600, "tool_s": 300, "tool_heartbeat_s": 90},
        },
        "append": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]},
        "counters": {
            "model_turns": 0,
            "tool_calls": 0,
            "tool_calls_after": 0,
            "total_tokens": 0,
            "cost_microusd": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "at": rfc3339(event.metadata.occurred_at),
        },
    }


def test_counters_cover_every_counter_the_asl_reads() -> None:
    built = build_execution_input(run_requested(), load_agent("assistant"))
    read = {path.split(".")[2] for path in input_paths() if path.startswith(".counters.")}
    assert read == set(built["counters"])


def test_agent_keys_are_exactly_those_the_asl_reads_plus_the_name_it_reports() -> None:
    read = {path.split(".")[3] for path in input_paths() if path.startswith(".run.agent.")}
    agent = AgentDefinition(name="a", model="m")
    assert read <= set(agent_input(agent))


def test_the_deadline_is_the_request_time_plus_the_agents_wall_time() -> None:
    event = run_requested()
    event.metadata.occurred_at = datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    agent = AgentDefinition(name="a", model="m", limits={"max_wall_time_s": 3600})
    assert deadline(event, agent) == "2030-01-02T04:04:05Z"


def test_step_timeouts_come_from_the_starter() -> None:
    built = build_execution_input(run_requested(), load_agent("assistant"), StepTimeouts(model_s=5, tool_s=3))
    # The heartbeat is capped below the tool's timeout (Step Functions refuses HeartbeatSeconds >= TimeoutSeconds).
    assert built["run"]["timeouts"] == {
        "catalog_s": 60,
        "memory_s": 60,
        "model_s": 5,
        "tool_s": 3,
        "tool_heartbeat_s": 2,
    }


def test_step_timeouts_refuse_a_tool_timeout_too_short_for_a_heartbeat() -> None:
    with pytest.raises(ValueError, match="tool_s"):
        StepTimeouts(tool_s=1)


def test_encoding_is_deterministic_so_a_redelivery_builds_the_same_input() -> None:
    event = run_requested()
    agent = load_agent("assistant")
    assert encode(build_execution_input(event, agent)) == encode(build_execution_input(event, agent))


def test_execution_arn_from_state_machine_arn() -> None:
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:agentwire-run"
    assert execution_arn(machine, "run-1") == "arn:aws:states:us-east-1:123456789012:execution:agentwire-run:run-1"
    with pytest.raises(ValueError):
        execution_arn("arn:aws:sqs:us-east-1:123456789012:queue", "run-1")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("run-01J9ZQ", True),
        ("a" * 80, True),
        ("a" * 81, False),
        ("", False),
        ("has space", False),
        ("semi;colon", False),
    ],
)
def test_execution_names(name: str, valid: bool) -> None:
    assert is_valid_execution_name(name) is valid
