"""The Lambda handler end to end on SQS batch events built like Lambda's, with a recording bus."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from agentwire_contracts import telemetry, testing
from agentwire_contracts.events.tool import ToolInvocationRequested
from agentwire_contracts.names import DetailType
from agentwire_contracts.parsing import parse_detail
from agentwire_contracts.publish import EventPublisher
from agentwire_contracts.testing import LambdaContextStub, RecordingEventsClient, eventbridge_body, queue_arn
from agentwire_contracts.tokens import TOOL_USE_PROMPT_TOKENS, estimate_tool_specs_tokens
from agentwire_tools import handler
from agentwire_tools.builtins import builtin_tools
from agentwire_tools.dependencies import Dependencies, InvocationDeadline
from agentwire_tools.idempotency import PowertoolsCallOnce
from agentwire_tools.manifest import MANIFEST
from agentwire_tools.registry import Tool, ToolRegistry
from moto import mock_aws
from tools_testkit import (
    TASK_TOKEN,
    EchoInput,
    SlowInput,
    catalog_request,
    invocation_request,
    permissive_service,
)

QUEUE_ARN = queue_arn("agentwire-tools-invocations")


def sqs_record(body: str) -> dict[str, Any]:
    return testing.sqs_record(body, source_arn=QUEUE_ARN)


def sqs_event(*bodies: str) -> dict[str, Any]:
    return testing.sqs_batch_event(bodies, source_arn=QUEUE_ARN)


class Bus:
    def __init__(self) -> None:
        self.client = RecordingEventsClient()
        self.publisher = EventPublisher(client=self.client, bus_name="agentwire-test")

    def answers(self) -> list[tuple[str, Any]]:
        return [
            (entry["DetailType"], parse_detail(entry["DetailType"], json.loads(entry["Detail"])))
            for entry in self.client.entries
        ]


@pytest.fixture
def bus(counting_echo: tuple[Tool[EchoInput], list[str]], slow_tool: Tool[SlowInput]) -> Iterator[Bus]:
    recording = Bus()
    registry = ToolRegistry([*builtin_tools(), counting_echo[0], slow_tool])
    handler.set_dependencies(Dependencies(service=permissive_service(registry), publisher=recording.publisher))
    yield recording
    handler.set_dependencies(None)


def test_tools_handler_answers_an_invocation_carrying_token_and_causation(
    bus: Bus, lambda_context: LambdaContextStub
) -> None:
    request = invocation_request("calculator", {"expression": "(2 + 3) * 4"}, call_id="toolu_abc", step=2)

    response = handler.lambda_handler(sqs_event(eventbridge_body(request)), lambda_context)

    assert response == {"batchItemFailures": []}
    [(detail_type, answer)] = bus.answers()
    assert detail_type == DetailType.TOOL_INVOCATION_COMPLETED
    [entry] = bus.client.entries
    assert entry["Source"] == "agentwire.tools"
    assert entry["EventBusName"] == "agentwire-test"
    assert answer.metadata.task_token == TASK_TOKEN
    assert answer.metadata.causation_id == request.metadata.event_id
    assert answer.metadata.run_id == request.metadata.run_id
    assert answer.metadata.tenant_id == "tenant-a"
    assert answer.data.step == 2
    assert answer.data.tool_name == "calculator"
    assert answer.data.result.model_dump() == {
        "type": "tool_result",
        "tool_use_id": "toolu_abc",
        "content": "20",
        "is_error": False,
    }


def test_tools_handler_tool_errors_are_results_the_state_machine_reads(
    bus: Bus, lambda_context: LambdaContextStub
) -> None:
    bodies = [
        eventbridge_body(invocation_request("calculator", {"expression": "__import__('os')"}, call_id="a")),
        eventbridge_body(invocation_request("calculator", {"wrong": 1}, call_id="b")),
        eventbridge_body(invocation_request("nope", {}, call_id="c")),
        eventbridge_body(invocation_request("slow", {"seconds": 10}, call_id="d")),
    ]

    response = handler.lambda_handler(sqs_event(*bodies), lambda_context)

    assert response == {"batchItemFailures": []}
    answers = bus.answers()
    assert [detail_type for detail_type, _ in answers] == [DetailType.TOOL_INVOCATION_COMPLETED] * 4
    results = {answer.data.result.tool_use_id: answer.data.result for _, answer in answers}
    assert all(result.is_error for result in results.values())
    assert "Unsupported syntax: function calls" in results["a"].content
    assert "Invalid input for tool calculator" in results["b"].content
    assert results["c"].content.startswith("Unknown tool 'nope'")
    assert "time limit" in results["d"].content
    # What the state machine's ResultSelector ("$.result") hands to the next step is a content block.
    for _, answer in answers:
        assert set(answer.detail()["data"]["result"]) == {"type", "tool_use_id", "content", "is_error"}


def test_tools_handler_answers_a_catalog_request(bus: Bus, lambda_context: LambdaContextStub) -> None:
    request = catalog_request(["echo", "calculator", "current_time"])

    handler.lambda_handler(sqs_event(eventbridge_body(request)), lambda_context)

    [(detail_type, answer)] = bus.answers()
    assert detail_type == DetailType.TOOL_CATALOG_READY
    assert answer.metadata.task_token == TASK_TOKEN
    assert answer.metadata.causation_id == request.metadata.event_id
    assert [tool.name for tool in answer.data.tools] == ["calculator", "current_time", "echo"]
    # ResultSelector "$.tools": specs in the shape llm.completion.requested.v1 takes as `tools`
    assert set(answer.detail()["data"]["tools"][0]) == {"name", "description", "input_schema"}
    # What those specs take of every model call's window, by the estimate memory budgets with.
    assert answer.data.tools_tokens == estimate_tool_specs_tokens(answer.data.tools) > TOOL_USE_PROMPT_TOKENS


def test_tools_handler_catalog_detail_is_byte_identical_across_deliveries(
    bus: Bus, lambda_context: LambdaContextStub
) -> None:
    request = catalog_request(["current_time", "calculator"])
    handler.lambda_handler(sqs_event(eventbridge_body(request), eventbridge_body(request)), lambda_context)
    first, second = (json.loads(entry["Detail"])["data"] for entry in bus.client.entries)
    assert json.dumps(first) == json.dumps(second)


def test_tools_handler_unknown_catalog_tool_is_a_failure_event(bus: Bus, lambda_context: LambdaContextStub) -> None:
    request = catalog_request(["calculator", "web_search"])

    response = handler.lambda_handler(sqs_event(eventbridge_body(request)), lambda_context)

    assert response == {"batchItemFailures": []}
    [(detail_type, answer)] = bus.answers()
    assert detail_type == DetailType.TOOL_CATALOG_FAILED
    assert answer.data.code == "Tools.UnknownTool"
    assert answer.data.retryable is False
    assert "web_search" in answer.data.message
    assert answer.metadata.task_token == TASK_TOKEN


def test_tools_handler_reports_malformed_records_without_failing_the_batch(
    bus: Bus, lambda_context: LambdaContextStub
) -> None:
    good = sqs_record(eventbridge_body(invocation_request("calculator", {"expression": "1+1"})))
    not_json = sqs_record("{not json")
    not_an_event = sqs_record(json.dumps({"hello": "world"}))
    misrouted = sqs_record(json.dumps({"detail-type": "run.started.v1", "detail": {}}))

    response = handler.lambda_handler({"Records": [not_json, good, not_an_event, misrouted]}, lambda_context)

    failed = [item["itemIdentifier"] for item in response["batchItemFailures"]]
    assert failed == [not_json["messageId"], not_an_event["messageId"], misrouted["messageId"]]
    [(detail_type, answer)] = bus.answers()
    assert detail_type == DetailType.TOOL_INVOCATION_COMPLETED and answer.data.result.content == "2"


def test_tools_handler_invalid_request_with_a_token_tells_the_run_at_once(
    bus: Bus, lambda_context: LambdaContextStub
) -> None:
    detail = invocation_request("calculator", {"expression": "1"}).detail()
    del detail["data"]["tool_call"]  # the request itself breaks the contract
    record = sqs_record(json.dumps({"detail-type": ToolInvocationRequested.detail_type, "detail": detail}))

    response = handler.lambda_handler({"Records": [record]}, lambda_context)

    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    [(detail_type, answer)] = bus.answers()
    assert detail_type == DetailType.TOOL_INVOCATION_FAILED
    assert answer.data.code == "Contract.InvalidEvent"
    assert answer.metadata.task_token == TASK_TOKEN


def test_tools_handler_a_failed_publish_is_retried_by_sqs(lambda_context: LambdaContextStub) -> None:
    class RejectingEventsClient(RecordingEventsClient):
        def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            return {"FailedEntryCount": len(Entries), "Entries": [{"ErrorCode": "InternalFailure"} for _ in Entries]}

    publisher = EventPublisher(client=RejectingEventsClient(), bus_name="agentwire-test")
    service = permissive_service(ToolRegistry(builtin_tools()))
    handler.set_dependencies(Dependencies(service=service, publisher=publisher))
    try:
        record = sqs_record(eventbridge_body(invocation_request("calculator", {"expression": "1"})))
        response = handler.lambda_handler({"Records": [record]}, lambda_context)
    finally:
        handler.set_dependencies(None)
    assert response == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The JSON lines the Powertools logger writes (its handler is bound to stdout at import)."""
    stream = io.StringIO()
    log_handler = handler.logger.registered_handler
    previous = log_handler.setStream(stream)  # type: ignore[attr-defined]
    yield stream
    log_handler.setStream(previous)  # type: ignore[attr-defined]


