"""Producers are strict, consumers tolerant; answers carry the request's identity; publishing is safe."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentwire_contracts.consumer import StepError, answer_request
from agentwire_contracts.content import Message, TextBlock, ToolCall
from agentwire_contracts.envelope import ContractViolation, Event
from agentwire_contracts.events import (
    LlmCompletionFailed,
    RunRequested,
    ToolInvocationCompleted,
    ToolInvocationRequested,
)
from agentwire_contracts.parsing import (
    InvalidEvent,
    UnknownDetailType,
    parse_as,
    parse_detail,
    parse_eventbridge,
)
from agentwire_contracts.publish import EventPublisher, EventTooLarge, PublishError


def user(text: str = "hi") -> Message:
    return Message(role="user", content=[TextBlock(text=text)])


def envelope(event: Event[Any]) -> str:
    return json.dumps({"detail-type": event.detail_type, "source": event.source, "detail": event.detail()})


class RecordingEventsClient:
    def __init__(self, fail_detail_types: set[str] | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.fail = fail_detail_types or set()

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        failed = {"ErrorCode": "InternalFailure", "ErrorMessage": "boom"}
        results = [failed if e["DetailType"] in self.fail else {"EventId": "x"} for e in Entries]
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


def test_producer_rejects_unknown_fields_and_coercion() -> None:
    with pytest.raises(ValueError, match="bogus"):
        RunRequested(session_id="s1", input=user(), bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ContractViolation):
        Event.create(RunRequested.model_construct(session_id=123, input=user()), tenant_id="t")


def test_consumer_ignores_unknown_fields_from_a_newer_producer() -> None:
    detail = Event.create(RunRequested(session_id="s1", input=user()), tenant_id="t", run_id="r").detail()
    detail["data"]["priority"] = "high"
    detail["metadata"]["new_header"] = 1
    event = parse_detail("run.requested.v1", detail)
    assert isinstance(event.data, RunRequested) and event.data.session_id == "s1"


def test_consumer_rejects_invalid_and_unknown_events() -> None:
    detail = Event.create(RunRequested(session_id="s1", input=user()), tenant_id="t").detail()
    del detail["data"]["input"]
    with pytest.raises(InvalidEvent):
        parse_detail("run.requested.v1", detail)
    with pytest.raises(UnknownDetailType):
        parse_detail("run.exploded.v9", detail)
    with pytest.raises(InvalidEvent):
        parse_eventbridge("not json")


def test_answer_carries_tenant_run_trace_and_token() -> None:
    request = Event.create(
        ToolInvocationRequested(session_id="s1", step=1, tool_call=ToolCall(id="c1", name="calculator")),
        tenant_id="acme",
        run_id="r1",
        trace_header="Root=1-abc",
        task_token="tok",
    )
    answer = request.answer(
        ToolInvocationCompleted(
            session_id="s1",
            step=1,
            tool_name="calculator",
            result={"type": "tool_result", "tool_use_id": "c1", "content": "2"},  # type: ignore[arg-type]
        )
    )
    meta = answer.metadata
    assert (meta.tenant_id, meta.run_id, meta.trace_header, meta.task_token) == ("acme", "r1", "Root=1-abc", "tok")
    assert meta.causation_id == request.metadata.event_id and meta.event_id != request.metadata.event_id
    assert answer.detail()["metadata"]["occurred_at"].endswith("Z")


def test_publisher_batches_by_ten_and_forwards_the_trace_header() -> None:
    client = RecordingEventsClient()
    publisher = EventPublisher(client=client, bus_name="bus")
    events = [
        Event.create(RunRequested(session_id=f"s{i}", input=user()), tenant_id="t", trace_header="Root=1-x")
        for i in range(23)
    ]
    publisher.publish(events)
    assert [len(c) for c in client.calls] == [10, 10, 3]
    entry = client.calls[0][0]
    assert entry["EventBusName"] == "bus" and entry["TraceHeader"] == "Root=1-x"
    assert json.loads(entry["Detail"])["data"]["session_id"] == "s0"


def test_publisher_raises_a_typed_error_naming_failed_entries() -> None:
    client = RecordingEventsClient(fail_detail_types={"run.requested.v1"})
    with pytest.raises(PublishError) as info:
        EventPublisher(client=client, bus_name="bus").publish(
            [Event.create(RunRequested(session_id="s1", input=user()), tenant_id="t")]
        )
    assert info.value.failed[0]["detail_type"] == "run.requested.v1"


def test_publisher_refuses_an_event_over_the_bus_limit() -> None:
    big = Event.create(RunRequested(session_id="s1", input=user("x" * 300_000)), tenant_id="t")
    with pytest.raises(EventTooLarge):
        EventPublisher(client=RecordingEventsClient(), bus_name="bus").publish([big])


def test_answer_request_turns_a_step_error_into_a_failure_event() -> None:
    client = RecordingEventsClient()
    request = Event.create(
        ToolInvocationRequested(session_id="s1", step=0, tool_call=ToolCall(id="c1", name="x")),
        tenant_id="t",
        run_id="r",
        task_token="tok",
    )

    def work(event: Event[ToolInvocationRequested]) -> ToolInvocationCompleted:
        raise StepError("Llm.RateLimited", "slow down", retryable=True, retry_after_s=3)

    published = answer_request(
        envelope(request),
        request=ToolInvocationRequested,
        failure=LlmCompletionFailed,
        work=work,
        publisher=EventPublisher(client=client, bus_name="bus"),
    )
    assert published.detail_type == "llm.completion.failed.v1"
    data = json.loads(client.calls[0][0]["Detail"])
    assert data["data"]["code"] == "Llm.RateLimited" and data["data"]["retry_after_s"] == 3
    assert data["metadata"]["task_token"] == "tok"


def test_answer_request_tells_the_run_about_an_invalid_request_and_still_raises() -> None:
    client = RecordingEventsClient()
    detail = Event.create(
        ToolInvocationRequested(session_id="s1", step=0, tool_call=ToolCall(id="c1", name="x")),
        tenant_id="t",
        run_id="r",
        task_token="tok",
    ).detail()
    del detail["data"]["tool_call"]
    body = json.dumps({"detail-type": "tool.invocation.requested.v1", "detail": detail})
    with pytest.raises(InvalidEvent):
        answer_request(
            body,
            request=ToolInvocationRequested,
            failure=LlmCompletionFailed,
            work=lambda e: pytest.fail("must not run"),  # type: ignore[arg-type,return-value]
            publisher=EventPublisher(client=client, bus_name="bus"),
        )
    failure = json.loads(client.calls[0][0]["Detail"])
    assert failure["data"]["code"] == "Contract.InvalidEvent" and failure["metadata"]["task_token"] == "tok"


def test_parse_as_rejects_the_wrong_detail_type() -> None:
    event = Event.create(RunRequested(session_id="s1", input=user()), tenant_id="t")
    with pytest.raises(InvalidEvent):
        parse_as(ToolInvocationRequested, envelope(event))


def test_a_service_answering_for_the_tools_it_offers_publishes_under_its_own_source() -> None:
    client = RecordingEventsClient()
    request = Event.create(
        ToolInvocationRequested(session_id="s1", step=0, tool_call=ToolCall(id="c1", name="remember")),
        tenant_id="t",
        run_id="r",
        task_token="tok",
    )

    def work(event: Event[ToolInvocationRequested]) -> ToolInvocationCompleted:
        return ToolInvocationCompleted(
            session_id="s1",
            step=0,
            tool_name="remember",
            result={"type": "tool_result", "tool_use_id": "c1", "content": "saved"},  # type: ignore[arg-type]
        )

    published = answer_request(
        envelope(request),
        request=ToolInvocationRequested,
        failure=LlmCompletionFailed,
        work=work,
        publisher=EventPublisher(client=client, bus_name="bus"),
        source="agentwire.memory",
    )
    assert published.source == "agentwire.memory"
    assert client.calls[0][0]["Source"] == "agentwire.memory"
    assert request.answer(published.data).source == "agentwire.tools"
