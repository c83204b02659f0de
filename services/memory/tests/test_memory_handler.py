"""The Lambda handler end to end: a real-shaped SQS batch in, events out, the table on moto."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from agentwire_contracts import testing
from agentwire_contracts.content import Message, TextBlock
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.memory import MemoryContextRequested
from agentwire_contracts.events.session import SessionDeleted
from agentwire_contracts.testing import LambdaContextStub
from agentwire_memory import handler
from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.handler import Dependencies
from agentwire_memory.ports import StoreUnavailable
from agentwire_memory.transcript import SessionRef

from .conftest import MEMORY_AGENTS

TABLE = "agentwire-memory-main"
SECRET = "my card number is 4111"
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


LambdaContext = partial(LambdaContextStub, "agentwire-memory-context")
QUEUE_ARN = testing.queue_arn("agentwire-memory-context")


def eventbridge(detail_type: str, event: Event[Any]) -> str:
    """The SQS body EventBridge delivers for `event` (routed by its own detail-type)."""
    assert detail_type == event.detail_type
    return testing.eventbridge_body(event)


def sqs_record(body: str, message_id: str | None = None) -> dict[str, Any]:
    return testing.sqs_record(body, message_id=message_id, source_arn=QUEUE_ARN)


def batch(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def context_request(step: int, append: list[Message], *, include_context: bool = True) -> Event[Any]:
    data = MemoryContextRequested(session_id="s1", step=step, append=append, include_context=include_context)
    return Event.create(
        data,
        tenant_id="acme",
        run_id="run-42",
        causation_id="run-request-1",
        trace_header=TRACE_HEADER,
        task_token=f"token-step-{step}",
    )


def user(text: str) -> Message:
    return Message(role="user", content=[TextBlock(text=text)])


@pytest.fixture
def deps(dynamodb: Any, publisher: Any) -> Iterator[Dependencies]:
    dependencies = Dependencies(
        store=DynamoTranscriptStore(dynamodb, TABLE, sleep=lambda _: None), publisher=publisher, agents=MEMORY_AGENTS
    )
    handler.set_dependencies(dependencies)
    yield dependencies
    handler.set_dependencies(None)


def test_context_request_is_appended_answered_and_announced(deps: Dependencies, publisher: Any) -> None:
    request = context_request(0, [user("hello")])

    response = handler.lambda_handler(batch(sqs_record(eventbridge(request.detail_type, request))), LambdaContext())

    assert response == {"batchItemFailures": []}
    (call,) = publisher.calls
    assert [event.detail_type for event in call] == ["memory.message.appended.v1", "memory.context.ready.v1"]
    appended, ready = call
    assert ready.metadata.task_token == "token-step-0"
    assert ready.metadata.causation_id == request.metadata.event_id
    assert ready.metadata.run_id == "run-42" and ready.metadata.tenant_id == "acme"
    # Both continue the request's trace (a child of memory's span for the record).
    root = TRACE_HEADER.split(";", maxsplit=1)[0]
    assert appended.metadata.trace_header.startswith(root) and ready.metadata.trace_header.startswith(root)
    assert ready.metadata.trace_header != TRACE_HEADER
    assert ready.data.messages == [user("hello")]
    assert (ready.data.appended, ready.data.message_count) == (1, 1)
    assert [(m.seq, m.message) for m in appended.data.messages] == [(1, user("hello"))]
    assert appended.data.session_id == "s1"
    # The ready answer has what the state machine's ResultSelector reads ($.messages).
    assert "messages" in ready.detail()["data"]


def test_a_malformed_record_is_reported_and_the_rest_of_the_batch_still_served(
    deps: Dependencies, publisher: Any
) -> None:
    request = context_request(0, [user("hello")])
    good = sqs_record(eventbridge(request.detail_type, request), "good-1")
    malformed = sqs_record("{not json", "bad-1")

    response = handler.lambda_handler(batch(malformed, good), LambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": "bad-1"}]}
    assert [event.detail_type for event in publisher.events] == [
        "memory.message.appended.v1",
        "memory.context.ready.v1",
    ]


def test_an_invalid_request_with_a_task_token_fails_the_step_at_once_and_goes_to_the_dlq(
    deps: Dependencies, publisher: Any
) -> None:
    request = context_request(0, [user("hello")])
    body = json.loads(eventbridge(request.detail_type, request))
    body["detail"]["data"]["step"] = -1

    response = handler.lambda_handler(batch(sqs_record(json.dumps(body), "bad-2")), LambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": "bad-2"}]}
    (failed,) = publisher.events
    assert failed.detail_type == "memory.context.failed.v1"
    assert failed.data.code == "Contract.InvalidEvent" and failed.metadata.task_token == "token-step-0"
    assert deps.store.message_count(SessionRef("acme", "s1")) == 0


def test_a_misrouted_detail_type_is_reported(deps: Dependencies, publisher: Any) -> None:
    request = context_request(0, [user("hello")])
    body = json.loads(eventbridge(request.detail_type, request))
    body["detail-type"] = "run.started.v1"

    response = handler.lambda_handler(batch(sqs_record(json.dumps(body), "odd-1")), LambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": "odd-1"}]}
    assert publisher.events == []


def test_a_redelivered_request_republishes_the_same_events_and_writes_nothing_twice(
    deps: Dependencies, publisher: Any
) -> None:
    request = context_request(0, [user("hello")])
    body = eventbridge(request.detail_type, request)

    handler.lambda_handler(batch(sqs_record(body)), LambdaContext())
    handler.lambda_handler(batch(sqs_record(body)), LambdaContext())

    first, second = publisher.calls
    assert [e.data.model_dump(exclude={"duration_ms"}) for e in first] == [
        e.data.model_dump(exclude={"duration_ms"}) for e in second
    ]
    assert [e.metadata.task_token for e in first] == [e.metadata.task_token for e in second]
    assert deps.store.message_count(SessionRef("acme", "s1")) == 1


def test_a_failed_publish_is_retried_by_sqs_and_the_redelivery_publishes(deps: Dependencies, publisher: Any) -> None:
    request = context_request(0, [user("hello")])
    body = eventbridge(request.detail_type, request)
    publisher.fail_next = 1

    crashed = handler.lambda_handler(batch(sqs_record(body, "m-1")), LambdaContext())
    redelivered = handler.lambda_handler(batch(sqs_record(body, "m-1")), LambdaContext())

    assert crashed == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert redelivered == {"batchItemFailures": []}
    (call,) = publisher.calls
    appended, ready = call
    assert [m.seq for m in appended.data.messages] == [1] and ready.data.appended == 1
    assert deps.store.message_count(SessionRef("acme", "s1")) == 1


def test_save_answer_step_appends_without_returning_context(deps: Dependencies, publisher: Any) -> None:
    first = context_request(0, [user("hello")])
    final = context_request(1, [Message(role="assistant", content=[TextBlock(text="hi!")])], include_context=False)

    handler.lambda_handler(
        batch(sqs_record(eventbridge(first.detail_type, first)), sqs_record(eventbridge(final.detail_type, final))),
        LambdaContext(),
    )

    ready = publisher.calls[-1][-1]
    assert ready.data.messages == [] and ready.data.appended == 1 and ready.data.message_count == 2
    assert [m.seq for m in publisher.calls[-1][0].data.messages] == [2]


def test_session_deleted_removes_every_item_and_answers_nothing(
    deps: Dependencies, publisher: Any, dynamodb: Any
) -> None:
    request = context_request(0, [user("hello"), user("again")])
    handler.lambda_handler(batch(sqs_record(eventbridge(request.detail_type, request))), LambdaContext())
    publisher.calls.clear()
    deleted = Event.create(SessionDeleted(session_id="s1"), tenant_id="acme")

    response = handler.lambda_handler(batch(sqs_record(eventbridge(deleted.detail_type, deleted))), LambdaContext())

    assert response == {"batchItemFailures": []}
    assert publisher.calls == []
    # What remains is the session's tombstone only.
    [tombstone] = dynamodb.scan(TableName=TABLE)["Items"]
    assert (tombstone["sk"]["S"], tombstone["kind"]["S"]) == ("HEAD", "deleted")
    assert set(tombstone) == {"pk", "sk", "kind", "tenant_id", "session_id", "deleted_at"}

    # A context request arriving after the deletion: a typed failure, not retryable, and nothing written.
    late = context_request(1, [user("late")])
    handler.lambda_handler(batch(sqs_record(eventbridge(late.detail_type, late))), LambdaContext())
    (failed,) = publisher.events
    assert failed.detail_type == "memory.context.failed.v1" and failed.metadata.task_token == late.metadata.task_token
    assert (failed.data.code, failed.data.retryable) == ("Memory.SessionDeleted", False)
    assert dynamodb.scan(TableName=TABLE)["Items"] == [tombstone]


class ThrottledStore:
    def __getattr__(self, name: str) -> Any:
        def throttled(*_: Any, **__: Any) -> Any:
            raise StoreUnavailable("DynamoDB: ThrottlingException")

        return throttled


def test_throttling_is_answered_as_retryable_memory_unavailable(publisher: Any) -> None:
    handler.set_dependencies(Dependencies(store=ThrottledStore(), publisher=publisher))
    try:
        request = context_request(0, [user("hello")])
        response = handler.lambda_handler(batch(sqs_record(eventbridge(request.detail_type, request))), LambdaContext())
    finally:
        handler.set_dependencies(None)

    # Answered, so not retried by SQS: the state machine's Retry on Memory.Unavailable takes it from here.
    assert response == {"batchItemFailures": []}
    (failed,) = publisher.events
    assert failed.detail_type == "memory.context.failed.v1"
    assert failed.data.code == "Memory.Unavailable" and failed.data.retryable
    assert failed.metadata.task_token == "token-step-0"


def test_logs_carry_the_run_id_as_correlation_id_and_never_message_content(
    deps: Dependencies, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Logger holds the stdout of import time, so read its stream directly.
    stream = io.StringIO()
    monkeypatch.setattr(handler.logger.registered_handler, "stream", stream)
    request = context_request(0, [user(SECRET)])

    handler.lambda_handler(batch(sqs_record(eventbridge(request.detail_type, request))), LambdaContext())

    output = stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{") and '"level"' in line]
    served = [line for line in lines if line.get("message") == "context served"]
    assert served and served[0]["correlation_id"] == "run-42"
    assert served[0]["tenant_id"] == "acme" and served[0]["session_id"] == "s1"
    assert served[0]["trace_id"] == TRACE_HEADER.split(";", maxsplit=1)[0].removeprefix("Root=1-").replace("-", "")
    assert SECRET not in output


def test_spans_assemble_context_with_sizes_and_execute_memory_tools_never_with_content(
    deps: Dependencies, tmp_path: Any
) -> None:
    context = context_request(0, [user(SECRET)])
    remember = tool_request("remember", {"fact": SECRET})
    with testing.recording_spans("memory", tmp_path) as spans:
        handler.lambda_handler(batch(sqs_record(eventbridge(context.detail_type, context))), LambdaContext())
        handler.lambda_handler(batch(sqs_record(eventbridge(remember.detail_type, remember))), LambdaContext())

    record = spans.one("process memory.context.requested.v1")
    assemble = spans.one("assemble context")
    assert record["parent_span_id"] == "53995c3f42cd8ad8" and assemble["parent_span_id"] == record["span_id"]
    assert assemble["attributes"]["agentwire.context.messages"] == 1
    assert assemble["attributes"]["agentwire.context.tokens"] > 0
    executed = spans.one("execute_tool remember")
    assert executed["attributes"]["gen_ai.tool.name"] == "remember" and executed["status"] == "UNSET"
    assert SECRET not in json.dumps(spans.spans())


def test_a_failed_record_counts_records_failed(deps: Dependencies, capsys: pytest.CaptureFixture[str]) -> None:
    handler.lambda_handler(batch(sqs_record("{not json")), LambdaContext())
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(blob.get("RecordsFailed") == [1.0] for blob in metrics)


def test_dependencies_are_built_lazily_from_settings(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentwire_memory.settings import get_settings

    monkeypatch.setenv("MEMORY_TABLE_NAME", "agentwire-memory-main")
    monkeypatch.setenv("AGENTWIRE_EVENT_BUS_NAME", "custom-bus")
    get_settings.cache_clear()
    handler.set_dependencies(None)
    try:
        built = handler.get_dependencies()
        assert handler.get_dependencies() is built
        assert built.publisher.bus_name == "custom-bus"  # type: ignore[attr-defined]
        assert isinstance(built.store, DynamoTranscriptStore)
    finally:
        handler.set_dependencies(None)
        get_settings.cache_clear()


def tool_request(name: str, tool_input: dict[str, Any], *, user_id: str | None = "u1") -> Event[Any]:
    from agentwire_contracts.content import ToolCall
    from agentwire_contracts.events.tool import ToolInvocationRequested

    data = ToolInvocationRequested(
        session_id="s1", step=2, tool_call=ToolCall.of("c1", name, tool_input), user_id=user_id, agent="memo@1"
    )
    return Event.create(data, tenant_id="acme", run_id="run-42", task_token="token-tool")


def test_a_remember_call_is_answered_as_a_tool_result_and_never_logs_the_fact(
    deps: Dependencies, publisher: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(handler.logger.registered_handler, "stream", stream)
    request = tool_request("remember", {"fact": SECRET})

    response = handler.lambda_handler(batch(sqs_record(eventbridge(request.detail_type, request))), LambdaContext())

    assert response == {"batchItemFailures": []}
    (answer,) = publisher.events
    assert answer.detail_type == "tool.invocation.completed.v1"
    assert answer.metadata.task_token == "token-tool" and answer.metadata.causation_id == request.metadata.event_id
    assert (answer.data.tool_name, answer.data.step, answer.data.result.tool_use_id) == ("remember", 2, "c1")
    assert not answer.data.result.is_error
    assert answer.source == "agentwire.memory"  # memory answers for the tools it offers
    assert [fact.text for fact in deps.store.list_facts("acme", "u1")] == [SECRET]
    assert SECRET not in stream.getvalue()


def test_a_store_outage_during_a_tool_call_is_a_retryable_failure(publisher: Any) -> None:
    class Down:
        def get_tool_result(self, *args: Any) -> str | None:
            raise StoreUnavailable("DynamoDB: ThrottlingException")

    handler.set_dependencies(Dependencies(store=Down(), publisher=publisher))  # type: ignore[arg-type]
    try:
        request = tool_request("forget", {"fact": "x"})
        response = handler.lambda_handler(batch(sqs_record(eventbridge(request.detail_type, request))), LambdaContext())
    finally:
        handler.set_dependencies(None)
    assert response == {"batchItemFailures": []}
    (failed,) = publisher.events
    assert failed.detail_type == "tool.invocation.failed.v1"
    assert (failed.data.code, failed.data.retryable) == ("Memory.Unavailable", True)


def test_the_manifest_routes_only_memorys_tools_here() -> None:
    from agentwire_contracts.remote_tools import tools_served_by
    from agentwire_memory.manifest import MANIFEST

    consumer = MANIFEST.consumer("tools")
    assert consumer.tool_names == tools_served_by("memory") == ("forget", "read_state", "remember", "write_state")
    [pattern] = MANIFEST.event_patterns(consumer)
    assert pattern["detail"] == {"data": {"tool_call": {"name": ["forget", "read_state", "remember", "write_state"]}}}


def test_a_failed_run_is_recorded_beside_the_transcript_once(deps: Dependencies, publisher: Any) -> None:
    from agentwire_contracts.content import ErrorInfo
    from agentwire_contracts.events.run import RunFailed
    from agentwire_memory.service import export_session

    request = context_request(0, [user("hello")])
    handler.lambda_handler(batch(sqs_record(eventbridge(request.detail_type, request))), LambdaContext())
    failed = Event.create(
        RunFailed(
            session_id=request.data.session_id,
            error=ErrorInfo(code="Llm.BadRequest", message="rejected"),
            model_turns=1,
            cost_microusd=42,
        ),
        tenant_id=request.metadata.tenant_id,
        run_id=request.metadata.run_id,
    )
    body = eventbridge(failed.detail_type, failed)
    for delivery in range(2):  # at least once: the redelivery records nothing new
        response = handler.lambda_handler(batch(sqs_record(body, message_id=f"m-{delivery}")), LambdaContext())
        assert response == {"batchItemFailures": []}

    exported = export_session(deps.store, SessionRef(request.metadata.tenant_id, request.data.session_id))
    assert [(f["run_id"], f["code"], f["cost_microusd"]) for f in exported["failed_runs"]] == [
        (request.metadata.run_id, "Llm.BadRequest", 42)
    ]
    assert exported["message_count"] == 1  # the transcript itself is untouched


def test_a_capped_tool_result_is_recorded_from_its_completion_once(
    deps: Dependencies, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from agentwire_contracts.content import ToolResultBlock
    from agentwire_contracts.events.tool import ToolInvocationCompleted
    from agentwire_contracts.payload import PayloadStore
    from agentwire_memory.manifest import MANIFEST
    from agentwire_memory.service import export_session

    assert "tool.invocation.completed.v1" in MANIFEST.consumer("context").detail_types
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="payloads")
    payloads = PayloadStore(client=s3, bucket="payloads")
    whole = SECRET + " " + "x" * 50_000
    ref = payloads.put_json(
        {"tool_name": "report", "content": whole}, tenant_id="acme", session_id="s1", kind="tool-result"
    )

    def answer(call_id: str, result_ref: Any) -> Event[Any]:
        data = ToolInvocationCompleted(
            session_id="s1",
            step=1,
            tool_name="report",
            result=ToolResultBlock(tool_use_id=call_id, content=SECRET[:5] + " [truncated]"),
            result_ref=result_ref,
        )
        return Event.create(data, tenant_id="acme", run_id="run-42", task_token="tok", trace_header=TRACE_HEADER)

    capped, plain = answer("call-1", ref), answer("call-2", None)
    stream = io.StringIO()
    monkeypatch.setattr(handler.logger.registered_handler, "stream", stream)
    records = [
        sqs_record(eventbridge(capped.detail_type, capped), "m-1"),
        sqs_record(eventbridge(capped.detail_type, capped), "m-2"),  # at least once: a redelivery
        sqs_record(eventbridge(plain.detail_type, plain), "m-3"),
    ]

    response = handler.lambda_handler(batch(*records), LambdaContext())

    assert response == {"batchItemFailures": []}
    items = dynamodb.scan(TableName=TABLE)["Items"]
    assert [item["sk"]["S"] for item in items] == ["TOOLOUTPUT#call-1#run-42"]  # nothing for the plain answer
    [output] = export_session(deps.store, SessionRef("acme", "s1"), payloads)["tool_outputs"]
    assert (output["tool_use_id"], output["content"]) == ("call-1", whole)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    recorded = [line for line in lines if line.get("message") == "tool output recorded"]
    assert [line["new"] for line in recorded] == [True, False]
    assert recorded[0]["correlation_id"] == "run-42" and recorded[0]["tool_call_id"] == "call-1"
    assert SECRET not in stream.getvalue()  # the output is never logged
