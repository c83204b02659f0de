"""Failure paths of a run through the real services on the emulator, with the scripted model provider.

The script is consumed in order by every run of the module (the cursor is shared), so the tests run in
file order (one xdist group) and each takes exactly its own entries (`SCRIPT` lists them test by test).
A test whose runs asked the model more or less often than scripted shifts every later test's answers.

The stack runs with its own agents directory (the packaged agents plus `verbose`, whose system prompt
alone overflows its context, and `slowpoke`, which offers `slow_lookup`, a tool registered by a module
that outlives its 1 s timeout).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import agentwire_contracts
import pytest
from agentwire_infra.demo import APPROVED_BY_CLI, run_demo
from agentwire_infra.local.client import GatewayClient, wait_until
from agentwire_infra.local.recorder import EVENTS_DIR, read_run_events
from agentwire_infra.local.stack import LocalStack, StackSettings
from agentwire_llm.providers.scripted import script_error as error
from agentwire_llm.providers.scripted import script_message as message
from agentwire_llm.providers.scripted import script_text as text
from agentwire_llm.providers.scripted import script_tool_use as tool_use
from agentwire_memory import admin as memory_admin

pytestmark = pytest.mark.xdist_group("run_failure_paths")


SCRIPT = [
    # test_a_permanent_model_error_fails_the_run
    error("invalid_request_error", "messages: roles must alternate"),
    # test_a_retryable_model_error_is_retried_and_the_run_completes
    error("overloaded_error", "overloaded"),
    message(text("Back again.")),
    # test_a_run_with_a_tool_call_completes_with_its_totals
    message(
        text("Let me calculate."),
        {"type": "tool_use", "id": "toolu_fp1", "name": "calculator", "input": {"expression": "6 * 7"}},
        stop="tool_use",
    ),
    message(text("It is 42.")),
    # test_the_demo_waits_for_an_approval_given_from_the_cli: three turns, then the ops session
    message(text("Nice to meet you, Ada!")),
    message(
        text("Let me calculate."), tool_use("toolu_demo_calc", "calculator", expression="1234 * 5678"), stop="tool_use"
    ),
    message(text("1234 * 5678 = 7006652.")),
    message(text("Your name is Ada, and the last result was 7006652.")),
    message(
        text("I will notify the ops team."),
        tool_use("toolu_demo_notify", "send_notification", channel="ops", message="The nightly backup finished."),
        stop="tool_use",
    ),
    message(text("Done: the ops team was notified.")),
    # test_a_redelivered_request_has_no_second_side_effect (the duplicate model request takes no entry)
    message(
        text("Notifying."),
        tool_use("toolu_dup_notify", "send_notification", channel="ops", message="The deploy is done."),
        stop="tool_use",
    ),
    message(text("Notified.")),
    # test_a_tool_that_times_out_is_an_error_result_and_the_run_completes
    message(text("Looking it up."), tool_use("toolu_slow", "slow_lookup", query="anything"), stop="tool_use"),
    message(text("The lookup timed out, sorry.")),
    # test_a_memory_failure_fails_the_run_with_its_code: no model call
    # test_a_worker_that_crashes_mid_step_is_replaced_and_the_run_completes_with_one_side_effect
    message(
        text("Notifying."),
        tool_use("toolu_crash", "send_notification", channel="ops", message="Sent exactly once."),
        stop="tool_use",
    ),
    message(text("Notified once.")),
    # test_a_tool_that_outlives_the_heartbeat_interval_but_beats_completes
    message(text("Looking."), tool_use("toolu_long", "long_lookup", query="anything"), stop="tool_use"),
    message(text("Found it after a while.")),
    # test_a_tool_whose_worker_stops_beating_is_asked_again_at_the_heartbeat_and_answers_once
    message(text("Looking."), tool_use("toolu_stalled", "stalled_lookup", query="anything"), stop="tool_use"),
    message(text("Found it in the end.")),
    # test_a_turn_the_model_reasoned_in_comes_back_from_memory_as_the_llm_service_stored_it
    message(
        {"type": "thinking", "thinking": "Multiply.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"},
        text("Let me calculate."),
        tool_use("toolu_reasoned", "calculator", expression="12 * 12"),
        stop="tool_use",
    ),
    message(text("It is 144.")),
]

SLOW_TOOLS = """
import time
from pydantic import BaseModel
from agentwire_tools.registry import Tool


