"""The tools' spans: `execute_tool {name}` under the record span, GenAI tool attributes, error results
marked, input and result never recorded unless content recording is on (then redacted)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agentwire_contracts import telemetry
from agentwire_contracts.publish import EventPublisher
from agentwire_contracts.testing import (
    LambdaContextStub,
    RecordingEventsClient,
    SpanRecorder,
    eventbridge_body,
    recording_spans,
    sqs_batch_event,
)
from agentwire_tools import handler
from agentwire_tools.builtins import builtin_tools
from agentwire_tools.dependencies import Dependencies
from agentwire_tools.registry import ToolRegistry
from tools_testkit import invocation_request, permissive_service

PARENT_SPAN = "00f067aa0ba902b7"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def spans(tmp_path: Path) -> Iterator[SpanRecorder]:
    with recording_spans("tools", tmp_path) as recorder:
        yield recorder


@pytest.fixture
def bus() -> Iterator[RecordingEventsClient]:
    client = RecordingEventsClient()
    service = permissive_service(ToolRegistry(builtin_tools()))
    handler.set_dependencies(Dependencies(service=service, publisher=EventPublisher(client=client, bus_name="b")))
    yield client
    handler.set_dependencies(None)


def call(tool: str, tool_input: dict[str, object]) -> None:
    request = invocation_request(tool, tool_input, call_id="toolu_9", step=4)
    metadata = request.metadata.model_copy(update={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"})
    body = eventbridge_body(request.model_copy(update={"metadata": metadata}))
    handler.lambda_handler(sqs_batch_event([body]), LambdaContextStub("agentwire-tools-invocations"))


def test_tools_an_execution_is_a_genai_span_under_the_record_span(spans, bus) -> None:
    call("calculator", {"expression": "6 * 7"})

    record = spans.one("process tool.invocation.requested.v1")
    execution = spans.one("execute_tool calculator")
    assert record["trace_id"] == execution["trace_id"] == TRACE_ID and record["parent_span_id"] == PARENT_SPAN
    assert execution["parent_span_id"] == record["span_id"] and execution["status"] == "UNSET"
    assert execution["attributes"] == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "calculator",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "toolu_9",
        "gen_ai.conversation.id": "session-1",
        "agentwire.step": 4,
    }
    [answer] = bus.details("tool.invocation.completed.v1")
    assert answer["metadata"]["traceparent"].split("-")[1:3] == [TRACE_ID, record["span_id"]]


def test_tools_an_error_result_marks_the_span(spans, bus) -> None:
    call("calculator", {"expression": "1 / 0"})
    execution = spans.one("execute_tool calculator")
    assert execution["status"] == "ERROR" and execution["attributes"]["error.type"] == handler.TOOL_ERROR


def test_tools_input_and_result_recorded_only_when_enabled_and_redacted(spans, bus, monkeypatch) -> None:
    monkeypatch.setenv(telemetry.ENV_RECORD_CONTENT, "true")
    call("calculator", {"expression": "6 * 7"})
    attributes = spans.one("execute_tool calculator")["attributes"]
    assert "6 * 7" in attributes["gen_ai.tool.call.arguments"] and "42" in attributes["gen_ai.tool.call.result"]

    call("calculator", {"expression": "1", "api_key": "hunter2-not-for-spans"})  # rejected input, still recorded
    [_, rejected] = spans.spans("execute_tool calculator")
    assert "hunter2" not in rejected["attributes"]["gen_ai.tool.call.arguments"]
