"""The agent state from inside the agent loop: memory serves `read_state` / `write_state` like remember and
forget — authorized against the agent the run pinned, versioned with conditional writes (a stale
expected_version is refused and changes nothing), one answer per call however often it is delivered."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentwire_contracts.agents import AgentCatalog, AgentDefinition
from agentwire_contracts.content import ToolCall
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.tool import ToolInvocationRequested
from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.service import serve_tool_call
from agentwire_memory.transcript import SessionRef

from .conftest import TABLE_NAME

AGENTS = AgentCatalog(
    [
        AgentDefinition(name="planner", model="offline", tools=("read_state", "write_state")),
        AgentDefinition(name="reader", model="offline", tools=("read_state",)),
    ]
)


@pytest.fixture
def store(dynamodb: Any) -> DynamoTranscriptStore:
    return DynamoTranscriptStore(dynamodb, TABLE_NAME, sleep=lambda _: None)


def call(name: str, tool_input: dict[str, Any], call_id: str, *, agent: str = "planner") -> Event[Any]:
    data = ToolInvocationRequested(
        session_id="s1", step=1, tool_call=ToolCall.of(call_id, name, tool_input), agent=agent
    )
    return Event.create(data, tenant_id="acme", run_id="run-1", task_token="tok")


def answer(store: DynamoTranscriptStore, event: Event[Any]) -> tuple[bool, str]:
    result = serve_tool_call(event, store, agents=AGENTS).result
    return result.is_error, str(result.content)


def test_a_value_written_is_read_back_with_its_version(store: DynamoTranscriptStore) -> None:
    assert answer(store, call("read_state", {}, "c0")) == (False, "No agent state saved in this session.")
    plan = {"key": "plan", "value": {"steps": ["book", "pay"], "done": 0}}
    assert answer(store, call("write_state", plan, "c1")) == (False, "Saved 'plan' (version 1).")
    assert answer(store, call("write_state", {"key": "count", "value": 3}, "c2")) == (
        False,
        "Saved 'count' (version 1).",
    )
    is_error, content = answer(store, call("read_state", {}, "c3"))
    assert not is_error
    assert json.loads(content) == [
        {"key": "count", "value": 3, "version": 1},
        {"key": "plan", "value": {"steps": ["book", "pay"], "done": 0}, "version": 1},
    ]
    assert json.loads(answer(store, call("read_state", {"key": "count"}, "c4"))[1]) == [
        {"key": "count", "value": 3, "version": 1}
    ]
    # The loop's own view of the same state (what a context request with include_state returns).
    assert [item.key for item in store.get_state(SessionRef("acme", "s1"))] == ["count", "plan"]


def test_a_stale_expected_version_is_refused_and_changes_nothing(store: DynamoTranscriptStore) -> None:
    answer(store, call("write_state", {"key": "plan", "value": "v1"}, "c1"))
    assert answer(store, call("write_state", {"key": "plan", "value": "v2", "expected_version": 1}, "c2")) == (
        False,
        "Saved 'plan' (version 2).",
    )
    is_error, content = answer(
        store, call("write_state", {"key": "plan", "value": "lost", "expected_version": 1}, "c3")
    )
    assert is_error and "at version 2, not 1" in content
    created_only = {"key": "plan", "value": "again", "expected_version": 0}
    assert answer(store, call("write_state", created_only, "c4"))[0] is True
    assert json.loads(answer(store, call("read_state", {"key": "plan"}, "c5"))[1]) == [
        {"key": "plan", "value": "v2", "version": 2}
    ]
    assert answer(store, call("write_state", {"key": "plan", "delete": True}, "c6")) == (
        False,
        "Deleted 'plan'.",
    )
    assert answer(store, call("read_state", {"key": "plan"}, "c7")) == (False, "No agent state under 'plan'.")


def test_a_redelivered_write_answers_the_same_and_writes_once(store: DynamoTranscriptStore) -> None:
    event = call("write_state", {"key": "count", "value": 1}, "c1")
    first, again = serve_tool_call(event, store, agents=AGENTS), serve_tool_call(event, store, agents=AGENTS)
    assert first.result == again.result and first.result.content == "Saved 'count' (version 1)."
    assert [item.version for item in store.get_state(SessionRef("acme", "s1"))] == [1]


def test_an_agent_without_the_tool_is_refused_and_bad_input_is_an_error(store: DynamoTranscriptStore) -> None:
    is_error, content = answer(store, call("write_state", {"key": "plan", "value": 1}, "c1", agent="reader"))
    assert is_error and "refused by policy" in content
    assert store.get_state(SessionRef("acme", "s1")) == []
    is_error, content = answer(store, call("write_state", {"key": "no spaces allowed", "value": 1}, "c2"))
    assert is_error and content.startswith("invalid input for write_state")