class LookupInput(BaseModel):
    query: str


def lookup(call: LookupInput) -> str:
    time.sleep(5)
    return "found it"


def long_lookup(call: LookupInput) -> str:
    time.sleep(14)
    return "found it"


TOOLS = [
    Tool(name="slow_lookup", description="A lookup that takes too long.", input_model=LookupInput, run=lookup,
         timeout_s=1.0),
    # Both outlive the run's tool heartbeat (12 s) but not their own timeout (30 s).
    Tool(name="long_lookup", description="A lookup that takes a while.", input_model=LookupInput,
         run=long_lookup, timeout_s=30.0),
    Tool(name="stalled_lookup", description="A lookup whose beats never arrive.", input_model=LookupInput,
         run=long_lookup, timeout_s=30.0),
]
"""

# Fault injection, loaded only into the tools worker (a registration module): the process dies the first
# time it is about to publish the answer to call `toolu_crash`, after the notification was sent and the
# idempotency record written, before the answer is on the bus and before the worker deleted the message.
# The same module also drops the heartbeats of `stalled_lookup`, as if its worker were stuck where it cannot
# beat (or could not reach the bus): the run must notice at its heartbeat interval.
FAULT_INJECTION = """
import os
from pathlib import Path
from agentwire_contracts.publish import EventPublisher

MARKER = Path(os.environ["CRASH_MARKER"])
_publish = EventPublisher.publish


def publish(self, events):
    for event in events:
        if event.detail_type == "tool.invocation.completed.v1" and event.data.result.tool_use_id == "toolu_crash":
            if not MARKER.exists():
                MARKER.write_text(str(os.getpid()))
                os._exit(137)  # as when a sandbox dies: nothing more is published, nothing is deleted
    events = [
        event for event in events
        if not (event.detail_type == "tool.invocation.heartbeat.v1" and event.data.tool_name == "stalled_lookup")
    ]
    return _publish(self, events) if events else None


