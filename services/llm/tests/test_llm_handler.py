"""The Lambda handler end to end: an SQS batch in, answer events on a fake bus, failures reported."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from agentwire_contracts import telemetry
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.llm import LlmCompletionCompleted, LlmCompletionFailed
from agentwire_contracts.publish import EventPublisher
from agentwire_contracts.testing import eventbridge_body
from agentwire_llm import handler
from agentwire_llm.adapters.idempotency import PowertoolsOncePerStep
from agentwire_llm.completion import CompletionService
from agentwire_llm.dependencies import Dependencies, get_dependencies, set_dependencies
from agentwire_llm.providers.offline import OfflineProvider
from llm_testkit import (
    IDEMPOTENCY_TABLE,
    STATE_TABLE,
    FakeEventsClient,
    FakeLambdaContext,
    completion_request_event,
    error_response,
    sqs_record,
    text_response,
    user,
    write_script,
)

COMPLETED = "llm.completion.completed.v1"
FAILED = "llm.completion.failed.v1"


@pytest.fixture
def bus() -> FakeEventsClient:
    return FakeEventsClient()


@pytest.fixture
def log_stream() -> io.StringIO:
    """What the handler logs, captured from the Powertools handler's stream."""
    stream = io.StringIO()
    registered = handler.logger.registered_handler
    original = registered.setStream(stream)  # type: ignore[attr-defined]
    yield stream
    registered.setStream(original)  # type: ignore[attr-defined]


def offline_dependencies(dynamodb, bus: FakeEventsClient) -> Dependencies:
    once = PowertoolsOncePerStep(IDEMPOTENCY_TABLE, client=dynamodb)
    return Dependencies(
        completions=CompletionService(OfflineProvider(), once),
        publisher=EventPublisher(client=bus, bus_name="test-bus"),
        context_aware=(once,),
    )


def invoke(*records: dict[str, Any]) -> dict[str, Any]:
    return handler.lambda_handler({"Records": list(records)}, FakeLambdaContext())


def test_llm_handler_answers_a_request_and_reports_a_malformed_record(dynamodb, bus) -> None:
    set_dependencies(offline_dependencies(dynamodb, bus))
    request = completion_request_event([user("What is 1234 * 5678?")], run_id="run-abc", step=2)

    response = invoke(sqs_record(eventbridge_body(request), "good-1"), sqs_record("{not json", "bad-1"))

    assert response == {"batchItemFailures": [{"itemIdentifier": "bad-1"}]}
    [entry] = bus.entries
    assert entry["DetailType"] == COMPLETED
    assert entry["Source"] == "agentwire.llm"
    assert entry["EventBusName"] == "test-bus"
    detail = json.loads(entry["Detail"])
    metadata = detail["metadata"]
    # The answer continues the record's span (the request's header names a root but no parent span).
    assert entry["TraceHeader"] == metadata["trace_header"] == telemetry.traceparent_to_xray(metadata["traceparent"])
    assert metadata["task_token"] == "token-abc"
    assert metadata["causation_id"] == request.metadata.event_id
    assert (metadata["run_id"], metadata["tenant_id"]) == ("run-abc", "tenant-1")
    data = LlmCompletionCompleted.model_validate(detail["data"])
    assert (data.session_id, data.step, data.stop_reason) == ("sess-1", 2, "tool_use")
    assert [(c.name, c.input) for c in data.tool_calls] == [("calculator", {"expression": "1234 * 5678"})]
    assert data.tool_calls[0].id == data.message.tool_uses()[0].id
    assert data.text == data.message.text() and data.text
    assert data.provider == "offline" and data.model == "agentwire-offline-1"
    assert data.usage.input_tokens > 0 and data.usage.output_tokens > 0
    # The state machine's ResultSelector reads these fields of the answer.
    assert {"message", "text", "tool_calls", "stop_reason", "usage"} <= set(detail["data"])


def test_llm_handler_tells_the_run_at_once_when_the_request_data_is_invalid(dynamodb, bus) -> None:
    set_dependencies(offline_dependencies(dynamodb, bus))
    body = json.loads(eventbridge_body(completion_request_event([user("hi")])))
    body["detail"]["data"]["messages"] = []  # the contract requires at least one message

    response = invoke(sqs_record(json.dumps(body), "invalid-1"))

    # Reported for SQS redelivery and the DLQ, and the waiting run is answered with a failure now.
    assert response == {"batchItemFailures": [{"itemIdentifier": "invalid-1"}]}
    [failure] = bus.details(FAILED)
    assert failure["data"]["code"] == "Contract.InvalidEvent"
    assert failure["metadata"]["task_token"] == "token-abc"


def test_llm_handler_answers_provider_errors_with_a_failure_event(
    dynamodb, bus, tmp_path: Path, monkeypatch, capsys
) -> None:
    # Built from the environment, the way a Lambda cold start (or a local worker) builds it.
    script = write_script(tmp_path / "script.json", [error_response("rate_limit_error", "slow down")])
    monkeypatch.setenv("AGENTWIRE_LLM_PROVIDER", "scripted")
    monkeypatch.setenv("AGENTWIRE_LLM_SCRIPT", str(script))
    dependencies = get_dependencies()
    dependencies.publisher = EventPublisher(client=bus, bus_name="test-bus")

    request = completion_request_event([user("hello")], run_id="run-rl")
    response = invoke(sqs_record(eventbridge_body(request), "m-1"))

    assert response == {"batchItemFailures": []}
    [entry] = bus.entries
    assert entry["DetailType"] == FAILED
    detail = json.loads(entry["Detail"])
    failure = LlmCompletionFailed.model_validate(detail["data"])
    assert (failure.code, failure.retryable) == ("Llm.RateLimited", True)
    assert "slow down" in failure.message
    assert detail["metadata"]["task_token"] == "token-abc"
    assert detail["metadata"]["causation_id"] == request.metadata.event_id

    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    errors = [m for m in emitted if "CompletionErrors" in m]
    assert errors and errors[0]["code"] == "Llm.RateLimited"


