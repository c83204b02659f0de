"""The tools memory offers (remember, forget) are counted like every other tool: ToolCalls and ToolErrors
with the `tool` dimension, as the tools service emits them (the per-tool dashboards SEARCH on it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from agentwire_contracts import testing
from agentwire_contracts.content import ToolCall
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.tool import ToolInvocationRequested
from agentwire_contracts.testing import LambdaContextStub
from agentwire_memory import handler
from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.handler import Dependencies

TABLE = "agentwire-memory-main"


@pytest.fixture
def deps(dynamodb: Any, publisher: Any) -> Iterator[Dependencies]:
    dependencies = Dependencies(store=DynamoTranscriptStore(dynamodb, TABLE, sleep=lambda _: None), publisher=publisher)
    handler.set_dependencies(dependencies)
    yield dependencies
    handler.set_dependencies(None)


def emf_blobs(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


def tool_metrics(blobs: list[dict[str, Any]], name: str) -> list[tuple[float, dict[str, Any], list[str]]]:
    """(value, the blob, its dimension set) of every blob that carries `name`."""
    found = []
    for blob in blobs:
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            if any(metric["Name"] == name for metric in directive["Metrics"]):
                [dimensions] = directive["Dimensions"]
                value = blob[name]
                found.append((value[0] if isinstance(value, list) else value, blob, sorted(dimensions)))
    return found


def call(name: str, tool_input: dict[str, Any], call_id: str) -> dict[str, Any]:
    data = ToolInvocationRequested(
        session_id="s1", step=2, tool_call=ToolCall.of(call_id, name, tool_input), user_id="u1"
    )
    event = Event.create(data, tenant_id="acme", run_id="run-42", task_token="token-tool")
    record = testing.sqs_record(testing.eventbridge_body(event), source_arn=testing.queue_arn("agentwire-memory-tools"))
    return {"Records": [record]}


def test_tool_calls_and_errors_carry_the_tool_dimension(
    deps: Dependencies, publisher: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    context = LambdaContextStub("agentwire-memory-tools")
    assert handler.lambda_handler(call("remember", {"fact": "likes tea"}, "c1"), context) == {"batchItemFailures": []}
    assert handler.lambda_handler(call("forget", {}, "c2"), context) == {"batchItemFailures": []}  # no fact: an error
    blobs = emf_blobs(capsys.readouterr().out)
    is_error = [float(answer.data.result.is_error) for answer in publisher.events]
    assert len(is_error) == 2 and is_error[1] == 1.0

    calls = tool_metrics(blobs, "ToolCalls")
    errors = tool_metrics(blobs, "ToolErrors")
    assert [(value, blob["tool"], blob["service"]) for value, blob, _ in calls] == [
        (1.0, "remember", "memory"),
        (1.0, "forget", "memory"),
    ]
    assert [(value, blob["tool"]) for value, blob, _ in errors] == [(is_error[0], "remember"), (1.0, "forget")]
    for _, blob, dimensions in calls + errors:
        assert dimensions == ["service", "tool"], blob
        # A blob of its own: the per-tool dimension never lands on the batch's other metrics.
        assert "RecordsFailed" not in blob