EventPublisher.publish = publish
TOOLS = []
"""

EXTRA_AGENTS = {
    "verbose": {
        "name": "verbose", "version": "1", "model": "claude-sonnet-4-5", "tools": [],
        "system": "Be thorough. " * 200,
        "context": {"max_context_tokens": 256, "compaction_threshold_tokens": 256},
    },
    "slowpoke": {
        "name": "slowpoke", "version": "1", "model": "claude-sonnet-4-5",
        "tools": ["slow_lookup", "long_lookup", "stalled_lookup"],
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def scripted_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    workdir: Path = tmp_path_factory.mktemp("agentwire-scripted")
    script = workdir / "script.json"
    script.write_text(json.dumps(SCRIPT))
    agents = workdir / "agents"
    shutil.copytree(Path(agentwire_contracts.__file__).parent / "agent_defaults", agents)
    for name, definition in EXTRA_AGENTS.items():
        (agents / f"{name}.json").write_text(json.dumps(definition))
    modules = workdir / "modules"
    modules.mkdir()
    (modules / "slow_tools.py").write_text(SLOW_TOOLS)
    (modules / "fault_injection.py").write_text(FAULT_INJECTION)
    settings = StackSettings(
        workdir=workdir, llm_provider="scripted", llm_script=script, visibility_timeout_s=2, dev_tenant="acme",
        write_local_json=False,
        worker_env={
            "AGENTWIRE_AGENTS_DIR": str(agents), "TOOLS_REGISTRATION_MODULES": "slow_tools,fault_injection",
            # A tool call with no beat for 12 s fails (longer than a crashed worker's restart and redelivery
            # take here); the tools worker beats every 0.5 s.
            "AGENTWIRE_ORCHESTRATOR_TOOL_HEARTBEAT_S": "12", "TOOLS_HEARTBEAT_INTERVAL_S": "0.5",
            "PYTHONPATH": str(modules), "CRASH_MARKER": str(workdir / "crashed"),
        },
    )  # fmt: skip
    with LocalStack(settings) as stack:
        yield stack
        # The only worker that may die is the tools worker, once, where the crash test injects it.
        assert [(crash.service, crash.returncode) for crash in stack.crashes] in ([], [("tools", 137)]), stack.crashes


@pytest.fixture(scope="module")
def scripted(scripted_stack: LocalStack) -> Iterator[GatewayClient]:
    with GatewayClient(scripted_stack.gateway_url, scripted_stack.api_key) as client:
        yield client


def error_code(run: dict[str, Any]) -> str | None:
    error = run.get("error") or {}
    return error.get("code") if isinstance(error, dict) else None


def test_a_permanent_model_error_fails_the_run(scripted: GatewayClient, scripted_stack: LocalStack) -> None:
    session = scripted.create_session()
    run = scripted.ask(session, "hello", timeout_s=60)
    assert run["status"] == "failed", run
    assert error_code(run) == "Llm.BadRequest", run

    # The Catch path's run.failed.v1 is recorded by memory beside the session's transcript.
    def failed_runs() -> list[dict[str, Any]] | None:
        exported = memory_admin.export(
            "acme", session, table_name=scripted_stack.describe()["tables"]["memory/main"],
            dynamodb_client=scripted_stack.client("dynamodb"),
        )  # fmt: skip
        return exported["failed_runs"] or None

    [failure] = wait_for(failed_runs, "the failure recorded in memory")
    assert (failure["run_id"], failure["code"]) == (run["run_id"], "Llm.BadRequest"), failure


def test_a_retryable_model_error_is_retried_and_the_run_completes(
    scripted: GatewayClient, scripted_stack: LocalStack
) -> None:
    run = scripted.ask(scripted.create_session(), "hello again", timeout_s=60)
    assert run["status"] == "completed", run
    assert run["output"] == "Back again." and run["model_turns"] == 1, run
    # The first attempt was answered Llm.Overloaded (retryable); CallModel's Retry asked again, once.
    failed = wait_for(lambda: recorded(scripted_stack, run["run_id"], "llm.completion.failed.v1"), "the failure")
    assert [(f["detail"]["data"]["code"], f["detail"]["data"]["retryable"]) for f in failed] == [
        ("Llm.Overloaded", True)
    ]
    requests = recorded(scripted_stack, run["run_id"], "llm.completion.requested.v1")
    assert len(requests) == 2 and len({r["detail"]["data"]["step"] for r in requests}) == 1, requests


def test_a_run_with_a_tool_call_completes_with_its_totals(scripted: GatewayClient) -> None:
    session = scripted.create_session()
    run = scripted.ask(session, "what is 6 * 7?", timeout_s=60)
    assert run["status"] == "completed", run
    roles = [m["role"] for m in scripted.messages(session)]
    assert roles == ["user", "assistant", "user", "assistant"], roles


def test_the_demo_waits_for_an_approval_given_from_the_cli(scripted: GatewayClient, scripted_stack: LocalStack) -> None:
    lines: list[str] = []
    result = run_demo(scripted, out=lines.append, timeout_s=60, require_approval=True)
    printed = "\n".join(lines)
    assert result.ok, printed
    approval = result.approval
    assert approval["tool_name"] == "send_notification" and approval["status"] == "pending"
    assert approval["tool_input"] == {"channel": "ops", "message": "The nightly backup finished."}
    assert approval["args_hash"] in printed and approval["approval_id"] in printed
    run_id = result.approval_run["run_id"]
    decided = scripted.request("GET", f"/v1/runs/{run_id}/approvals").json()["approvals"]
    assert [(a["status"], a["decision_reason"]) for a in decided] == [("approved", APPROVED_BY_CLI)]
    assert result.approval_run["status"] == "completed"
    assert result.approval_run["usage"]["cost_usd"] > 0 and "cost: $" in printed
    assert notifications(scripted_stack, run_id) == 1


def notifications(stack: LocalStack, run_id: str) -> int:
    """The notifications the tools service recorded for the run (its outbox)."""
    table = stack.describe()["tables"]["tools/state"]
    items = stack.client("dynamodb").query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :run)",
        ExpressionAttributeValues={":pk": {"S": "acme#notifications"}, ":run": {"S": f"{run_id}#"}},
    )["Items"]
    return len(items)


def recorded(stack: LocalStack, run_id: str, detail_type: str) -> list[dict[str, Any]]:
    return [e for e in read_run_events(stack.workdir / EVENTS_DIR, run_id) if e["detail_type"] == detail_type]


def wait_for(probe: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    return wait_until(probe, timeout_s=timeout_s, interval_s=0.1, what=what)


def publish_again(stack: LocalStack, event: dict[str, Any]) -> None:
    """The very request event once more on the bus: what SQS redelivers when a worker crashed mid-step
    (after its side effect, before it deleted the message)."""
    answer = stack.client("events").put_events(
        Entries=[{
            "EventBusName": stack.describe()["bus_name"], "Source": event["source"],
            "DetailType": event["detail_type"], "Detail": json.dumps(event["detail"]),
        }]
    )  # fmt: skip
    assert answer["FailedEntryCount"] == 0, answer


def test_a_redelivered_request_has_no_second_side_effect(scripted: GatewayClient, scripted_stack: LocalStack) -> None:
    session = scripted.create_session(agent="ops", user_id="u-ops")
    run_id = str(scripted.send_message(session, "Tell the ops team the deploy is done.")["run_id"])
    approvals = f"/v1/runs/{run_id}/approvals"
    [pending] = wait_for(lambda: scripted.request("GET", approvals).json()["approvals"] or None, "an approval")

    # While the run waits for the human, the model request of its first turn arrives again.
    [model_request] = recorded(scripted_stack, run_id, "llm.completion.requested.v1")
    publish_again(scripted_stack, model_request)
    completions = wait_for(
        lambda: (
            (found := recorded(scripted_stack, run_id, "llm.completion.completed.v1")) and len(found) == 2 and found
        ),
        "the duplicate model request answered",
    )
    # Answered from the llm service's idempotency record: the same answer, no script entry consumed
    # (the later tests of this module would get the wrong entries otherwise).
    assert completions[0]["detail"]["data"] == completions[1]["detail"]["data"]

    scripted.request("POST", f"{approvals}/{pending['approval_id']}", json={"decision": "approve"})
    run = scripted.wait_for_run(run_id, timeout_s=60)
    assert run["status"] == "completed", run

    # The approved tool call arrives again after the run ended: answered from the tools service's
    # idempotency record (same result), acknowledged by the resume consumer, no second notification.
    [tool_request] = recorded(scripted_stack, run_id, "tool.invocation.requested.v1")
    publish_again(scripted_stack, tool_request)
    results = wait_for(
        lambda: (
            (found := recorded(scripted_stack, run_id, "tool.invocation.completed.v1")) and len(found) == 2 and found
        ),
        "the duplicate tool request answered",
    )
    assert results[0]["detail"]["data"]["result"] == results[1]["detail"]["data"]["result"]
    assert notifications(scripted_stack, run_id) == 1
    assert scripted.get_run(run_id)["status"] == "completed"
    assert len(recorded(scripted_stack, run_id, "run.completed.v1")) == 1


def test_a_tool_that_times_out_is_an_error_result_and_the_run_completes(scripted: GatewayClient) -> None:
    session = scripted.create_session(agent="slowpoke")
    started = time.monotonic()
    run = scripted.ask(session, "look something up", timeout_s=60)
    assert run["status"] == "completed", run
    assert run["output"] == "The lookup timed out, sorry."
    [result] = [
        block
        for message in scripted.messages(session)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert result["tool_use_id"] == "toolu_slow" and result["is_error"] is True, result
    assert "time" in str(result["content"]).lower(), result
    assert time.monotonic() - started < 30


def test_a_memory_failure_fails_the_run_with_its_code(scripted: GatewayClient) -> None:
    # The agent's system prompt alone is over its context budget: memory answers Memory.ContextTooLarge,
    # which is not retryable, so the run ends failed with that code (before any model call).
    run = scripted.ask(scripted.create_session(agent="verbose"), "hello", timeout_s=60)
    assert run["status"] == "failed", run
    assert error_code(run) == "Memory.ContextTooLarge", run


def test_a_worker_that_crashes_mid_step_is_replaced_and_the_run_completes_with_one_side_effect(
    scripted: GatewayClient, scripted_stack: LocalStack
) -> None:
    session = scripted.create_session(agent="ops", user_id="u-crash")
    run_id = str(scripted.send_message(session, "Tell the ops team, once.")["run_id"])
    approvals = f"/v1/runs/{run_id}/approvals"
    [pending] = wait_for(lambda: scripted.request("GET", approvals).json()["approvals"] or None, "an approval")
    scripted.request("POST", f"{approvals}/{pending['approval_id']}", json={"decision": "approve"})

    run = scripted.wait_for_run(run_id, timeout_s=90)
    assert run["status"] == "completed", run
    assert run["output"] == "Notified once."
    # The worker really died mid-step (the injected exit) and was replaced by a new process ...
    [crash] = scripted_stack.crashes
    assert (crash.service, crash.returncode, crash.restarted) == ("tools", 137, True)
    # ... whose redelivered message was answered from the idempotency record: one notification, one answer.
    assert notifications(scripted_stack, run_id) == 1
    # The model saw the call's real result (not a step that timed out while the worker was down).
    result = tool_result_of(scripted, session)
    assert (result["tool_use_id"], result["is_error"]) == ("toolu_crash", False), result
    # The recorder taps the bus asynchronously: read its file once the answer is in it. On a busy machine the
    # call's heartbeat (12 s here) can lapse before SQS redelivers the dead worker's message: then the state
    # machine asks once more (InvokeTool retries States.HeartbeatTimeout) and both deliveries are answered
    # from the one idempotency record — the same result, still one notification.
    answers = wait_for(
        lambda: recorded(scripted_stack, run_id, "tool.invocation.completed.v1"), "the tool's answer recorded"
    )
    assert {json.dumps(a["detail"]["data"]["result"], sort_keys=True) for a in answers} == {
        json.dumps(answers[0]["detail"]["data"]["result"], sort_keys=True)
    }, answers
    assert answers[0]["detail"]["data"]["result"]["is_error"] is False, answers
    requests = recorded(scripted_stack, run_id, "tool.invocation.requested.v1")
    assert 1 <= len(requests) <= 2, requests
    assert {r["detail"]["data"]["tool_call"]["id"] for r in requests} == {"toolu_crash"}, requests
    assert len(answers) <= len(requests), (answers, requests)  # one answer per time it was asked


def tool_result_of(client: GatewayClient, session: str) -> dict[str, Any]:
    [result] = [
        block for message in client.messages(session) for block in message["content"] if block["type"] == "tool_result"
    ]
    return result


def test_a_tool_that_outlives_the_heartbeat_interval_but_beats_completes(
    scripted: GatewayClient, scripted_stack: LocalStack
) -> None:
    session = scripted.create_session(agent="slowpoke")
    run = scripted.ask(session, "look it up, take your time", timeout_s=60)
    assert run["status"] == "completed", run
    assert run["output"] == "Found it after a while."
    result = tool_result_of(scripted, session)
    assert (result["tool_use_id"], result["is_error"]) == ("toolu_long", False), result
    assert "found it" in result["content"], result
    # 14 s of work against a 12 s heartbeat: only the beats (every 0.5 s) kept the step alive.
    wait_for(
        lambda: len(recorded(scripted_stack, run["run_id"], "tool.invocation.heartbeat.v1")) >= 20,
        "at least 20 beats recorded",
    )

    # A client following the run saw the call still running (the gateway projects each beat).
    def running() -> list[dict[str, Any]] | None:
        page = scripted.request("GET", f"/v1/runs/{run['run_id']}/events?limit=200").json()
        return [e for e in page["events"] if e["type"] == "tool.running"] or None

    live = wait_for(running, "tool.running live events")
    assert {e["data"]["tool_call_id"] for e in live} == {"toolu_long"}


def test_a_tool_whose_worker_stops_beating_is_asked_again_at_the_heartbeat_and_answers_once(
    scripted: GatewayClient, scripted_stack: LocalStack
) -> None:
    session = scripted.create_session(agent="slowpoke")
    run = scripted.ask(session, "look it up", timeout_s=60)
    assert run["status"] == "completed", run
    assert run["output"] == "Found it in the end."
    # No beat reached the run for 12 s (the step's own timeout is 300 s): the step timed out and InvokeTool
    # asked again. The second request waited for the worker, then was answered from the idempotency record
    # of the first: the tool ran once, and the model saw its result.
    requests = wait_for(
        lambda: (
            (found := recorded(scripted_stack, run["run_id"], "tool.invocation.requested.v1"))
            and len(found) == 2
            and found
        ),
        "the call asked twice",
    )
    assert {r["detail"]["data"]["tool_call"]["id"] for r in requests} == {"toolu_stalled"}
    assert requests[0]["detail"]["metadata"]["task_token"] != requests[1]["detail"]["metadata"]["task_token"]
    result = tool_result_of(scripted, session)
    assert (result["tool_use_id"], result["is_error"]) == ("toolu_stalled", False), result
    assert "found it" in result["content"], result


def test_a_turn_the_model_reasoned_in_comes_back_from_memory_as_the_llm_service_stored_it(
    scripted: GatewayClient, scripted_stack: LocalStack
) -> None:
    from agentwire_contracts.content import Message
    from agentwire_llm.model import turn_digest

    session = scripted.create_session()
    run = scripted.ask(session, "what is 12 * 12?", timeout_s=60)
    assert run["status"] == "completed" and run["output"] == "It is 144.", run
    # The llm service kept the turn's thinking under the digest of the neutral message it answered ...
    table = scripted_stack.describe()["tables"]["llm/state"]
    stored = scripted_stack.client("dynamodb").query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "turn#acme"}},
    )["Items"]
    digests = {item["sk"]["S"]: json.loads(item["native"]["S"]) for item in stored}
    # ... and the loop's next model request carries that turn (from memory, through the run) byte for byte,
    # so the llm service finds it and sends the thinking back.
    wait_for(lambda: recorded(scripted_stack, run["run_id"], "run.completed.v1"), "the run's events recorded")
    requests = recorded(scripted_stack, run["run_id"], "llm.completion.requested.v1")
    second = next(r for r in requests if r["detail"]["data"]["step"] == 1)
    [reasoned] = [m for m in second["detail"]["data"]["messages"] if m["role"] == "assistant"]
    native = digests[turn_digest(Message.model_validate(reasoned))]
    assert [block["type"] for block in native] == ["thinking", "text", "tool_use"]


@pytest.fixture(scope="module")
def no_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayClient]:
    """A stack whose llm worker never runs: nobody ever answers a model call; the step times out in 2 s."""
    workdir: Path = tmp_path_factory.mktemp("agentwire-no-model")
    settings = StackSettings(
        workdir=workdir, llm_provider="offline", dev_tenant="acme", write_local_json=False,
        services=("gateway", "orchestrator", "tools", "memory"),
        worker_env={"AGENTWIRE_ORCHESTRATOR_MODEL_TIMEOUT_S": "2"},
    )  # fmt: skip
    with LocalStack(settings) as stack, GatewayClient(stack.gateway_url, stack.api_key) as client:
        yield client


def test_a_worker_that_never_answers_fails_the_run_with_a_timeout(no_model: GatewayClient) -> None:
    run = no_model.ask(no_model.create_session(), "anyone there?", timeout_s=30)
    assert run["status"] == "failed", run
    assert error_code(run) == "States.Timeout", run
