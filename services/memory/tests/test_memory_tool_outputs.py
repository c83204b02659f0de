"""The full output of a capped tool result (agentwire issue #6): the tools service keeps it by claim check
(`result_ref`), memory records the reference beside the transcript and the export reads it back whole.
In-process moto table and bucket."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from agentwire_contracts.content import Message, PayloadRef, TextBlock, ToolResultBlock, ToolUseBlock
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.memory import MemoryContextRequested
from agentwire_contracts.events.session import SessionDeleted
from agentwire_contracts.events.tool import ToolInvocationCompleted
from agentwire_contracts.payload import PayloadStore
from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.service import (
    RetentionPolicy,
    export_session,
    forget_session,
    messages_of,
    record_tool_output,
    serve_context_request,
)
from agentwire_memory.transcript import SessionRef

TABLE = "agentwire-memory-main"
BUCKET = "agentwire-payloads"
SESSION = SessionRef("acme", "s1")
PK = "T#acme#S#s1"
WHOLE = "line of a long report\n" * 2_000
CAPPED = WHOLE[:100] + "\n[output truncated]"


@pytest.fixture
def store(dynamodb: Any) -> DynamoTranscriptStore:
    return DynamoTranscriptStore(dynamodb, TABLE, sleep=lambda _: None)


@pytest.fixture
def payloads(aws: None) -> PayloadStore:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return PayloadStore(client=client, bucket=BUCKET)


def stored_output(payloads: PayloadStore, content: str = WHOLE, session_id: str = "s1") -> PayloadRef:
    """What the tools service's `claim_check` stores for an output over the tool's cap."""
    return payloads.put_json(
        {"tool_name": "report", "content": content}, tenant_id="acme", session_id=session_id, kind="tool-result"
    )


def completed(
    ref: PayloadRef | None,
    *,
    call_id: str = "t1",
    capped: str = CAPPED,
    run_id: str = "run-1",
    session_id: str = "s1",
) -> Event[ToolInvocationCompleted]:
    data = ToolInvocationCompleted(
        session_id=session_id,
        step=1,
        tool_name="report",
        result=ToolResultBlock(tool_use_id=call_id, content=capped),
        result_ref=ref,
    )
    return Event.create(data, tenant_id="acme", run_id=run_id, task_token="tok")


def append_tool_round(
    store: DynamoTranscriptStore, *, call_id: str = "t1", capped: str = CAPPED, run_id: str = "run-1"
) -> None:
    """The run's appends: the user's question, then the tool call together with its (capped) result."""
    call = Message(role="assistant", content=[ToolUseBlock(id=call_id, name="report", input={})])
    result = Message(role="user", content=[ToolResultBlock(tool_use_id=call_id, content=capped)])
    for step, append in ((0, [Message(role="user", content=[TextBlock(text="the report?")])]), (1, [call, result])):
        data = MemoryContextRequested(session_id="s1", step=step, append=append, include_context=False)
        serve_context_request(Event.create(data, tenant_id="acme", run_id=run_id), store)


def items(dynamodb: Any, prefix: str = "TOOLOUTPUT#") -> list[dict[str, Any]]:
    found = dynamodb.query(
        TableName=TABLE, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": PK}}
    )["Items"]
    return [item for item in found if item["sk"]["S"].startswith(prefix)]


def test_a_recorded_output_is_exported_whole_beside_the_capped_transcript(
    store: DynamoTranscriptStore, payloads: PayloadStore
) -> None:
    append_tool_round(store)
    ref = stored_output(payloads)

    assert record_tool_output(completed(ref), store) == "recorded"

    exported = export_session(store, SESSION, payloads)
    [output] = exported["tool_outputs"]
    assert output == {
        "tool_use_id": "t1",
        "tool_name": "report",
        "seq": 3,  # the message holding the tool_result
        "run_id": "run-1",
        "step": 1,
        "is_error": False,
        "occurred_at": output["occurred_at"],
        "ref": ref.model_dump(mode="json"),
        "content": WHOLE,
        "missing": False,
        "status": "resolved",
        "error": None,
    }
    # The messages stay what the model saw (the capped copy), in the contract's shape.
    assert exported["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "t1",
        "content": CAPPED,
        "is_error": False,
    }
    assert messages_of(exported)[2].content[0] == ToolResultBlock(tool_use_id="t1", content=CAPPED)


def test_a_redelivered_completion_is_recorded_once(
    store: DynamoTranscriptStore, payloads: PayloadStore, dynamodb: Any
) -> None:
    event = completed(stored_output(payloads))
    assert record_tool_output(event, store) == "recorded"
    assert record_tool_output(event, store) == "duplicate"
    [item] = items(dynamodb)
    assert (item["sk"]["S"], item["kind"]["S"]) == ("TOOLOUTPUT#t1#run-1", "tool_output")
    assert len(export_session(store, SESSION, payloads)["tool_outputs"]) == 1


class Untouchable:
    """A store any use of which fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used: {name}")


