"""The read model: bus events through `projector_handler` (real SQS batch shape), read back over HTTP."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from agentwire_contracts.content import ErrorInfo, Message, TextBlock, ToolResultBlock, ToolSpec, ToolUseBlock, Usage
from agentwire_contracts.envelope import Event, EventData
from agentwire_contracts.events import (
    LlmCompletionCompleted,
    LlmCompletionFailed,
    MemoryContextReady,
    MemoryMessageAppended,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    ToolCatalogReady,
    ToolInvocationCompleted,
    ToolInvocationFailed,
)
from agentwire_contracts.events.memory import SequencedMessage
from agentwire_contracts.testing import LambdaContextStub, eventbridge_envelope, queue_arn, sqs_batch_event
from agentwire_gateway.handler import projector_handler
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def bus_event(data: EventData, *, tenant: str, run_id: str | None, at: datetime, event_id: str | None = None) -> str:
    """The SQS body EventBridge delivers: the whole EventBridge event with our envelope as `detail`."""
    event = Event.create(data, tenant_id=tenant, run_id=run_id)
    metadata = event.metadata.model_copy(update={"occurred_at": at, "event_id": event_id or str(uuid.uuid4())})
    detail = event.model_copy(update={"metadata": metadata}).detail()
    return json.dumps({**eventbridge_envelope(event), "time": at.isoformat(), "detail": detail})


def deliver(*bodies: str) -> dict[str, Any]:
    event = sqs_batch_event(
        bodies, message_ids=[f"m-{index}" for index in range(len(bodies))], source_arn=queue_arn(PROJECTOR)
    )
    return projector_handler(event, LambdaContextStub(PROJECTOR))


PROJECTOR = "agentwire-gateway-projector"


@pytest.fixture
def queued_run(http, key_a) -> tuple[str, str]:
    session_id = http.post("/v1/sessions", api_key=key_a).body["session_id"]
    run_id = http.post(f"/v1/sessions/{session_id}/messages", api_key=key_a, json_body={"content": "hi"}).body["run_id"]
    return session_id, run_id


def answer(text: str) -> Message:
    return Message(role="assistant", content=[TextBlock(text=text)])


def started(session_id: str, run_id: str, at: datetime, tenant: str = "tenant-a", **kw: Any) -> str:
    return bus_event(RunStarted(session_id=session_id, agent="assistant"), tenant=tenant, run_id=run_id, at=at, **kw)


def completed(session_id: str, run_id: str, at: datetime, **kw: Any) -> str:
    data = RunCompleted(
        session_id=session_id,
        output=answer("Paris."),
        output_text="Paris.",
        stop_reason="end_turn",
        usage=Usage(input_tokens=120, output_tokens=7, cache_read_input_tokens=64),
        model_turns=1,
        cost_microusd=1250,
    )
    return bus_event(data, tenant="tenant-a", run_id=run_id, at=at, **kw)


def test_started_then_completed_sets_output_and_usage(http, key_a, queued_run):
    session_id, run_id = queued_run
    assert deliver(started(session_id, run_id, T0)) == {"batchItemFailures": []}
    assert http.get(f"/v1/runs/{run_id}", api_key=key_a).body["status"] == "running"

    deliver(completed(session_id, run_id, T0 + timedelta(seconds=3)))

    run = http.get(f"/v1/runs/{run_id}", api_key=key_a).body
    assert run["status"] == "completed"
    assert run["output"] == "Paris."
    assert run["error"] is None
    assert run["usage"] == {
        "input_tokens": 120,
        "output_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 64,
        "cost_usd": 0.00125,
    }
    assert run["model_turns"] == 1
    assert run["updated_at"] == "2026-01-01T12:00:03.000000Z"


def test_late_started_never_overwrites_completed(http, key_a, queued_run):
    session_id, run_id = queued_run
    deliver(completed(session_id, run_id, T0 + timedelta(seconds=3)))
    deliver(started(session_id, run_id, T0))
    run = http.get(f"/v1/runs/{run_id}", api_key=key_a).body
    assert run["status"] == "completed"
    assert run["output"] == "Paris."


def test_first_terminal_status_wins(http, key_a, queued_run):
    session_id, run_id = queued_run
    deliver(completed(session_id, run_id, T0 + timedelta(seconds=3)))
    failed = RunFailed(session_id=session_id, error=ErrorInfo(code="Llm.Timeout", message="late"))
    deliver(bus_event(failed, tenant="tenant-a", run_id=run_id, at=T0 + timedelta(seconds=4)))
    run = http.get(f"/v1/runs/{run_id}", api_key=key_a).body
    assert run["status"] == "completed"
    assert run["error"] is None


def test_failed_run_carries_the_error_code_and_usage(http, key_a, queued_run):
    session_id, run_id = queued_run
    failed = RunFailed(
        session_id=session_id,
        error=ErrorInfo(code="Run.TurnLimitExceeded", message="the model asked for tools after 8 model turns"),
        usage=Usage(input_tokens=900, output_tokens=80),
        model_turns=8,
    )
    deliver(started(session_id, run_id, T0), bus_event(failed, tenant="tenant-a", run_id=run_id, at=T0))
    run = http.get(f"/v1/runs/{run_id}", api_key=key_a).body
    assert run["status"] == "failed"
    assert run["error"] == {"code": "Run.TurnLimitExceeded", "message": "the model asked for tools after 8 model turns"}
    assert run["usage"]["input_tokens"] == 900
    assert run["output"] is None


def test_cancelled_run(http, key_a, queued_run):
    session_id, run_id = queued_run
    deliver(bus_event(RunCancelled(session_id=session_id, stage="queued"), tenant="tenant-a", run_id=run_id, at=T0))
    assert http.get(f"/v1/runs/{run_id}", api_key=key_a).body["status"] == "cancelled"


def test_events_are_projected_under_the_metadata_tenant_only(http, key_a, key_b, queued_run):
    session_id, run_id = queued_run
    # Same run id, another tenant's metadata: must not touch tenant-a's run.
    deliver(started(session_id, run_id, T0, tenant="tenant-b"))
    assert http.get(f"/v1/runs/{run_id}", api_key=key_a).body["status"] == "queued"


def timeline_events(session_id: str, run_id: str) -> list[str]:
    tenant = "tenant-a"
    return [
        bus_event(
            ToolCatalogReady(session_id=session_id, tools=[ToolSpec(name="clock", description="", input_schema={})]),
            tenant=tenant,
            run_id=run_id,
            at=T0 + timedelta(milliseconds=10),
        ),
        bus_event(
            MemoryContextReady(session_id=session_id, step=0, appended=1, message_count=1, duration_ms=4.5),
            tenant=tenant,
            run_id=run_id,
            at=T0 + timedelta(milliseconds=20),
        ),
        bus_event(
            LlmCompletionCompleted(
                session_id=session_id,
                step=0,
                message=Message(role="assistant", content=[ToolUseBlock(id="tu_1", name="clock", input={})]),
                stop_reason="tool_use",
                usage=Usage(input_tokens=50, output_tokens=12),
                duration_ms=812.0,
            ),
            tenant=tenant,
            run_id=run_id,
            at=T0 + timedelta(milliseconds=900),
        ),
        bus_event(
            ToolInvocationCompleted(
                session_id=session_id,
                step=1,
                tool_name="clock",
                result=ToolResultBlock(tool_use_id="tu_1", content="tool-output-not-for-the-timeline"),
                duration_ms=2.25,
            ),
            tenant=tenant,
            run_id=run_id,
            at=T0 + timedelta(milliseconds=950),
        ),
        bus_event(
            LlmCompletionFailed(code="Llm.RateLimited", message="slow down", retryable=True),
            tenant=tenant,
            run_id=run_id,
            at=T0 + timedelta(milliseconds=1200),
        ),
        bus_event(
            ToolInvocationFailed(code="Tools.Unavailable", message="down"),
            tenant=tenant,
            run_id=run_id,
            at=T0 + timedelta(milliseconds=1300),
        ),
    ]


def test_steps_form_a_timeline_sorted_by_time(http, key_a, queued_run):
    session_id, run_id = queued_run
    events = timeline_events(session_id, run_id)
    # Delivered out of order, in two batches.
    assert deliver(*reversed(events[3:])) == {"batchItemFailures": []}
    assert deliver(*reversed(events[:3])) == {"batchItemFailures": []}

    steps = http.get(f"/v1/runs/{run_id}", api_key=key_a).body["steps"]
    assert [(s["kind"], s["service"]) for s in steps] == [
        ("catalog", "agentwire.tools"),
        ("context", "agentwire.memory"),
        ("model", "agentwire.llm"),
        ("tool", "agentwire.tools"),
        ("model", "agentwire.llm"),
        ("tool", "agentwire.tools"),
    ]
    catalog, context, model, tool, model_failed, tool_failed = steps
    assert catalog["detail"] == "clock"
    assert context["duration_ms"] == 4.5
    assert model["detail"] == "tool_use"
    assert model["duration_ms"] == 812
    assert model["usage"]["input_tokens"] == 50
    assert model["usage"]["output_tokens"] == 12
    assert model["error_code"] is None
    assert tool["detail"] == "clock"
    assert tool["duration_ms"] == 2.25
    assert tool["usage"] is None
    assert model_failed["error_code"] == "Llm.RateLimited"
    assert tool_failed["error_code"] == "Tools.Unavailable"
    assert [s["occurred_at"] for s in steps] == sorted(s["occurred_at"] for s in steps)
    # The timeline never carries conversation content.
    assert "tool-output-not-for-the-timeline" not in json.dumps(steps)


def test_duplicate_events_do_not_duplicate_steps(http, key_a, queued_run):
    session_id, run_id = queued_run
    events = timeline_events(session_id, run_id)[:3]
    deliver(*events)
    deliver(*events)
    deliver(events[2])
    steps = http.get(f"/v1/runs/{run_id}", api_key=key_a).body["steps"]
    assert len(steps) == 3


def appended(session_id: str, run_id: str, *items: tuple[int, Message]) -> str:
    data = MemoryMessageAppended(
        session_id=session_id, messages=[SequencedMessage(seq=seq, message=message) for seq, message in items]
    )
    return bus_event(data, tenant="tenant-a", run_id=run_id, at=T0)


def test_messages_view_in_seq_order_without_duplicates(http, key_a, queued_run):
    session_id, run_id = queued_run
    user = Message(role="user", content=[TextBlock(text="what time is it?")])
    tool_use = Message(role="assistant", content=[ToolUseBlock(id="tu_1", name="clock", input={"tz": "UTC", "x": 1.5})])
    tool_result = Message(role="user", content=[ToolResultBlock(tool_use_id="tu_1", content="12:00")])
    final = answer("It is noon.")
    # Later appends arrive first, and the first append is delivered twice.
    deliver(appended(session_id, run_id, (2, tool_use), (3, tool_result)))
    deliver(appended(session_id, run_id, (4, final)))
    deliver(appended(session_id, run_id, (1, user)), appended(session_id, run_id, (1, user)))

    messages = http.get(f"/v1/sessions/{session_id}/messages", api_key=key_a).body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == [{"type": "text", "text": "what time is it?"}]
    assert messages[1]["content"] == [
        {"type": "tool_use", "id": "tu_1", "name": "clock", "input": {"tz": "UTC", "x": 1.5}}
    ]
    assert messages[2]["content"][0]["tool_use_id"] == "tu_1"
    assert messages[3]["content"] == [{"type": "text", "text": "It is noon."}]


def test_messages_view_of_a_new_session_is_empty(http, key_a):
    session_id = http.post("/v1/sessions", api_key=key_a).body["session_id"]
    assert http.get(f"/v1/sessions/{session_id}/messages", api_key=key_a).body == {"messages": [], "next_after": None}


def test_a_bad_record_fails_alone(http, key_a, queued_run):
    session_id, run_id = queued_run
    result = deliver("not json", started(session_id, run_id, T0), json.dumps({"detail-type": "x.y.v1", "detail": {}}))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-0"}, {"itemIdentifier": "m-2"}]}
    assert http.get(f"/v1/runs/{run_id}", api_key=key_a).body["status"] == "running"


def test_answer_event_without_run_id_is_rejected(queued_run):
    session_id, _ = queued_run
    body = bus_event(MemoryContextReady(session_id=session_id, step=0), tenant="tenant-a", run_id=None, at=T0)
    # The only record of the batch failed: Powertools fails the whole invocation, so SQS retries it.
    with pytest.raises(BatchProcessingError):
        deliver(body)
    # Beside a good record, it is reported alone.
    assert deliver(started(session_id, "run_other", T0), body) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}


def emitted_metrics(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


def values(blobs: list[dict[str, Any]], name: str, **dimensions: str) -> list[float]:
    """The values of `name` in blobs whose dimension set is exactly service (+ `dimensions`)."""
    found: list[float] = []
    for blob in blobs:
        [directive] = blob["_aws"]["CloudWatchMetrics"]
        names = {metric["Name"] for metric in directive["Metrics"]}
        if name in names and set(directive["Dimensions"][0]) == {"service", *dimensions}:
            assert all(blob[key] == value for key, value in dimensions.items())
            found.extend(blob[name] if isinstance(blob[name], list) else [blob[name]])
    return found


def test_run_outcomes_are_counted_once_with_and_without_their_breakdown(http, key_a, queued_run, capsys):
    session_id, run_id = queued_run
    capsys.readouterr()
    finished_at = datetime.now(UTC) + timedelta(seconds=3)
    body = completed(session_id, run_id, finished_at)
    deliver(started(session_id, run_id, finished_at - timedelta(seconds=1)), body)
    deliver(body)  # a redelivery counts nothing

    blobs = emitted_metrics(capsys.readouterr().out)
    assert values(blobs, "RunsCompleted") == [1.0]
    assert values(blobs, "RunsCompleted", agent="assistant") == [1.0]
    [duration] = values(blobs, "RunDuration")
    assert 2_000 < duration < 60_000


def test_failed_and_cancelled_runs_are_counted_by_reason(http, key_a, capsys):
    runs = []
    for _ in range(2):
        session_id = http.post("/v1/sessions", api_key=key_a).body["session_id"]
        runs.append(
            (
                session_id,
                http.post(f"/v1/sessions/{session_id}/messages", api_key=key_a, json_body={"content": "hi"}).body[
                    "run_id"
                ],
            )
        )
    capsys.readouterr()
    (failed_session, failed_run), (cancelled_session, cancelled_run) = runs
    failed = RunFailed(session_id=failed_session, error=ErrorInfo(code="Llm.Timeout", message="slow"))
    deliver(
        bus_event(failed, tenant="tenant-a", run_id=failed_run, at=datetime.now(UTC)),
        bus_event(
            RunCancelled(session_id=cancelled_session), tenant="tenant-a", run_id=cancelled_run, at=datetime.now(UTC)
        ),
    )
    blobs = emitted_metrics(capsys.readouterr().out)
    assert values(blobs, "RunsFailed") == [1.0]
    assert values(blobs, "RunsFailed", reason="Llm.Timeout") == [1.0]
    assert values(blobs, "RunsCancelled") == [1.0]


def test_records_the_projector_fails_are_counted_for_the_dlq_dashboards(queued_run, capsys):
    session_id, run_id = queued_run
    capsys.readouterr()
    deliver("not json", started(session_id, run_id, T0), "also not json")
    assert sum(values(emitted_metrics(capsys.readouterr().out), "RecordsFailed")) == 2
    with pytest.raises(BatchProcessingError):
        deliver("not json")
    assert sum(values(emitted_metrics(capsys.readouterr().out), "RecordsFailed")) == 1


def test_an_answer_projected_before_its_request_still_follows_it_in_the_live_events(http, key_a, queued_run):
    """The requested and completed events of one tool call are two SQS messages, processed in either order:
    the answer writes its request's entry first (under the request's event id), so the cursors follow
    causality and the late request adds nothing."""
    from agentwire_contracts.content import ToolCall, ToolResultBlock
    from agentwire_contracts.events.tool import ToolInvocationCompleted, ToolInvocationRequested

    session_id, run_id = queued_run
    request = Event.create(
        ToolInvocationRequested(session_id=session_id, step=1, tool_call=ToolCall.of("t1", "calculator", {"e": "1"})),
        tenant_id="tenant-a",
        run_id=run_id,
    )
    answer_event = request.answer(
        ToolInvocationCompleted(
            session_id=session_id, step=1, tool_name="calculator", result=ToolResultBlock(tool_use_id="t1", content="1")
        )
    )
    body_of = lambda event: json.dumps({**eventbridge_envelope(event), "detail": event.detail()})  # noqa: E731
    assert deliver(body_of(answer_event)) == {"batchItemFailures": []}
    assert deliver(body_of(request)) == {"batchItemFailures": []}  # late: already there

    events = http.get(f"/v1/runs/{run_id}/events", api_key=key_a).body["events"]
    tool_events = [(e["type"], e["data"]["tool_call_id"]) for e in events if e["type"].startswith("tool.")]
    assert tool_events == [("tool.started", "t1"), ("tool.finished", "t1")]
    cursors = [int(e["cursor"]) for e in events]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