def test_tools_handler_emits_per_tool_metrics(
    bus: Bus, lambda_context: LambdaContextStub, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = [
        eventbridge_body(invocation_request("calculator", {"expression": "1"}, call_id="m1")),
        eventbridge_body(invocation_request("calculator", {"expression": "1/0"}, call_id="m2")),
    ]
    handler.lambda_handler(sqs_event(*bodies), lambda_context)

    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for blob in blobs:
        for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            by_metric.setdefault(metric["Name"], []).append(blob)
    assert [blob["ToolCalls"] for blob in by_metric["ToolCalls"]] == [[1.0], [1.0]]
    assert [blob["ToolErrors"] for blob in by_metric["ToolErrors"]] == [[0.0], [1.0]]
    assert all(blob["tool"] == "calculator" for blob in by_metric["ToolLatency"])
    assert by_metric["ToolCalls"][0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "agentwire"


def test_tools_handler_keeps_tool_input_out_of_info_logs(
    bus: Bus, lambda_context: LambdaContextStub, log_lines: io.StringIO
) -> None:
    secret = "my card is 4111 1111 1111 1111"
    request = invocation_request("echo", {"text": secret})
    handler.lambda_handler(sqs_event(eventbridge_body(request)), lambda_context)
    logs = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    answered = [line for line in logs if line["message"] == "tool call answered"]
    assert answered and answered[0]["correlation_id"] == request.metadata.run_id
    assert answered[0]["tenant_id"] == "tenant-a" and answered[0]["tool_name"] == "echo"
    assert not any(secret in json.dumps(line) for line in logs)


@pytest.fixture
def debug_log_lines(log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The handler's log at DEBUG, with content recording off unless a test turns it on."""
    for name in (telemetry.ENV_RECORD_CONTENT, telemetry.ENV_GENAI_CAPTURE_CONTENT):
        monkeypatch.delenv(name, raising=False)
    previous = handler.logger.log_level
    handler.logger.setLevel(logging.DEBUG)
    yield log_lines
    handler.logger.setLevel(previous)


#: Looks like an Anthropic API key to `telemetry.redact`.
SECRET = "sk-ant-api03-Zq7xV2mN9pL4kR8sT1wY6bH3"


def test_tools_handler_logs_no_tool_input_at_debug_while_content_recording_is_off(
    bus: Bus, lambda_context: LambdaContextStub, debug_log_lines: io.StringIO
) -> None:
    request = invocation_request("echo", {"text": f"Zebediah says {SECRET}"})
    handler.lambda_handler(sqs_event(eventbridge_body(request)), lambda_context)

    text = debug_log_lines.getvalue()
    logs = [json.loads(line) for line in text.splitlines()]
    assert [line["message"] for line in logs if line["message"] == "tool call answered"]  # the log was captured
    assert handler.logger.isEnabledFor(logging.DEBUG)  # a DEBUG level alone does not let content in
    assert not [line for line in logs if line["message"] == "tool call input"]
    assert "Zebediah" not in text and SECRET not in text  # neither the input nor the echoed output


def test_tools_handler_logs_tool_input_redacted_when_content_recording_is_on(
    bus: Bus, lambda_context: LambdaContextStub, debug_log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(telemetry.ENV_RECORD_CONTENT, "true")
    request = invocation_request("echo", {"text": f"Zebediah says {SECRET}", "note": "password=hunter2"})
    handler.lambda_handler(sqs_event(eventbridge_body(request)), lambda_context)

    text = debug_log_lines.getvalue()
    [logged] = [json.loads(line) for line in text.splitlines() if json.loads(line)["message"] == "tool call input"]
    assert logged["level"] == "DEBUG" and logged["correlation_id"] == request.metadata.run_id
    # Redacted JSON text (not re-parsed: `redact` may eat a closing quote after `password=...`).
    assert '"text": "Zebediah says [REDACTED]"' in logged["tool_input"]
    assert '"note": "password=[REDACTED]' in logged["tool_input"]
    assert SECRET not in text and "hunter2" not in text


def test_tools_handler_logs_no_tool_input_at_info_even_when_content_recording_is_on(
    bus: Bus, lambda_context: LambdaContextStub, log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(telemetry.ENV_RECORD_CONTENT, "true")
    handler.lambda_handler(
        sqs_event(eventbridge_body(invocation_request("echo", {"text": "Zebediah"}))), lambda_context
    )
    assert "tool call answered" in log_lines.getvalue() and "Zebediah" not in log_lines.getvalue()


@mock_aws
def test_tools_handler_duplicate_delivery_runs_the_tool_once_with_real_idempotency(
    counting_echo: tuple[Tool[EchoInput], list[str]], lambda_context: LambdaContextStub
) -> None:
    table = MANIFEST.table("idempotency")
    table_name = MANIFEST.table_name(table)
    boto3.client("dynamodb").create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    tool, runs = counting_echo
    recording = Bus()
    call_once = PowertoolsCallOnce.on_dynamodb(table_name)
    handler.set_dependencies(
        Dependencies(
            service=permissive_service(ToolRegistry([tool]), call_once),
            publisher=recording.publisher,
            context_aware=(call_once,),
        )
    )
    try:
        body = eventbridge_body(invocation_request("echo", {"text": "once"}))
        handler.lambda_handler(sqs_event(body), lambda_context)
        handler.lambda_handler(sqs_event(body), LambdaContextStub(aws_request_id="req-2"))
    finally:
        handler.set_dependencies(None)
    assert runs == ["once"]
    first, second = (answer for _, answer in recording.answers())
    assert first.data.result == second.data.result
    assert first.data.result.content == "echo: once"
    assert call_once.config.lambda_context is not None  # registered by the handler for in-progress expiry


def test_tools_handler_builds_its_dependencies_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentwire_tools.settings import get_settings

    monkeypatch.setenv("AGENTWIRE_EVENT_BUS_NAME", "agentwire-dev")
    monkeypatch.setenv("TOOLS_IDEMPOTENCY_TABLE_NAME", "agentwire-dev-tools-idempotency")
    get_settings.cache_clear()
    handler.set_dependencies(None)
    try:
        with mock_aws():
            dependencies = handler.get_dependencies()
            assert handler.get_dependencies() is dependencies  # built once per sandbox
    finally:
        handler.set_dependencies(None)
        get_settings.cache_clear()
    assert dependencies.publisher.bus_name == "agentwire-dev"
    call_once, deadline = dependencies.context_aware
    assert isinstance(call_once, PowertoolsCallOnce)
    assert isinstance(deadline, InvocationDeadline)
    assert dependencies.service.time_left_s is deadline
    assert "calculator" in dependencies.service.registry
    # World-changing calls are marked before they run (at most once after a worker dies mid-call).
    from agentwire_tools.adapters import DynamoAttemptLog

    assert isinstance(dependencies.service.attempts, DynamoAttemptLog)
    assert dependencies.service.attempts.ttl_s == 24 * 3600


def test_tools_handler_a_tool_never_outlives_the_lambda_invocation(
    slow_tool: Tool[SlowInput], lambda_context: LambdaContextStub
) -> None:
    """The slow tool allows itself 0.2 s, but this invocation has only 0.1 s left after the reserve."""
    patient = Tool(
        untrusted_output=False, name="patient", description="d", input_model=SlowInput, run=slow_tool.run, timeout_s=30
    )
    recording = Bus()
    deadline = InvocationDeadline(reserve_s=5.0)
    handler.set_dependencies(
        Dependencies(
            service=permissive_service(ToolRegistry([patient]), time_left_s=deadline),
            publisher=recording.publisher,
            context_aware=(deadline,),
        )
    )
    try:
        lambda_context.remaining_ms = 5_100
        handler.lambda_handler(
            sqs_event(eventbridge_body(invocation_request("patient", {"seconds": 10}))), lambda_context
        )
    finally:
        handler.set_dependencies(None)
    [(_, answer)] = recording.answers()
    assert answer.data.result.is_error
    assert "time limit of 0.1 s" in answer.data.result.content
    assert answer.data.duration_ms < 2_000


def test_a_long_call_beats_with_the_requests_token_until_it_answers(lambda_context: LambdaContextStub) -> None:
    import threading

    from pydantic import BaseModel

    class Wait(BaseModel):
        seconds: float

    finished = threading.Event()

    def run(call: Wait) -> str:
        finished.wait(call.seconds)
        return "done"

    recording = Bus()
    long_tool = Tool(name="long", description="Takes a while.", input_model=Wait, run=run, timeout_s=5.0)
    service = permissive_service(ToolRegistry([long_tool]))
    handler.set_dependencies(Dependencies(service=service, publisher=recording.publisher, heartbeat_interval_s=0.05))
    try:
        request = invocation_request("long", {"seconds": 0.4}, call_id="toolu_long", step=3)
        response = handler.lambda_handler(sqs_event(eventbridge_body(request)), lambda_context)
    finally:
        handler.set_dependencies(None)

    assert response == {"batchItemFailures": []}
    answers = recording.answers()
    *beats, (last_type, _) = answers
    assert last_type == DetailType.TOOL_INVOCATION_COMPLETED  # no beat after the answer
    assert beats and {detail_type for detail_type, _ in beats} == {DetailType.TOOL_INVOCATION_HEARTBEAT}
    for _, beat in beats:
        assert beat.metadata.task_token == request.metadata.task_token
        assert (beat.data.tool_call_id, beat.data.step, beat.data.tool_name) == ("toolu_long", 3, "long")
    elapsed = [beat.data.elapsed_ms for _, beat in beats]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0


def test_a_quick_call_sends_no_heartbeat(bus: Bus, lambda_context: LambdaContextStub) -> None:
    handler.get_dependencies().heartbeat_interval_s = 30.0
    request = invocation_request("calculator", {"expression": "1 + 1"}, call_id="toolu_quick")
    handler.lambda_handler(sqs_event(eventbridge_body(request)), lambda_context)
    assert [detail_type for detail_type, _ in bus.answers()] == [DetailType.TOOL_INVOCATION_COMPLETED]
