"""The llm's spans and log keys: a record span continuing the request's trace, a GenAI `chat {model}` CLIENT
span per provider call (usage, cost, failures), no content unless recording is on, and then redacted."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agentwire_contracts import telemetry
from agentwire_contracts.publish import EventPublisher
from agentwire_contracts.testing import SpanRecorder, eventbridge_body, recording_spans
from agentwire_llm import handler
from agentwire_llm.completion import CallDirectly, CompletionService
from agentwire_llm.dependencies import Dependencies, set_dependencies
from agentwire_llm.providers.offline import OfflineProvider
from llm_testkit import FakeEventsClient, FakeLambdaContext, completion_request_event, sqs_record, user

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
SECRET = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123"


@pytest.fixture
def spans(tmp_path: Path) -> Iterator[SpanRecorder]:
    with recording_spans("llm", tmp_path) as recorder:
        yield recorder


@pytest.fixture
def bus() -> Iterator[FakeEventsClient]:
    client = FakeEventsClient()
    completions = CompletionService(OfflineProvider(), CallDirectly())
    set_dependencies(Dependencies(completions=completions, publisher=EventPublisher(client=client, bus_name="b")))
    yield client
    set_dependencies(None)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    original = handler.logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    yield stream
    handler.logger.registered_handler.setStream(original)  # type: ignore[attr-defined]


def invoke(text: str, **fields: Any) -> None:
    request = completion_request_event([user(text)], run_id="run-t", step=3, **fields)
    traced = request.model_copy(update={"metadata": request.metadata.model_copy(update={"traceparent": PARENT})})
    handler.lambda_handler({"Records": [sqs_record(eventbridge_body(traced))]}, FakeLambdaContext())


def test_llm_a_model_call_is_a_genai_client_span_under_the_record_span(spans, bus, logs) -> None:
    invoke("What is 2 + 2?")

    record = spans.one("process llm.completion.requested.v1")
    [chat] = [span for span in spans.spans() if span["name"].startswith("chat ")]
    assert record["trace_id"] == chat["trace_id"] == TRACE_ID
    assert record["parent_span_id"] == "00f067aa0ba902b7" and record["kind"] == "CONSUMER"
    assert chat["parent_span_id"] == record["span_id"] and chat["kind"] == "CLIENT"
    attributes = chat["attributes"]
    assert chat["name"] == f"chat {attributes['gen_ai.request.model']}"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "offline"
    assert attributes["gen_ai.conversation.id"] == "sess-1" and attributes["agentwire.step"] == 3
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.response.finish_reasons"]
    assert "agentwire.cost_microusd" in attributes
    assert not any(key.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.system")) for key in attributes)
    assert "2 + 2" not in json.dumps(spans.spans())

    # The answer continues the record's span; every log line of the record carries the correlation keys.
    [answer] = bus.details("llm.completion.completed.v1")
    assert answer["metadata"]["traceparent"].split("-")[1:3] == [TRACE_ID, record["span_id"]]
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    answered = next(line for line in lines if line["message"] == "completion answered")
    assert answered["run_id"] == answered["correlation_id"] == "run-t"
    assert (answered["tenant_id"], answered["session_id"], answered["trace_id"]) == ("tenant-1", "sess-1", TRACE_ID)


def test_llm_a_failed_model_call_marks_its_span_with_the_error_code(spans, bus) -> None:
    invoke("hello", max_tokens=1, max_total_tokens=1)  # refused before any provider call: no chat span
    assert [span["name"] for span in spans.spans()] == ["process llm.completion.requested.v1"]

    class Overloaded(OfflineProvider):
        def complete(self, request: Any) -> Any:
            from agentwire_llm import errors

            raise errors.overloaded("busy")

    completions = CompletionService(Overloaded(), CallDirectly())
    set_dependencies(Dependencies(completions=completions, publisher=EventPublisher(client=bus, bus_name="b")))
    invoke("hello again")
    [chat] = [span for span in spans.spans() if span["name"].startswith("chat ")]
    assert chat["status"] == "ERROR" and chat["attributes"]["error.type"] == "Llm.Overloaded"


def test_llm_content_is_recorded_only_when_enabled_and_redacted(spans, bus, monkeypatch) -> None:
    monkeypatch.setenv(telemetry.ENV_RECORD_CONTENT, "true")
    invoke(f"my key is {SECRET}, what is 2 + 2?")

    [chat] = [span for span in spans.spans() if span["name"].startswith("chat ")]
    recorded = chat["attributes"]["gen_ai.input.messages"]
    assert "what is 2 + 2?" in recorded and SECRET not in recorded and "[REDACTED]" in recorded
    assert "gen_ai.output.messages" in chat["attributes"]
