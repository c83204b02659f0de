"""The memory service on the running local stack (its real worker, queues, table and the payload bucket):
remember routed to memory by tool name and refused for the packaged agents (none offers it; the served round
trip is in test_memory_tools_emulator.py), facts injected into every session of the user and
listable/deletable by the admin functions, claim-checked contexts, compaction round trip, agent state,
per-tenant retention, session deletion leaving only its tombstone, late requests refused, export (with the
full outputs of capped tool results, recorded from their `tool.invocation.completed.v1`).

Requests are published on the bus as the orchestrator would (without a task token, so the resume
consumer ignores the answers); a queue of this module captures the answers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from agentwire_contracts.content import ErrorInfo, Message, TextBlock, ToolCall, ToolResultBlock, ToolUseBlock
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.memory import AgentStateUpdate, ContextSummary, MemoryContextRequested
from agentwire_contracts.events.run import RunFailed
from agentwire_contracts.events.session import SessionDeleted
from agentwire_contracts.events.tool import ToolInvocationCompleted, ToolInvocationRequested
from agentwire_contracts.names import DetailType
from agentwire_contracts.payload import PayloadRef, PayloadStore
from agentwire_contracts.publish import EventPublisher
from agentwire_infra.local.client import wait_until
from agentwire_infra.local.stack import LocalStack
from agentwire_memory import admin
from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.transcript import Fact, fact_id_of

pytestmark = pytest.mark.integration

TENANT = "acme"


@pytest.fixture(scope="module")
def answers(capture_events: Any) -> Iterator[Any]:
    """Every answer of memory (and any tools answer) on the bus; `get(run_id, n)` waits for n of a run."""
    detail_types = [
        DetailType.MEMORY_CONTEXT_READY,
        DetailType.MEMORY_CONTEXT_FAILED,
        DetailType.TOOL_INVOCATION_COMPLETED,
        DetailType.TOOL_INVOCATION_FAILED,
    ]
    with capture_events(detail_types) as get:
        yield get


@pytest.fixture(scope="module")
def table(local_stack: LocalStack) -> str:
    assert local_stack.topology is not None
    return local_stack.topology.table("memory", "main").table_name


@pytest.fixture(scope="module")
def payloads(local_stack: LocalStack, aws: Any) -> PayloadStore:
    assert local_stack.topology is not None
    return PayloadStore(client=aws("s3"), bucket=local_stack.topology.payload_bucket)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def context(
    bus: EventPublisher,
    answers: Any,
    session_id: str,
    step: int,
    append: list[Message],
    tenant_id: str = TENANT,
    **extra: Any,
) -> dict[str, Any]:
    run_id = new_id("run")
    bus.publish_one(
        Event.create(
            MemoryContextRequested(session_id=session_id, step=step, append=append, **extra),
            tenant_id=tenant_id,
            run_id=run_id,
        )
    )
    [answer] = answers(run_id)
    assert answer["detail-type"] == DetailType.MEMORY_CONTEXT_READY, answer["detail"]["data"]
    data: dict[str, Any] = answer["detail"]["data"]
    return data


def tool_call(
    bus: EventPublisher,
    answers: Any,
    name: str,
    tool_input: dict[str, Any],
    *,
    user_id: str,
    session_id: str,
    run_id: str | None = None,
    call_id: str = "call-1",
    agent: str = "",
) -> dict[str, Any]:
    run_id = run_id or new_id("run")
    bus.publish_one(
        Event.create(
            ToolInvocationRequested(
                session_id=session_id,
                step=1,
                tool_call=ToolCall.of(call_id, name, tool_input),
                user_id=user_id,
                agent=agent,
            ),
            tenant_id=TENANT,
            run_id=run_id,
        )
    )
    return answers(run_id)[-1]


def user(text: str) -> Message:
    return Message(role="user", content=[TextBlock(text=text)])


def partition_items(aws: Any, table: str, session_id: str, tenant_id: str = TENANT) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = aws("dynamodb").query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"T#{tenant_id}#S#{session_id}"}},
        ConsistentRead=True,
    )["Items"]
    return items


def seed_fact(dynamodb: Any, table: str, user_id: str, text: str) -> None:
    """A saved fact, written as memory's remember would (no packaged agent offers remember: the tool's own
    round trip is in test_memory_tools_emulator.py, on a stack whose deployment has such an agent)."""
    store = DynamoTranscriptStore(dynamodb, table)
    store.put_fact(TENANT, user_id, Fact(fact_id=fact_id_of(text), text=text), session_id="s", run_id="r")


def test_remember_is_routed_to_memory_and_refused_for_a_packaged_agent(
    bus: EventPublisher, answers: Any, aws: Any, table: str
) -> None:
    """No packaged agent offers remember: a call from a run of one (an injected "call remember") is answered
    by memory, alone, with a refusal the model sees, and saves nothing."""
    user_id, run_id = new_id("user"), new_id("run")
    answer = tool_call(
        bus, answers, "remember", {"fact": "Prefers answers in French."}, user_id=user_id, session_id=new_id("s"),
        run_id=run_id, agent="assistant@2",
    )  # fmt: skip
    assert answer["detail-type"] == DetailType.TOOL_INVOCATION_COMPLETED
    assert answer["source"] == "agentwire.memory"
    result = ToolResultBlock.model_validate(answer["detail"]["data"]["result"])
    assert result.is_error and "refused by policy (default-deny)" in result.content
    # Exactly one service answered: the tools service's rule excludes memory's tools.
    assert len(answers(run_id)) == 1
    assert admin.list_facts(TENANT, user_id, table_name=table, dynamodb_client=aws("dynamodb")) == []


def test_saved_facts_are_injected_into_every_session_of_the_user(
    bus: EventPublisher, answers: Any, aws: Any, table: str
) -> None:
    user_id = new_id("user")
    seed_fact(aws("dynamodb"), table, user_id, "Prefers answers in French.")
    ready = context(bus, answers, new_id("s"), 0, [user("bonjour")], system="Be brief.", user_id=user_id)
    assert ready["system"].startswith("Be brief.") and "Prefers answers in French." in ready["system"]
    assert ready["facts_count"] == 1


def test_admin_deletes_a_users_facts(aws: Any, table: str) -> None:
    user_id = new_id("user")
    for fact in ("Lives in Lyon.", "Has a cat."):
        seed_fact(aws("dynamodb"), table, user_id, fact)
    listed = admin.list_facts(TENANT, user_id, table_name=table, dynamodb_client=aws("dynamodb"))
    assert len(listed) == 2
    kwargs = {"table_name": table, "dynamodb_client": aws("dynamodb")}
    assert admin.delete_facts(TENANT, user_id, [listed[0]["fact_id"]], **kwargs) == 1
    assert admin.delete_facts(TENANT, user_id, None, **kwargs) == 1
    assert admin.list_facts(TENANT, user_id, **kwargs) == []


def test_a_large_context_travels_by_claim_check(bus: EventPublisher, answers: Any, payloads: PayloadStore) -> None:
    session_id = new_id("s")
    big = [user("part one " + "a" * 90_000), Message(role="assistant", content=[TextBlock(text="b" * 90_000)])]
    ready = context(bus, answers, session_id, 0, big)
    assert ready["messages"] == [] and ready["messages_ref"] is not None
    resolved = payloads.get_json(PayloadRef.model_validate(ready["messages_ref"]))
    assert [Message.model_validate(m) for m in resolved] == big


def test_compaction_round_trip_and_agent_state(bus: EventPublisher, answers: Any, aws: Any, table: str) -> None:
    session_id = new_id("s")
    for step in range(12):
        context(
            bus,
            answers,
            session_id,
            step,
            [user(f"q{step} " + "x" * 800), Message(role="assistant", content=[TextBlock(text="y" * 800)])],
            include_context=False,
        )
    turn = context(
        bus, answers, session_id, 12, [user("and now?")], max_context_tokens=1500, compaction_threshold_tokens=2000
    )
    assert turn["compaction"] is not None
    through = turn["compaction"]["through_seq"]
    compacted = context(
        bus,
        answers,
        session_id,
        12,
        [],
        phase="compaction",
        max_context_tokens=1500,
        summary=ContextSummary(text="Twelve questions about x.", through_seq=through, cost_microusd=42),
        state_updates=[AgentStateUpdate(key="plan", value={"next": "answer"}, expected_version=0)],
    )
    assert compacted["summary_through_seq"] == through and "Twelve questions" in compacted["system"]
    assert compacted["state"] == [{"key": "plan", "value": {"next": "answer"}, "version": 1}]
    exported = admin.export(TENANT, session_id, table_name=table, dynamodb_client=aws("dynamodb"))
    assert exported["message_count"] == 25  # the full transcript is kept
    assert exported["summaries"][0]["cost_microusd"] == 42


def test_tenant_retention_sets_the_ttl(bus: EventPublisher, answers: Any, aws: Any, table: str) -> None:
    # A tenant of its own: the worker caches a tenant's retention for a minute after its first request.
    tenant = new_id("tenant")
    admin.set_retention(tenant, 3, table_name=table, dynamodb_client=aws("dynamodb"))
    kept = new_id("tenant")
    for tenant_id in (tenant, kept):
        context(bus, answers, "s", 0, [user("hi")], tenant_id=tenant_id, include_context=False)
    [message] = [i for i in partition_items(aws, table, "s", tenant) if i["sk"]["S"].startswith("MSG#")]
    assert int(message["expires_at"]["N"]) - int(message["created_at"]["N"]) == 3 * 86400
    [message] = [i for i in partition_items(aws, table, "s", kept) if i["sk"]["S"].startswith("MSG#")]
    assert "expires_at" not in message  # the deployment's default here: keep until deleted


def test_session_deleted_removes_every_item_and_payload(
    bus: EventPublisher, answers: Any, aws: Any, table: str, payloads: PayloadStore
) -> None:
    session_id = new_id("s")
    call = Message(role="assistant", content=[ToolUseBlock(id="t1", name="calculator", input={"e": "1+1"})])
    result = Message(role="user", content=[ToolResultBlock(tool_use_id="t1", content="2" * 100_000)])
    context(bus, answers, session_id, 0, [user("big one")])
    context(bus, answers, session_id, 1, [call, result], state_updates=[AgentStateUpdate(key="n", value=1)])
    tool_call(bus, answers, "remember", {"fact": "x"}, user_id=new_id("u"), session_id=session_id)  # a TOOL# item
    kinds = {item["kind"]["S"] for item in partition_items(aws, table, session_id) if "kind" in item}
    assert {"message", "append", "tool_call"} <= kinds and payloads.list_session(TENANT, session_id)

    bus.publish_one(Event.create(SessionDeleted(session_id=session_id), tenant_id=TENANT))

    wait_until(
        lambda: (
            [i["sk"]["S"] for i in partition_items(aws, table, session_id)] == ["HEAD"]
            and not payloads.list_session(TENANT, session_id)
        ),
        timeout_s=30,
        what="the session's items and payloads deleted",
    )
    # What remains is exactly the session's tombstone: ids and when it was deleted, no content, no count.
    assert tombstone_of(aws, table, session_id) == {"kind": "deleted", "tenant_id": TENANT, "session_id": session_id}
    assert payloads.list_session(TENANT, session_id) == []


def tombstone_of(aws: Any, table: str, session_id: str) -> dict[str, str]:
    [item] = partition_items(aws, table, session_id)
    assert (item["sk"]["S"], set(item)) == ("HEAD", {"pk", "sk", "kind", "tenant_id", "session_id", "deleted_at"})
    return {name: item[name]["S"] for name in ("kind", "tenant_id", "session_id")}


def test_a_late_request_after_session_deleted_writes_nothing(
    bus: EventPublisher, answers: Any, aws: Any, table: str
) -> None:
    session_id = new_id("s")
    context(bus, answers, session_id, 0, [user("hello")])
    bus.publish_one(Event.create(SessionDeleted(session_id=session_id), tenant_id=TENANT))
    wait_until(
        lambda: [i["sk"]["S"] for i in partition_items(aws, table, session_id)] == ["HEAD"],
        timeout_s=30,
        what="the session deleted",
    )

    # The run was still going: its next step's append (and a redelivery of its first) arrive late.
    for step, append in ((1, [user("are you there?")]), (0, [user("hello")])):
        run_id = new_id("run")
        bus.publish_one(
            Event.create(
                MemoryContextRequested(session_id=session_id, step=step, append=append),
                tenant_id=TENANT,
                run_id=run_id,
            )
        )
        [answer] = answers(run_id)
        assert answer["detail-type"] == DetailType.MEMORY_CONTEXT_FAILED
        assert (answer["detail"]["data"]["code"], answer["detail"]["data"]["retryable"]) == (
            "Memory.SessionDeleted",
            False,
        )
    # A late run.failed is not recorded either. It has no answer to wait for: a run.failed of a live session,
    # published a second later on the same queue, is recorded once the first has been handled.
    live = new_id("s")
    context(bus, answers, live, 0, [user("hello")], include_context=False)
    failure = ErrorInfo(code="Llm.Timeout", message="slow")
    bus.publish_one(Event.create(RunFailed(session_id=session_id, error=failure), tenant_id=TENANT, run_id="r1"))
    time.sleep(1)
    bus.publish_one(Event.create(RunFailed(session_id=live, error=failure), tenant_id=TENANT, run_id="r2"))
    wait_until(
        lambda: any(i["sk"]["S"].startswith("RUNFAILED#") for i in partition_items(aws, table, live)),
        timeout_s=30,
        what="the live session's run failure recorded",
    )
    assert tombstone_of(aws, table, session_id) == {"kind": "deleted", "tenant_id": TENANT, "session_id": session_id}


def test_the_memory_cli_lists_deletes_and_exports(
    bus: EventPublisher,
    answers: Any,
    local_stack: LocalStack,
    aws: Any,
    table: str,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agentwire_infra.cli import main

    (tmp_path / "local.json").write_text(json.dumps(local_stack.describe()))
    user_id, session_id = new_id("user"), new_id("s")
    seed_fact(aws("dynamodb"), table, user_id, "Works night shifts.")
    context(bus, answers, session_id, 0, [user("hello there")], include_context=False)
    cli = ["--workdir", str(tmp_path), "memory"]

    assert main([*cli, "facts", "list", "--tenant", TENANT, "--user", user_id]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [fact["text"] for fact in listed["facts"]] == ["Works night shifts."]
    assert main([*cli, "facts", "delete", "--tenant", TENANT, "--user", user_id]) == 0
    assert "deleted 1 fact(s)" in capsys.readouterr().out
    assert main([*cli, "export", session_id, "--tenant", TENANT, "--output", str(tmp_path / "export.json")]) == 0
    exported = json.loads((tmp_path / "export.json").read_text())
    assert [m["content"][0]["text"] for m in exported["messages"]] == ["hello there"]


def test_a_capped_tool_results_full_output_is_recorded_and_exported_whole(
    bus: EventPublisher,
    answers: Any,
    local_stack: LocalStack,
    aws: Any,
    table: str,
    payloads: PayloadStore,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agentwire_infra.cli import main

    session_id, run_id = new_id("s"), new_id("run")
    whole = "row of a long query result\n" * 20_000
    capped = whole[:1_000] + "\n[output truncated: 540000 characters in all]"
    call = Message(role="assistant", content=[ToolUseBlock(id="toolu_big", name="query", input={"q": "all"})])
    result = Message(role="user", content=[ToolResultBlock(tool_use_id="toolu_big", content=capped)])
    context(bus, answers, session_id, 0, [user("the whole table, please")], include_context=False)
    context(bus, answers, session_id, 1, [call, result], include_context=False)
    # The tools service's claim check: the whole output in the session's payloads, the capped copy in the event.
    ref = payloads.put_json(
        {"tool_name": "query", "content": whole}, tenant_id=TENANT, session_id=session_id, kind="tool-result"
    )
    answer = ToolInvocationCompleted(
        session_id=session_id,
        step=1,
        tool_name="query",
        result=ToolResultBlock(tool_use_id="toolu_big", content=capped),
        result_ref=ref,
    )
    bus.publish_one(Event.create(answer, tenant_id=TENANT, run_id=run_id))
    wait_until(
        lambda: any(i["sk"]["S"].startswith("TOOLOUTPUT#") for i in partition_items(aws, table, session_id)),
        timeout_s=30,
        what="the tool output recorded by memory",
    )

    exported = admin.export(TENANT, session_id, table_name=table, dynamodb_client=aws("dynamodb"), payloads=payloads)
    [output] = exported["tool_outputs"]
    assert (output["tool_use_id"], output["seq"], output["run_id"], output["status"]) == (
        "toolu_big",
        3,
        run_id,
        "resolved",
    )
    assert output["content"] == whole and output["ref"] == ref.model_dump(mode="json")
    assert exported["messages"][2]["content"][0]["content"] == capped  # the transcript keeps what the model saw
    # The CLI reads the stack's payload bucket too.
    (tmp_path / "local.json").write_text(json.dumps(local_stack.describe()))
    assert main(["--workdir", str(tmp_path), "memory", "export", session_id, "--tenant", TENANT]) == 0
    assert json.loads(capsys.readouterr().out)["tool_outputs"][0]["content"] == whole

    # Deleting the session takes the record and the payload with it.
    bus.publish_one(Event.create(SessionDeleted(session_id=session_id), tenant_id=TENANT))
    wait_until(
        lambda: (
            [i["sk"]["S"] for i in partition_items(aws, table, session_id)] == ["HEAD"]
            and not payloads.list_session(TENANT, session_id)
        ),
        timeout_s=30,
        what="the session's items and payloads deleted",
    )