def test_a_completion_without_a_reference_writes_nothing_and_reads_nothing(
    store: DynamoTranscriptStore, dynamodb: Any
) -> None:
    plain = completed(None, capped="42")
    assert record_tool_output(plain, Untouchable()) == "no_reference"  # type: ignore[arg-type]
    assert record_tool_output(plain, store) == "no_reference"
    assert dynamodb.scan(TableName=TABLE)["Items"] == []


def test_a_deleted_session_records_nothing(store: DynamoTranscriptStore, payloads: PayloadStore, dynamodb: Any) -> None:
    append_tool_round(store)
    ref = stored_output(payloads)
    forget_session(Event.create(SessionDeleted(session_id="s1"), tenant_id="acme"), store, payloads)

    assert record_tool_output(completed(ref), store) == "session_deleted"
    assert [item["sk"]["S"] for item in items(dynamodb, "")] == ["HEAD"]  # still only the tombstone


def test_a_reference_outside_the_sessions_payloads_is_not_recorded(
    store: DynamoTranscriptStore, payloads: PayloadStore, dynamodb: Any
) -> None:
    elsewhere = stored_output(payloads, session_id="another-session")
    assert record_tool_output(completed(elsewhere), store) == "outside_session"
    assert dynamodb.scan(TableName=TABLE)["Items"] == []


def test_a_missing_payload_is_reported_per_output(store: DynamoTranscriptStore, payloads: PayloadStore) -> None:
    append_tool_round(store)
    append_tool_round(store, call_id="t2", capped="second " + CAPPED, run_id="run-2")
    gone = stored_output(payloads)
    kept = stored_output(payloads, content="second " + WHOLE)
    record_tool_output(completed(gone), store)
    record_tool_output(completed(kept, call_id="t2", capped="second " + CAPPED, run_id="run-2"), store)
    payloads.client.delete_object(Bucket=BUCKET, Key=gone.key)  # expired (the bucket's lifecycle) or deleted

    first, second = export_session(store, SESSION, payloads)["tool_outputs"]
    assert (first["tool_use_id"], first["content"], first["missing"], first["status"]) == ("t1", None, True, "missing")
    assert first["error"].startswith("Payload.NotFound")
    assert (second["tool_use_id"], second["content"], second["missing"]) == ("t2", "second " + WHOLE, False)


def test_without_a_payload_store_the_export_lists_the_references(
    store: DynamoTranscriptStore, payloads: PayloadStore
) -> None:
    append_tool_round(store)
    ref = stored_output(payloads)
    record_tool_output(completed(ref), store)
    [output] = export_session(store, SESSION)["tool_outputs"]
    assert (output["seq"], output["ref"], output["content"], output["status"]) == (
        3,
        ref.model_dump(mode="json"),
        None,
        "unresolved",
    )


def test_a_call_id_reused_by_a_later_run_keeps_each_runs_output(
    store: DynamoTranscriptStore, payloads: PayloadStore
) -> None:
    # A scripted model may name its calls the same in every run: each output belongs to its own block.
    append_tool_round(store, run_id="run-1")
    append_tool_round(store, capped="other " + CAPPED, run_id="run-2")
    record_tool_output(completed(stored_output(payloads), run_id="run-1"), store)
    other = stored_output(payloads, content="other " + WHOLE)
    assert record_tool_output(completed(other, capped="other " + CAPPED, run_id="run-2"), store) == "recorded"

    outputs = export_session(store, SESSION, payloads)["tool_outputs"]
    assert [(o["seq"], o["run_id"], o["content"]) for o in outputs] == [
        (3, "run-1", WHOLE),
        (6, "run-2", "other " + WHOLE),
    ]


def test_an_output_whose_block_is_not_in_the_transcript_has_no_seq(
    store: DynamoTranscriptStore, payloads: PayloadStore
) -> None:
    # The run stopped (or timed out on the call) before appending this result: still shown, with no seq.
    append_tool_round(store)
    record_tool_output(completed(stored_output(payloads), call_id="t9"), store)
    [output] = export_session(store, SESSION, payloads)["tool_outputs"]
    assert (output["tool_use_id"], output["seq"], output["content"]) == ("t9", None, WHOLE)


def test_a_tool_output_is_kept_as_long_as_the_transcript(
    store: DynamoTranscriptStore, payloads: PayloadStore, dynamodb: Any
) -> None:
    store.set_retention_days("acme", 7)
    record_tool_output(completed(stored_output(payloads)), store, RetentionPolicy(store, default_days=None))
    [item] = items(dynamodb)
    assert int(item["expires_at"]["N"]) == int(item["created_at"]["N"]) + 7 * 86400


def test_forgetting_the_session_removes_the_tool_output_and_its_payload(
    store: DynamoTranscriptStore, payloads: PayloadStore, dynamodb: Any
) -> None:
    append_tool_round(store)
    record_tool_output(completed(stored_output(payloads)), store)
    assert items(dynamodb) and payloads.list_session("acme", "s1")

    forgotten = forget_session(Event.create(SessionDeleted(session_id="s1"), tenant_id="acme"), store, payloads)

    assert forgotten.payloads == 1
    assert items(dynamodb) == []
    assert [item["sk"]["S"] for item in items(dynamodb, "")] == ["HEAD"]
    assert payloads.list_session("acme", "s1") == []