def test_llm_handler_redelivery_replays_without_a_second_call(dynamodb, bus, tmp_path: Path, monkeypatch) -> None:
    script = write_script(tmp_path / "script.json", [text_response("only once"), text_response("never")])
    monkeypatch.setenv("AGENTWIRE_LLM_PROVIDER", "scripted")
    monkeypatch.setenv("AGENTWIRE_LLM_SCRIPT", str(script))
    get_dependencies().publisher = EventPublisher(client=bus, bus_name="test-bus")
    body = eventbridge_body(completion_request_event([user("hello")], run_id="run-r", step=0))

    assert invoke(sqs_record(body, "m-1")) == {"batchItemFailures": []}
    assert invoke(sqs_record(body, "m-1")) == {"batchItemFailures": []}

    answers = [LlmCompletionCompleted.model_validate(d["data"]) for d in bus.details(COMPLETED)]
    assert [a.text for a in answers] == ["only once", "only once"]
    assert answers[0] == answers[1]
    [cursor] = dynamodb.scan(TableName=STATE_TABLE)["Items"]
    assert cursor["calls"]["N"] == "1"


def test_llm_handler_logs_run_id_and_usage_but_never_content(dynamodb, bus, log_stream, capsys) -> None:
    set_dependencies(offline_dependencies(dynamodb, bus))
    secret_text = "My name is Zebediah and my password is hunter2"
    request = completion_request_event([user(secret_text)], run_id="run-logs")

    invoke(sqs_record(eventbridge_body(request)))

    logs = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    answered = [entry for entry in logs if entry["message"] == "completion answered"]
    assert answered and answered[0]["correlation_id"] == "run-logs"
    assert answered[0]["tenant_id"] == "tenant-1" and answered[0]["session_id"] == "sess-1"
    assert answered[0]["input_tokens"] > 0
    everything = log_stream.getvalue() + capsys.readouterr().out
    assert "Zebediah" not in everything and "hunter2" not in everything

    metrics = [json.loads(line) for line in everything.splitlines() if line.startswith('{"_aws"')]
    [emf] = [m for m in metrics if "Completions" in m]
    # Exactly the catalogue's dimension set, which the CDK dashboards and alarms query.
    assert emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]] and "provider" not in emf
    assert emf["InputTokens"][0] > 0 and emf["OutputTokens"][0] > 0 and emf["Completions"] == [1.0]
    assert "CompletionLatency" in emf and emf["CostMicroUSD"] == [0.0]
    # The same usage per model, as a dimension of its own blob.
    [per_model] = [m for m in metrics if "ModelCompletions" in m]
    assert per_model["model"] == "agentwire-offline-1" and per_model["provider"] == "offline"
    assert per_model["ModelInputTokens"] == emf["InputTokens"] and per_model["ResponseCacheHits"] == [0.0]
    dimensions = per_model["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
    assert "model" in dimensions and "provider" in dimensions


def test_llm_handler_builds_its_answer_strictly_to_the_contract(dynamodb, bus) -> None:
    # The answer passed Event.create's strict producer check, so it can be re-created strictly here.
    set_dependencies(offline_dependencies(dynamodb, bus))
    invoke(sqs_record(eventbridge_body(completion_request_event([user("hi")]))))
    [detail] = bus.details(COMPLETED)
    data = LlmCompletionCompleted.model_validate(detail["data"])
    assert Event.create(data, tenant_id="tenant-1").data == data


def test_llm_handler_warns_when_unfinished_tool_calls_are_dropped(
    dynamodb, bus, tmp_path: Path, monkeypatch, log_stream, capsys
) -> None:
    cut = {
        **text_response("Let me look that up."),
        "stop_reason": "max_tokens",
        "content": [
            {"type": "text", "text": "Let me look that up."},
            {"type": "tool_use", "id": "toolu_cut", "name": "calculator", "input": {"expression": "hunter2 *"}},
        ],
    }
    script = write_script(tmp_path / "script.json", [cut])
    monkeypatch.setenv("AGENTWIRE_LLM_PROVIDER", "scripted")
    monkeypatch.setenv("AGENTWIRE_LLM_SCRIPT", str(script))
    get_dependencies().publisher = EventPublisher(client=bus, bus_name="test-bus")

    invoke(sqs_record(eventbridge_body(completion_request_event([user("hello")], run_id="run-cut"))))

    [detail] = bus.details(COMPLETED)
    answer = LlmCompletionCompleted.model_validate(detail["data"])
    assert (answer.stop_reason, answer.tool_calls, answer.text) == ("max_tokens", [], "Let me look that up.")
    logs = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    [warning] = [entry for entry in logs if entry["level"] == "WARNING"]
    assert warning["dropped_tool_calls"] == 1 and warning["stop_reason"] == "max_tokens"
    assert warning["correlation_id"] == "run-cut"
    everything = log_stream.getvalue() + capsys.readouterr().out
    assert "hunter2" not in everything and "look that up" not in everything  # counts, never content
