"""The run state machine on the embedded emulator, driven by fake workers through the real resume handler.

Topology: a bus, a rule sending every `agentwire.orchestrator` event to a tap queue, and the state
machine from `asl.render(bus)`. Runs are started by the real starter (so its input is what a real
execution gets); a fake-worker loop reads the tap, answers each request the way the llm, tools and
memory services would, and hands every answer to the real `resume_handler` as an SQS batch, which
calls SendTaskSuccess/SendTaskFailure on the emulator. Every event on the tap must validate against
its contract.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "agentwire")

from agentwire_contracts.agents import AgentCatalog, AgentDefinition, AgentLimits  # noqa: E402
from agentwire_contracts.content import (  # noqa: E402
    Message,
    TextBlock,
    ToolCall,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Usage,
)
from agentwire_contracts.envelope import Event, EventData  # noqa: E402
from agentwire_contracts.events.llm import (  # noqa: E402
    LlmCompletionCompleted,
    LlmCompletionFailed,
    LlmCompletionRequested,
)
from agentwire_contracts.events.memory import (  # noqa: E402
    CompactionRequest,
    MemoryContextReady,
    MemoryContextRequested,
)
from agentwire_contracts.events.run import RunApprovalDecided, RunCancelRequested, RunRequested  # noqa: E402
from agentwire_contracts.events.tool import (  # noqa: E402
    ToolCatalogReady,
    ToolCatalogRequested,
    ToolInvocationCompleted,
    ToolInvocationFailed,
    ToolInvocationRequested,
)
from agentwire_contracts.parsing import parse_eventbridge  # noqa: E402
from agentwire_contracts.publish import EventPublisher  # noqa: E402
from agentwire_contracts.tokens import estimate_tool_specs_tokens  # noqa: E402
from agentwire_infra.local.emulator import Emulator, start_emulator  # noqa: E402
from agentwire_llm import errors as llm_errors  # noqa: E402
from agentwire_orchestrator import asl  # noqa: E402
from agentwire_orchestrator.adapters.stepfunctions import Boto3StepFunctions  # noqa: E402
from agentwire_orchestrator.agents import builtin_catalog  # noqa: E402
from agentwire_orchestrator.dependencies import Dependencies, set_dependencies  # noqa: E402
from agentwire_orchestrator.handler import resume_handler, watchdog_handler  # noqa: E402
from agentwire_orchestrator.manifest import MANIFEST as ORCHESTRATOR  # noqa: E402
from agentwire_orchestrator.resume import DEFAULT_MAX_OUTPUT_BYTES, ResumeOutcome, resume  # noqa: E402
from agentwire_orchestrator.run_input import (
    StepTimeouts,  # noqa: E402
    build_execution_input,  # noqa: E402
)
from agentwire_orchestrator.starter import CancelOutcome, Starter, StartOutcome  # noqa: E402

TENANT = "t-it"
SESSION = "s-it"
ROLE_ARN = "arn:aws:iam::123456789012:role/agentwire-run"
RUN_TIMEOUT_S = 60

ONE_TURN = AgentDefinition(
    name="one-turn", model="claude-sonnet-4-5", system="Be brief.", tools=("calculator",), max_tokens=256,
    limits=AgentLimits(max_model_turns=1),
)  # fmt: skip

FEW_TOKENS = AgentDefinition(
    name="few-tokens", model="m", tools=("calculator",), limits=AgentLimits(max_total_tokens=15)
)
CHEAP = AgentDefinition(name="cheap", model="m", tools=("calculator",), limits=AgentLimits(max_cost_usd=0.0001))
ONE_CALL = AgentDefinition(
    name="one-call", model="m", tools=("calculator", "current_time"), limits=AgentLimits(max_tool_calls=1)
)
HASTY = AgentDefinition(name="hasty", model="m", tools=("calculator",), limits=AgentLimits(max_wall_time_s=1))
#: send_email needs approval by its declaration (the fake catalog says so); calculator by the agent's policy.
CAREFUL = AgentDefinition(
    name="careful", model="m", tools=("calculator", "current_time", "send_email"),
    approval={"require_for": ["calculator"], "timeout_s": 600},
)  # fmt: skip
IMPATIENT = AgentDefinition(name="impatient", model="m", tools=("send_email",), approval={"timeout_s": 1})
TRUSTING = AgentDefinition(name="trusting", model="m", tools=("send_email",), approval={"waive_for": ["send_email"]})
#: Two versions of one agent: a session pins version 1 while version 2 is the latest.
PINNED_V1 = AgentDefinition(name="pinned", version="1", model="model-v1", tools=("calculator",))
PINNED_V2 = AgentDefinition(name="pinned", version="2", model="model-v2", tools=("calculator", "current_time"))
TEST_AGENTS = (ONE_TURN, FEW_TOKENS, CHEAP, ONE_CALL, HASTY, CAREFUL, IMPATIENT, TRUSTING, PINNED_V1, PINNED_V2)

#: Every test of this module runs on one worker process (`make test` uses `--dist loadgroup`), so the
#: coverage test at the end sees the executions of the others; it runs any that did not run here itself.
pytestmark = pytest.mark.xdist_group("asl")


def load_agent(name: str) -> AgentDefinition:
    return builtin_catalog().get(name)


# -- the topology --------------------------------------------------------------------------------------


@dataclass
class Stack:
    emulator: Emulator
    bus: str
    tap_url: str
    machine_arn: str
    sqs: Any
    sfn: Any
    events: Any
    starter: Starter
    dependencies: Dependencies
    #: The watchdog's queue: Step Functions' status changes from the default bus, by the manifest's rule.
    watch_url: str = ""
    #: Status changes read from `watch_url`, by execution name, not yet handled.
    status_changes: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    emulator = start_emulator()
    try:
        events, sqs, sfn = emulator.client("events"), emulator.client("sqs"), emulator.client("stepfunctions")
        suffix = uuid.uuid4().hex[:8]
        bus = f"agentwire-it-{suffix}"
        events.create_event_bus(Name=bus)
        tap_url = sqs.create_queue(QueueName=f"tap-{suffix}")["QueueUrl"]
        tap_arn = sqs.get_queue_attributes(QueueUrl=tap_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="tap", EventBusName=bus, EventPattern=json.dumps({"source": ["agentwire.orchestrator"]}))
        events.put_targets(Rule="tap", EventBusName=bus, Targets=[{"Id": "tap", "Arn": tap_arn}])
        machine_arn = sfn.create_state_machine(
            name=f"agentwire-run-{suffix}", definition=asl.render(bus), roleArn=ROLE_ARN, type="STANDARD"
        )["stateMachineArn"]
        watchdog = ORCHESTRATOR.consumer("watchdog")
        watch_url = sqs.create_queue(QueueName=f"watch-{suffix}")["QueueUrl"]
        watch_arn = sqs.get_queue_attributes(QueueUrl=watch_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        [pattern] = ORCHESTRATOR.event_patterns(watchdog)
        events.put_rule(Name=f"watch-{suffix}", EventBusName=watchdog.event_bus, EventPattern=json.dumps(pattern))
        events.put_targets(
            Rule=f"watch-{suffix}", EventBusName=watchdog.event_bus, Targets=[{"Id": "watch", "Arn": watch_arn}]
        )
        dependencies = Dependencies(
            stepfunctions=Boto3StepFunctions(sfn, machine_arn),
            publisher=EventPublisher(client=events, bus_name=bus),
            agents=AgentCatalog([load_agent("assistant"), *TEST_AGENTS]),
            max_task_output_bytes=DEFAULT_MAX_OUTPUT_BYTES,
            state_machine_arn=machine_arn,
        )
        set_dependencies(dependencies)
        yield Stack(
            emulator=emulator,
            bus=bus,
            tap_url=tap_url,
            machine_arn=machine_arn,
            sqs=sqs,
            sfn=sfn,
            events=events,
            starter=dependencies.starter(),
            dependencies=dependencies,
            watch_url=watch_url,
        )
    finally:
        set_dependencies(None)
        emulator.stop()


# -- fake workers ----------------------------------------------------------------------------------------

#: What the fake model answers, in order, per run: a completion or a failure.
ModelAnswer = LlmCompletionCompleted | LlmCompletionFailed


class FakeLambdaContext:
    function_name = "agentwire-orchestrator-resume"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:agentwire-orchestrator-resume"
    memory_limit_in_mb = 512
    aws_request_id = "req"
    log_group_name = "/aws/lambda/agentwire-orchestrator-resume"
    log_stream_name = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class Workers:
    """Plays llm, tools and memory: answers each request on the tap through the real resume handler."""

    stack: Stack
    model: dict[str, list[ModelAnswer]] = field(default_factory=dict)
    #: run_id → every event seen on the tap, parsed (so validated against its contract).
    seen: dict[str, list[Event[Any]]] = field(default_factory=lambda: defaultdict(list))
    transcripts: dict[str, list[Message]] = field(default_factory=lambda: defaultdict(list))
    #: tool name → what a call of it answers (default: a result).
    tool_failures: dict[str, str] = field(default_factory=dict)
    #: Requests to leave unanswered (detail-types), e.g. to cancel a run while it waits.
    hold: set[str] = field(default_factory=set)
    held: list[Event[Any]] = field(default_factory=list)
    model_answers: dict[tuple[str, int, str], LlmCompletionCompleted] = field(default_factory=dict)
    #: Tools the fake catalog declares as needing approval.
    declared_approval: set[str] = field(default_factory=set)
    #: run_id → every tool invocation request answered (what would have run).
    invocations: dict[str, list[ToolInvocationRequested]] = field(default_factory=lambda: defaultdict(list))
    #: run_id → a compaction memory asks for on the run's first context (once).
    compaction: dict[str, CompactionRequest] = field(default_factory=dict)
    #: Tool names whose calls stay unanswered (the worker never answers).
    silent_tools: set[str] = field(default_factory=set)
    #: Runs whose catalog comes from a tools service older than tool.catalog.ready 1.1 (no tools_tokens).
    catalog_1_0: set[str] = field(default_factory=set)
    #: Detail-types whose first request of each run is lost (its worker crashed before answering).
    lose_first: set[str] = field(default_factory=set)
    lost: list[Event[Any]] = field(default_factory=list)

    def answer_for(self, request: Event[Any]) -> EventData:
        data, run_id = request.data, request.metadata.run_id
        if isinstance(data, ToolCatalogRequested):
            specs = [
                ToolSpec(name=n, description=f"the {n} tool", input_schema={"type": "object"}) for n in data.tool_names
            ]
            declared = [n for n in data.tool_names if n in self.declared_approval]
            return ToolCatalogReady(
                session_id=data.session_id, tools=specs, approval_required=declared,
                tools_tokens=estimate_tool_specs_tokens(specs),
            )  # fmt: skip
        if isinstance(data, MemoryContextRequested):
            transcript = self.transcripts[run_id or ""]
            transcript.extend(data.append)
            messages = list(transcript) if data.include_context else []
            compaction = self.compaction.pop(run_id or "", None) if data.phase == "turn" else None
            system = data.system + (f" Summary: {data.summary.text}" if data.summary else "")
            return MemoryContextReady(
                session_id=data.session_id, step=data.step, messages=messages, appended=len(data.append),
                system=system, compaction=compaction,
            )  # fmt: skip
        if isinstance(data, LlmCompletionRequested):
            # Like the llm service: idempotent per (run_id, step), so a step that was answered is
            # replayed; a failure is not kept, so the next request of that step gets the next answer.
            key = (run_id or "", data.step, data.purpose)
            if data.purpose == "compaction":
                summary = said("They talked about arithmetic.", usage=Usage(input_tokens=50, output_tokens=9), cost=70)
                return summary.model_copy(update={"session_id": data.session_id, "step": data.step})
            if key in self.model_answers:
                return self.model_answers[key]
            script = self.model[run_id or ""]
            assert script, (
                f"the model was asked more often than scripted: {[e.detail_type for e in self.seen[run_id or '']]}"
            )
            answer = script.pop(0)
            if isinstance(answer, LlmCompletionCompleted):
                answer = answer.model_copy(update={"session_id": data.session_id, "step": data.step})
                self.model_answers[key] = answer
            return answer
        if isinstance(data, ToolInvocationRequested):
            call = data.tool_call
            self.invocations[run_id or ""].append(data)
            if call.name in self.tool_failures:
                return ToolInvocationFailed(code=self.tool_failures[call.name], message="cannot run it")
            result = ToolResultBlock(tool_use_id=call.id, content=f"{call.name}({json.dumps(call.input)}) = 42")
            return ToolInvocationCompleted(
                session_id=data.session_id, step=data.step, tool_name=call.name, result=result
            )
        raise AssertionError(f"unexpected request {request.detail_type}")

    def answer_body(self, request: Event[Any], data: EventData) -> str:
        """The answer to `request` as EventBridge delivers it to the resume queue."""
        answer = request.answer(data)
        detail = answer.detail()
        if isinstance(data, ToolCatalogReady) and request.metadata.run_id in self.catalog_1_0:
            del detail["data"]["tools_tokens"]
            detail["metadata"]["schema_version"] = "1.0"
        return json.dumps({"detail-type": answer.detail_type, "source": answer.source, "detail": detail})

    def deliver(self, request: Event[Any], data: EventData) -> None:
        """The answer, through the real resume handler."""
        body = self.answer_body(request, data)
        record = {"messageId": str(uuid.uuid4()), "receiptHandle": "rh", "body": body, "attributes": {},
                  "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn",
                  "awsRegion": "us-east-1"}  # fmt: skip
        response = resume_handler({"Records": [record]}, FakeLambdaContext())
        assert response["batchItemFailures"] == [], f"resume failed for the answer to {request.detail_type}"

    def pump_once(self, wait_s: int = 1) -> int:
        sqs = self.stack.sqs
        messages = sqs.receive_message(QueueUrl=self.stack.tap_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s).get(
            "Messages", []
        )
        for message in messages:
            event = parse_eventbridge(message["Body"])  # every event on the tap honours its contract
            self.seen[event.metadata.run_id or ""].append(event)
            if event.metadata.task_token:
                silent = (
                    isinstance(event.data, ToolInvocationRequested) and event.data.tool_call.name in self.silent_tools
                )
                first = event.detail_type in self.lose_first and not any(
                    lost.detail_type == event.detail_type and lost.metadata.run_id == event.metadata.run_id
                    for lost in self.lost
                )
                if first:
                    self.lost.append(event)
                elif event.detail_type in self.hold or silent:
                    self.held.append(event)
                else:
                    self.deliver(event, self.answer_for(event))
            sqs.delete_message(QueueUrl=self.stack.tap_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def pump_until(self, done: Callable[[], bool], timeout_s: float = RUN_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, "timed out driving the run"
            self.pump_once()
        while self.pump_once(wait_s=0):  # whatever the run published on its way out
            pass

    def run(self, run_id: str, timeout_s: float = RUN_TIMEOUT_S) -> str:
        """Drive until the execution ends; its final status."""
        self.pump_until(lambda: status(self.stack, run_id) != "RUNNING", timeout_s)
        return status(self.stack, run_id)

    def published(self, run_id: str, detail_type: str) -> list[Event[Any]]:
        return [event for event in self.seen[run_id] if event.detail_type == detail_type]


@pytest.fixture
def workers(stack: Stack) -> Workers:
    return Workers(stack)


#: The run tests of this module that ran in this process (on this module's own emulator).
RAN_HERE: set[str] = set()


@pytest.fixture(autouse=True)
def _record_run_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    RAN_HERE.add(request.node.originalname)


def execution_arn(stack: Stack, run_id: str) -> str:
    return stack.dependencies.stepfunctions.execution_arn(run_id)  # type: ignore[attr-defined,no-any-return]


def status(stack: Stack, run_id: str) -> str:
    return str(stack.sfn.describe_execution(executionArn=execution_arn(stack, run_id))["status"])


def new_run_id() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


def run_requested(
    run_id: str,
    agent: str = "assistant",
    text: str = "What is 6 * 7, and what time is it?",
    agent_version: str | None = None,
) -> Event[RunRequested]:
    message = Message(role="user", content=[TextBlock(text=text)])
    return Event.create(
        RunRequested(session_id=SESSION, input=message, agent=agent, agent_version=agent_version),
        tenant_id=TENANT,
        run_id=run_id,
        trace_header="Root=1-5759e988-bd862e3fe1be46a994272793",
    )


def said(text: str, *, usage: Usage | None = None, cost: int = 0) -> LlmCompletionCompleted:
    return LlmCompletionCompleted(
        session_id=SESSION, step=0, message=Message(role="assistant", content=[TextBlock(text=text)]), text=text,
        stop_reason="end_turn", usage=usage or Usage(input_tokens=7, output_tokens=3), cost_microusd=cost,
    )  # fmt: skip


def wants_tools(*calls: ToolCall, usage: Usage | None = None, cost: int = 0) -> LlmCompletionCompleted:
    content: list[Any] = [TextBlock(text="Let me check.")]
    content += [ToolUseBlock(id=call.id, name=call.name, input=call.input) for call in calls]
    return LlmCompletionCompleted(
        session_id=SESSION, step=0, message=Message(role="assistant", content=content), text="Let me check.",
        tool_calls=list(calls), stop_reason="tool_use", usage=usage or Usage(input_tokens=10, output_tokens=5),
        cost_microusd=cost,
    )  # fmt: skip


def start(stack: Stack, event: Event[RunRequested]) -> None:
    assert stack.starter.start(event).outcome is StartOutcome.STARTED


TWO_CALLS = (
    ToolCall.of("toolu_1", "calculator", {"expression": "6 * 7"}),
    ToolCall.of("toolu_2", "current_time", {}),
)


# -- the structure -------------------------------------------------------------------------------------


def test_every_waiting_state_has_a_timeout_and_a_catch() -> None:
    waiting = {
        name: state for name, state in asl.states().items() if state.get("Resource", "").endswith(".waitForTaskToken")
    }
    assert set(waiting) == {
        "DescribeTools", "LoadContext", "Compact", "StoreSummary", "CallModel", "RequestApproval", "InvokeTool",
        "SaveAnswer",
    }  # fmt: skip
    for name, state in waiting.items():
        assert state.get("TimeoutSeconds", 0) > 0 or state.get("TimeoutSecondsPath"), f"{name} can wait forever"
        assert any("States.ALL" in c["ErrorEquals"] for c in state.get("Catch", [])), f"{name} has no catch-all"


# -- runs ------------------------------------------------------------------------------------------------


def test_a_run_with_tools_completes_with_summed_usage(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [
        wants_tools(*TWO_CALLS, usage=Usage(input_tokens=10, output_tokens=5, cache_read_input_tokens=2)),
        said("It is 42.", usage=Usage(input_tokens=30, output_tokens=8, cache_creation_input_tokens=4)),
    ]
    start(stack, run_requested(run_id))

    assert workers.run(run_id) == "SUCCEEDED"

    [completed] = workers.published(run_id, "run.completed.v1")
    assert completed.data.output_text == "It is 42."
    assert completed.data.stop_reason == "end_turn"
    assert completed.data.model_turns == 2
    assert completed.data.usage == Usage(
        input_tokens=40, output_tokens=13, cache_creation_input_tokens=4, cache_read_input_tokens=2
    )
    assert completed.metadata.tenant_id == TENANT and completed.metadata.run_id == run_id
    # The map ran both tools; their results went back to the model as one user message.
    invocations = workers.published(run_id, "tool.invocation.requested.v1")
    assert sorted(e.data.tool_call.id for e in invocations) == ["toolu_1", "toolu_2"]
    transcript = workers.transcripts[run_id]
    assert [m.role for m in transcript] == ["user", "assistant", "user", "assistant"]
    assert sorted(b.tool_use_id for b in transcript[2].content) == ["toolu_1", "toolu_2"]  # type: ignore[union-attr]
    kinds = [e.detail_type for e in workers.seen[run_id]]
    assert kinds[0] == "run.started.v1" and kinds[-1] == "run.completed.v1"
    assert workers.published(run_id, "run.failed.v1") == []


def test_the_turn_limit_fails_the_run(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [wants_tools(TWO_CALLS[0])]
    start(stack, run_requested(run_id, agent="one-turn"))

    assert workers.run(run_id) == "FAILED"

    [failed] = workers.published(run_id, "run.failed.v1")
    assert failed.data.error.code == "Run.TurnLimitExceeded"
    assert failed.data.model_turns == 1
    assert failed.data.usage.input_tokens == 10
    assert workers.published(run_id, "tool.invocation.requested.v1") == []


def test_a_model_failure_fails_the_run_with_its_code(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [LlmCompletionFailed(code="Llm.BadRequest", message="messages: too many images")]
    start(stack, run_requested(run_id))

    assert workers.run(run_id) == "FAILED"

    [failed] = workers.published(run_id, "run.failed.v1")
    assert failed.data.error.code == "Llm.BadRequest"
    # On AWS the message is the answer's. moto 5.2.5's SendTaskFailure drops `cause`
    # (moto/stepfunctions/responses.py passes only `error`), so there the state machine's default applies.
    assert failed.data.error.message in ("messages: too many images", "the run failed with Llm.BadRequest")
    assert failed.data.model_turns == 0


def test_a_rate_limited_model_call_without_a_wait_waits_briefly_and_the_run_completes(
    stack: Stack, workers: Workers
) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [
        # A message without `; retry_after_s=N` (not the llm service's): AssumeRateLimitWait, 2-6 s.
        LlmCompletionFailed(code="Llm.RateLimited", message="429", retryable=True, retry_after_s=1),
        said("Done."),
    ]
    start(stack, run_requested(run_id))

    assert workers.run(run_id) == "SUCCEEDED"

    assert entered_states(stack, run_id).count("AssumeRateLimitWait") == 1
    assert len(workers.published(run_id, "llm.completion.requested.v1")) == 2
    [completed] = workers.published(run_id, "run.completed.v1")
    assert completed.data.model_turns == 1


def rate_limited(retry_after_s: float) -> LlmCompletionFailed:
    """A rate-limited answer as the llm service writes it (its message carries the wait the run reads)."""
    error = llm_errors.rate_limited("tokens limit of m reached for this tenant", retry_after_s=retry_after_s)
    return LlmCompletionFailed(
        code=error.code, message=error.message, retryable=error.retryable, retry_after_s=error.retry_after_s
    )


def entered_states(stack: Stack, run_id: str) -> list[str]:
    return [
        event["stateEnteredEventDetails"]["name"]
        for event in history(stack, execution_arn(stack, run_id))
        if event["type"].endswith("StateEntered")
    ]


def waits_before_model_calls(stack: Stack, run_id: str) -> list[float]:
    """Seconds from each failed model call (its TaskFailed event) to the next CallModel's entry."""
    gaps, failed_at, in_call_model = [], None, False
    for event in history(stack, execution_arn(stack, run_id)):
        if event["type"] == "TaskStateEntered" and event["stateEnteredEventDetails"]["name"] == "CallModel":
            in_call_model = True
            if failed_at is not None:
                gaps.append((event["timestamp"] - failed_at).total_seconds())
                failed_at = None
        elif event["type"].endswith("StateEntered"):
            in_call_model = False
        elif event["type"] == "TaskFailed" and in_call_model:
            failed_at = event["timestamp"]
    return gaps


def test_a_rate_limited_model_call_waits_as_long_as_told_then_the_run_completes(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    # Rate limited on both turns: each step's waits are counted on their own (FirstRateLimitWait twice).
    workers.model[run_id] = [rate_limited(3), wants_tools(TWO_CALLS[0]), rate_limited(2), said("42.")]
    start(stack, run_requested(run_id))

    assert workers.run(run_id) == "SUCCEEDED"

    states = entered_states(stack, run_id)
    assert (states.count("FirstRateLimitWait"), states.count("ReadRateLimitWait")) == (2, 2)
    assert states.count("WaitForRateLimit") == 2 and "NextRateLimitWait" not in states
    first, second = waits_before_model_calls(stack, run_id)
    assert first >= 3 and second >= 2, (first, second)
    assert len(workers.published(run_id, "llm.completion.requested.v1")) == 4
    [completed] = workers.published(run_id, "run.completed.v1")
    assert completed.data.model_turns == 2


def test_a_model_call_still_rate_limited_after_five_waits_fails_the_run(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    # A seventh model request would find the script empty (the fake worker fails the test).
    workers.model[run_id] = [rate_limited(1) for _ in range(6)]
    start(stack, run_requested(run_id))

    assert workers.run(run_id) == "FAILED"

    failed = only_failure(workers, run_id)
    assert failed.error.code == "Llm.RateLimited" and failed.error.message.endswith("; retry_after_s=1")
    assert len(workers.published(run_id, "llm.completion.requested.v1")) == 6
    states = entered_states(stack, run_id)
    assert (states.count("NextRateLimitWait"), states.count("WaitForRateLimit")) == (5, 5)
    assert all(gap >= 1 for gap in waits_before_model_calls(stack, run_id))


def test_a_rate_limited_model_call_past_the_deadline_fails_without_waiting(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [rate_limited(1), said("Too late.")]
    event = run_requested(run_id, agent="hasty")
    event.metadata.occurred_at = event.metadata.occurred_at - timedelta(seconds=5)  # requested 5 s ago; 1 s allowed
    start(stack, event)

    assert workers.run(run_id) == "FAILED"

    assert only_failure(workers, run_id).error.code == "Llm.RateLimited"
    assert len(workers.published(run_id, "llm.completion.requested.v1")) == 1
    assert "WaitForRateLimit" not in entered_states(stack, run_id)


def test_a_rate_limit_wait_longer_than_ten_minutes_fails_the_run_at_once(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [rate_limited(601), said("Too late.")]
    start(stack, run_requested(run_id))

    assert workers.run(run_id) == "FAILED"

    assert only_failure(workers, run_id).error.code == "Llm.RateLimited"
    assert len(workers.published(run_id, "llm.completion.requested.v1")) == 1
    states = entered_states(stack, run_id)
    assert "CheckRateLimitWaitLength" in states and "WaitForRateLimit" not in states


def test_the_llm_services_wait_marker_is_what_the_state_machine_matches_and_reads() -> None:
    [read_rule] = [r for r in asl.states()["CheckRateLimitWait"]["Choices"] if r["Next"] == "ReadRateLimitWait"]
    [pattern] = [c["StringMatches"] for c in read_rule["And"] if "StringMatches" in c]
    message = llm_errors.with_wait("x" * 5000, 2.2)
    assert len(message) <= llm_errors.MAX_MESSAGE_CHARS
    assert fnmatch.fnmatchcase(message, pattern) and message.rsplit("=", 1)[1] == "3"


def test_a_tool_that_cannot_run_is_an_error_result_the_model_sees(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.tool_failures["current_time"] = "Tools.UnknownTool"
    workers.model[run_id] = [wants_tools(*TWO_CALLS), said("I can calculate but not tell the time.")]
    start(stack, run_requested(run_id))

    assert workers.run(run_id) == "SUCCEEDED"

    results = {b.tool_use_id: b for b in workers.transcripts[run_id][2].content}  # type: ignore[union-attr]
    assert results["toolu_1"].is_error is False  # type: ignore[union-attr]
    assert results["toolu_2"].is_error is True  # type: ignore[union-attr]
    assert "Tools.UnknownTool" in results["toolu_2"].content  # type: ignore[union-attr]


def test_a_duplicate_start_runs_one_execution(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [said("Hello.")]
    event = run_requested(run_id)
    start(stack, event)
    stack.starter.start(event)  # redelivered: same name, same input
    duplicate = run_requested(run_id)  # a second request with the same run_id: different input
    assert stack.starter.start(duplicate).outcome is StartOutcome.ALREADY_EXISTS

    assert workers.run(run_id) == "SUCCEEDED"

    assert stack.starter.start(event).outcome is StartOutcome.ALREADY_EXISTS  # after the end, too
    executions = stack.sfn.list_executions(stateMachineArn=stack.machine_arn)["executions"]
    assert [e["name"] for e in executions].count(run_id) == 1
    assert len(workers.published(run_id, "run.started.v1")) == 1
    assert len(workers.published(run_id, "run.completed.v1")) == 1


def test_the_starters_input_is_what_the_execution_runs_on(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [said("Hi.")]
    event = run_requested(run_id)
    start(stack, event)

    described = stack.sfn.describe_execution(executionArn=execution_arn(stack, run_id))
    assert json.loads(described["input"]) == build_execution_input(event, load_agent("assistant"))
    assert workers.run(run_id) == "SUCCEEDED"

    [started] = workers.published(run_id, "run.started.v1")
    assert started.data.agent == "assistant"
    assert started.data.execution_id == execution_arn(stack, run_id)
    assert started.metadata.causation_id == event.metadata.event_id
    assert started.metadata.trace_header == event.metadata.trace_header
    [catalog] = workers.published(run_id, "tool.catalog.requested.v1")
    assert catalog.data.tool_names == ["calculator", "current_time", "remember", "forget", "read_state", "write_state"]
    [call] = workers.published(run_id, "llm.completion.requested.v1")
    assert call.data.model == "claude-sonnet-5-5" and call.data.max_tokens == 4096  # assistant@3, the latest
    assert call.data.temperature is None
    assert [t.name for t in call.data.tools] == [
        "calculator",
        "current_time",
        "remember",
        "forget",
        "read_state",
        "write_state",
    ]


def test_a_run_honours_the_agent_version_its_session_pinned(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [wants_tools(ToolCall.of("toolu_p", "calculator", {"expression": "1+1"})), said("2.")]
    start(stack, run_requested(run_id, agent="pinned", agent_version="1"))

    assert workers.run(run_id) == "SUCCEEDED"
    [started] = workers.published(run_id, "run.started.v1")
    assert started.data.agent == "pinned"
    assert [c.data.model for c in workers.published(run_id, "llm.completion.requested.v1")] == ["model-v1"] * 2
    [catalog] = workers.published(run_id, "tool.catalog.requested.v1")
    assert catalog.data.tool_names == ["calculator"]  # version 2 would offer current_time too
    # The tools service judges the call as the pinned version, and knows who asked.
    [invocation] = workers.invocations[run_id]
    assert invocation.agent == "pinned@1"
    # Without a pin, the latest version.
    latest = new_run_id()
    workers.model[latest] = [said("Hi.")]
    start(stack, run_requested(latest, agent="pinned"))
    assert workers.run(latest) == "SUCCEEDED"
    [call] = workers.published(latest, "llm.completion.requested.v1")
    assert call.data.model == "model-v2"


def test_an_unknown_agent_fails_without_an_execution(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    assert stack.starter.start(run_requested(run_id, agent="nobody")).outcome is StartOutcome.REJECTED
    workers.pump_until(lambda: bool(workers.published(run_id, "run.failed.v1")), timeout_s=10)
    assert workers.published(run_id, "run.failed.v1")[0].data.error.code == "Run.UnknownAgent"
    executions = stack.sfn.list_executions(stateMachineArn=stack.machine_arn)["executions"]
    assert run_id not in [e["name"] for e in executions]


# -- cancellation ----------------------------------------------------------------------------------------


def cancel(run_id: str) -> Event[RunCancelRequested]:
    return Event.create(RunCancelRequested(session_id=SESSION, reason="stop"), tenant_id=TENANT, run_id=run_id)


def test_cancelling_a_waiting_run_stops_it_and_its_late_answer_is_acknowledged(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.hold.add("llm.completion.requested.v1")
    start(stack, run_requested(run_id))
    workers.pump_until(lambda: bool(workers.held))
    [waiting] = workers.held

    event = cancel(run_id)
    assert stack.starter.cancel(event) is CancelOutcome.STOPPED
    # On AWS the execution is ABORTED at once. moto 5.2.5 marks the stop but reports RUNNING until the
    # waiting task wakes up (its answer or its timeout), so the late answer arrives first here.
    workers.deliver(waiting, said("too late"))
    deadline = time.monotonic() + 10
    while status(stack, run_id) == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status(stack, run_id) == "ABORTED"

    # An answer for a stopped run: Step Functions says nobody waits; resume acknowledges it.
    late = resume(workers.answer_body(waiting, said("even later")), stack.dependencies.stepfunctions)
    assert late.outcome is ResumeOutcome.TASK_GONE

    assert stack.starter.cancel(event) is CancelOutcome.ALREADY_CANCELLED  # a redelivered cancel
    workers.pump_until(lambda: len(workers.published(run_id, "run.cancelled.v1")) == 2, timeout_s=10)
    assert {e.data.stage for e in workers.published(run_id, "run.cancelled.v1")} == {"running"}
    assert workers.published(run_id, "run.completed.v1") == []
    assert workers.published(run_id, "run.failed.v1") == []


def test_cancelling_before_the_start_keeps_the_run_from_starting(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    assert stack.starter.cancel(cancel(run_id)) is CancelOutcome.CANCELLED_QUEUED
    assert stack.starter.start(run_requested(run_id)).outcome is StartOutcome.ALREADY_EXISTS

    workers.pump_until(lambda: status(stack, run_id) != "RUNNING", timeout_s=10)
    assert status(stack, run_id) == "SUCCEEDED"  # the tombstone ended at once
    assert [e.detail_type for e in workers.seen[run_id]] == ["run.cancelled.v1"]
    assert workers.seen[run_id][0].data.stage == "queued"


def test_cancelling_while_tools_run_leaves_no_unanswered_tool_call_in_the_transcript(
    stack: Stack, workers: Workers
) -> None:
    run_id = new_run_id()
    workers.silent_tools.add("current_time")  # its worker is still busy when the cancel comes
    workers.model[run_id] = [wants_tools(*TWO_CALLS)]
    start(stack, run_requested(run_id))
    workers.pump_until(lambda: any(e.detail_type == "tool.invocation.requested.v1" for e in workers.held))
    [waiting] = [e for e in workers.held if e.metadata.run_id == run_id]

    assert stack.starter.cancel(cancel(run_id)) is CancelOutcome.STOPPED
    workers.deliver(waiting, ToolInvocationCompleted(  # the late answer (moto wakes the stopped task with it)
        session_id=SESSION, step=1, tool_name="current_time",
        result=ToolResultBlock(tool_use_id="toolu_2", content="12:00"),
    ))  # fmt: skip
    deadline = time.monotonic() + 10
    while status(stack, run_id) == "RUNNING" and time.monotonic() < deadline:
        workers.pump_once(wait_s=0)
    # ABORTED, as on AWS (moto 5.2.5 ended a run stopped inside a Map FAILED with an internal States.Runtime
    # error; the emulator reports the stop: agentwire_infra.local.emulator.report_stopped_executions_as_aborted),
    # with the starter's error, which the watchdog reads as "run.cancelled was published".
    assert status(stack, run_id) == "ABORTED"
    info = stack.dependencies.stepfunctions.describe_execution(name=run_id)
    assert info is not None and info.error == "Run.Cancelled"
    workers.pump_until(lambda: bool(workers.published(run_id, "run.cancelled.v1")), timeout_s=10)

    # Only the user's message: the assistant turn asking for tools is appended only with all its results.
    assert [m.role for m in workers.transcripts[run_id]] == ["user"]
    assert workers.published(run_id, "run.completed.v1") == workers.published(run_id, "run.failed.v1") == []
    late = resume(workers.answer_body(waiting, said("even later")), stack.dependencies.stepfunctions)
    assert late.outcome is ResumeOutcome.TASK_GONE


# -- limits ----------------------------------------------------------------------------------------------


def only_failure(workers: Workers, run_id: str) -> Any:
    [failed] = workers.published(run_id, "run.failed.v1")
    assert workers.published(run_id, "run.completed.v1") == []
    return failed.data


def test_the_token_limit_ends_a_run_that_wants_more(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [wants_tools(TWO_CALLS[0], usage=Usage(input_tokens=10, output_tokens=5))]
    start(stack, run_requested(run_id, agent="few-tokens"))
    assert workers.run(run_id) == "FAILED"
    failed = only_failure(workers, run_id)
    assert failed.error.code == "Run.TokenLimitExceeded"
    assert "15" in failed.error.message
    [call] = workers.published(run_id, "llm.completion.requested.v1")
    assert call.data.max_total_tokens == 15 and call.data.spent_tokens == 0
    assert workers.invocations[run_id] == []


def test_the_token_limit_counts_prompt_cache_reads_and_writes(stack: Stack, workers: Workers) -> None:
    """Anthropic and OpenAI count cached prompt tokens apart from input_tokens: a cached run still spends them."""
    run_id = new_run_id()
    cached = Usage(input_tokens=1, output_tokens=2, cache_creation_input_tokens=7, cache_read_input_tokens=5)
    workers.model[run_id] = [wants_tools(TWO_CALLS[0], usage=cached)]
    start(stack, run_requested(run_id, agent="few-tokens"))
    assert workers.run(run_id) == "FAILED"
    failed = only_failure(workers, run_id)
    assert failed.error.code == "Run.TokenLimitExceeded"
    assert "the run used 15 tokens" in failed.error.message


def test_the_budget_ends_a_run_and_the_model_call_carries_spend_and_cap(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [wants_tools(TWO_CALLS[0], cost=60), wants_tools(TWO_CALLS[0], cost=60)]
    start(stack, run_requested(run_id, agent="cheap"))
    assert workers.run(run_id) == "FAILED"
    failed = only_failure(workers, run_id)
    assert failed.error.code == "Run.BudgetExceeded"
    assert failed.cost_microusd == 120 and failed.model_turns == 2 and failed.tool_calls == 1
    calls = workers.published(run_id, "llm.completion.requested.v1")
    assert [(c.data.spent_microusd, c.data.max_cost_microusd) for c in calls] == [(0, 100), (60, 100)]


def test_the_tool_call_limit_counts_the_calls_a_turn_asks_for(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [wants_tools(*TWO_CALLS)]
    start(stack, run_requested(run_id, agent="one-call"))
    assert workers.run(run_id) == "FAILED"
    failed = only_failure(workers, run_id)
    assert failed.error.code == "Run.ToolCallLimitExceeded"
    assert failed.tool_calls == 0  # none ran
    assert workers.invocations[run_id] == []


def test_the_wall_time_ends_a_run_past_its_deadline(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [wants_tools(TWO_CALLS[0])]
    event = run_requested(run_id, agent="hasty")
    event.metadata.occurred_at = event.metadata.occurred_at - timedelta(seconds=5)  # requested 5 s ago; 1 s allowed
    start(stack, event)
    assert workers.run(run_id) == "FAILED"
    failed = only_failure(workers, run_id)
    assert failed.error.code == "Run.WallTimeExceeded"
    assert workers.invocations[run_id] == []


def test_a_completed_run_reports_tool_calls_and_cost(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [wants_tools(*TWO_CALLS, cost=1200), said("42.", cost=800)]
    start(stack, run_requested(run_id))
    assert workers.run(run_id) == "SUCCEEDED"
    [completed] = workers.published(run_id, "run.completed.v1")
    assert (completed.data.tool_calls, completed.data.cost_microusd, completed.data.model_turns) == (2, 2000, 2)
    [_, second] = workers.published(run_id, "llm.completion.requested.v1")
    assert second.data.spent_microusd == 1200 and second.data.spent_tokens == 15
    assert {i.agent for i in workers.invocations[run_id]} == {"assistant@3"}


def test_a_worker_that_never_answers_times_the_step_out(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.hold.add("llm.completion.requested.v1")
    starter = Starter(
        stepfunctions=stack.dependencies.stepfunctions, publisher=stack.dependencies.publisher,
        agents=stack.dependencies.agents, timeouts=StepTimeouts(model_s=2),
    )  # fmt: skip
    assert starter.start(run_requested(run_id)).outcome is StartOutcome.STARTED
    began = time.monotonic()
    assert workers.run(run_id, timeout_s=30) == "FAILED"
    assert time.monotonic() - began < 20
    assert only_failure(workers, run_id).error.code == "States.Timeout"
    # Asked once more before giving up, with a token of its own (the first one's wait is over).
    asked = workers.published(run_id, "llm.completion.requested.v1")
    assert [request.data.step for request in asked] == [0, 0]
    assert asked[0].metadata.task_token != asked[1].metadata.task_token


@pytest.mark.parametrize(
    ("lost", "timeouts"),
    [
        ("llm.completion.requested.v1", StepTimeouts(model_s=2)),
        ("memory.context.requested.v1", StepTimeouts(memory_s=2)),
        ("tool.catalog.requested.v1", StepTimeouts(catalog_s=2)),
    ],
)
def test_a_request_lost_with_its_crashed_worker_is_asked_again_and_the_run_completes(
    stack: Stack, workers: Workers, lost: str, timeouts: StepTimeouts
) -> None:
    """On AWS a crashed Lambda's message comes back only after the queue's visibility timeout (6x the
    function timeout), later than the step's own timeout: the step asks again and the answer to the second
    request resumes the run."""
    run_id = new_run_id()
    workers.lose_first.add(lost)
    workers.model[run_id] = [said("Hello, Ada.")]
    starter = Starter(
        stepfunctions=stack.dependencies.stepfunctions, publisher=stack.dependencies.publisher,
        agents=stack.dependencies.agents, timeouts=timeouts,
    )  # fmt: skip
    assert starter.start(run_requested(run_id)).outcome is StartOutcome.STARTED
    assert workers.run(run_id, timeout_s=40) == "SUCCEEDED"
    [first] = [event for event in workers.lost if event.metadata.run_id == run_id]
    again = [event for event in workers.published(run_id, lost) if event.data == first.data]
    assert len(again) == 2 and again[1].metadata.task_token != first.metadata.task_token
    assert [e.data.output.content[0].text for e in workers.published(run_id, "run.completed.v1")] == ["Hello, Ada."]


# -- compaction ------------------------------------------------------------------------------------------


def test_compaction_summarizes_stores_the_summary_and_counts_its_cost(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    old = [Message(role="user", content=[TextBlock(text="What is 2 + 2?")])]
    workers.compaction[run_id] = CompactionRequest(
        system="Summarize the conversation.", messages=old, through_seq=4, max_tokens=300
    )
    workers.model[run_id] = [said("Hello again.", cost=100)]
    start(stack, run_requested(run_id))
    assert workers.run(run_id) == "SUCCEEDED"

    compact, turn = workers.published(run_id, "llm.completion.requested.v1")
    assert compact.data.purpose == "compaction" and turn.data.purpose == "turn"
    assert compact.data.system == "Summarize the conversation." and compact.data.messages == old
    assert compact.data.tools == [] and compact.data.max_tokens == 300
    first, store, save = workers.published(run_id, "memory.context.requested.v1")
    assert first.data.phase == "turn" and store.data.phase == "compaction" and save.data.phase == "turn"
    assert store.data.summary is not None and store.data.summary.text == "They talked about arithmetic."
    assert store.data.summary.through_seq == 4 and store.data.summary.cost_microusd == 70
    assert store.data.append == []
    # The model gets the system prompt memory assembled after storing the summary.
    assert turn.data.system.endswith("Summary: They talked about arithmetic.")
    [completed] = workers.published(run_id, "run.completed.v1")
    assert completed.data.cost_microusd == 170 and completed.data.model_turns == 1
    assert completed.data.usage.input_tokens == 57


def test_the_context_request_carries_the_agents_context_policy(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.model[run_id] = [said("Hi.")]
    event = run_requested(run_id)
    event.data.user_id = "u-7"
    start(stack, event)
    assert workers.run(run_id) == "SUCCEEDED"
    first = workers.published(run_id, "memory.context.requested.v1")[0].data
    agent = load_agent("assistant")
    assert first.system == agent.system and first.user_id == "u-7"
    assert first.max_context_tokens == agent.context.max_context_tokens
    assert first.compaction_threshold_tokens == agent.context.compaction_threshold_tokens
    [call] = workers.published(run_id, "llm.completion.requested.v1")
    assert (
        call.data.agent == agent.ref == "assistant@3"
        and call.data.user_id == "u-7"
        and call.data.system == agent.system
    )
    # What the model's window must also hold: the answer and the very tool specs the model call carries.
    assert first.model_context_tokens == agent.context.model_context_tokens
    assert first.max_output_tokens == agent.max_tokens == call.data.max_tokens
    assert first.tools_tokens == estimate_tool_specs_tokens(call.data.tools) > 0


def test_a_catalog_from_a_tools_service_before_1_1_reads_as_unsized_tools(stack: Stack, workers: Workers) -> None:
    """Deployed on its own, the tools service may still answer tool.catalog.ready 1.0 (no tools_tokens):
    the resume handler's tolerant reader fills the default, so the run goes on with 0 for the tools."""
    run_id = new_run_id()
    workers.catalog_1_0.add(run_id)
    workers.model[run_id] = [said("Hi.")]
    start(stack, run_requested(run_id))
    assert workers.run(run_id) == "SUCCEEDED"
    first = workers.published(run_id, "memory.context.requested.v1")[0].data
    assert (
        first.tools_tokens == 0 and first.model_context_tokens == load_agent("assistant").context.model_context_tokens
    )


# -- human approval --------------------------------------------------------------------------------------


EMAIL = ToolCall.of("toolu_m1", "send_email", {"to": "ann@example.com", "body": "hi"})
EMAIL_2 = ToolCall.of("toolu_m2", "send_email", {"to": "bob@example.com", "body": "hello"})


def approval_requests(workers: Workers, run_id: str) -> list[Event[Any]]:
    return [e for e in workers.held if e.metadata.run_id == run_id and e.detail_type == "run.approval.requested.v1"]


def decide(request: Event[Any], decision: str, **overrides: Any) -> RunApprovalDecided:
    data = request.data
    fields = {
        "session_id": data.session_id, "approval_id": data.approval_id, "tool_call_id": data.tool_call.id,
        "args_hash": data.args_hash, "decision": decision, "decided_by": "ops@example.com", "reason": "checked",
        **overrides,
    }  # fmt: skip
    return RunApprovalDecided(**fields)


def start_waiting_for_approvals(stack: Stack, workers: Workers, agent: str, *calls: ToolCall, n: int) -> str:
    run_id = new_run_id()
    workers.declared_approval.add("send_email")
    workers.hold.add("run.approval.requested.v1")
    workers.model[run_id] = [wants_tools(*calls), said("Done.")]
    start(stack, run_requested(run_id, agent=agent))
    workers.pump_until(lambda: len(approval_requests(workers, run_id)) == n, timeout_s=20)
    return run_id


def tool_results(workers: Workers, run_id: str) -> dict[str, ToolResultBlock]:
    return {b.tool_use_id: b for b in workers.transcripts[run_id][2].content}  # type: ignore[union-attr,misc]


def test_an_approved_call_runs_with_its_proof(stack: Stack, workers: Workers) -> None:
    run_id = start_waiting_for_approvals(stack, workers, "careful", EMAIL, n=1)
    [request] = approval_requests(workers, run_id)
    assert request.data.tool_call == EMAIL and request.data.args_hash == EMAIL.args_hash
    assert request.data.timeout_s == 600 and len(request.data.approval_id) == 64
    assert workers.invocations[run_id] == []  # nothing ran before the decision

    workers.deliver(request, decide(request, "approve"))
    assert workers.run(run_id) == "SUCCEEDED"

    [invocation] = workers.invocations[run_id]
    assert invocation.tool_call.id == EMAIL.id
    assert invocation.approval is not None
    assert invocation.approval.approval_id == request.data.approval_id
    assert invocation.approval.args_hash == EMAIL.args_hash and invocation.approval.decided_by == "ops@example.com"
    assert tool_results(workers, run_id)[EMAIL.id].is_error is False


def test_a_rejected_call_is_an_error_result_and_the_run_goes_on(stack: Stack, workers: Workers) -> None:
    run_id = start_waiting_for_approvals(stack, workers, "careful", EMAIL, n=1)
    [request] = approval_requests(workers, run_id)
    workers.deliver(request, decide(request, "reject", reason="not to customers"))
    assert workers.run(run_id) == "SUCCEEDED"
    assert workers.invocations[run_id] == []
    result = tool_results(workers, run_id)[EMAIL.id]
    assert result.is_error and "rejected" in result.content and "not to customers" in result.content


def test_an_approval_that_times_out_is_an_error_result(stack: Stack, workers: Workers) -> None:
    run_id = start_waiting_for_approvals(stack, workers, "impatient", EMAIL, n=1)
    assert workers.run(run_id, timeout_s=20) == "SUCCEEDED"  # nobody decides; the 1 s timeout passes
    assert workers.invocations[run_id] == []
    result = tool_results(workers, run_id)[EMAIL.id]
    assert result.is_error and "within 1 seconds" in result.content


def test_two_approvals_in_one_turn_are_each_routed_to_their_call(stack: Stack, workers: Workers) -> None:
    run_id = start_waiting_for_approvals(stack, workers, "careful", EMAIL, EMAIL_2, TWO_CALLS[0], n=3)
    requests = {r.data.tool_call.id: r for r in approval_requests(workers, run_id)}
    assert set(requests) == {EMAIL.id, EMAIL_2.id, "toolu_1"}  # calculator: by the agent's policy
    assert len({r.data.approval_id for r in requests.values()}) == 3
    # Decided in the reverse order of the calls.
    workers.deliver(requests["toolu_1"], decide(requests["toolu_1"], "approve"))
    workers.deliver(requests[EMAIL_2.id], decide(requests[EMAIL_2.id], "reject"))
    workers.deliver(requests[EMAIL.id], decide(requests[EMAIL.id], "approve"))
    assert workers.run(run_id) == "SUCCEEDED"

    ran = {i.tool_call.id: i for i in workers.invocations[run_id]}
    assert set(ran) == {EMAIL.id, "toolu_1"}
    assert ran[EMAIL.id].approval.args_hash == EMAIL.args_hash  # type: ignore[union-attr]
    assert ran[EMAIL.id].approval.approval_id == requests[EMAIL.id].data.approval_id  # type: ignore[union-attr]
    assert ran["toolu_1"].approval.approval_id == requests["toolu_1"].data.approval_id  # type: ignore[union-attr]
    results = tool_results(workers, run_id)
    assert results[EMAIL_2.id].is_error and not results[EMAIL.id].is_error


def test_a_decision_for_other_arguments_is_refused(stack: Stack, workers: Workers) -> None:
    run_id = start_waiting_for_approvals(stack, workers, "careful", EMAIL, n=1)
    [request] = approval_requests(workers, run_id)
    workers.deliver(request, decide(request, "approve", args_hash=EMAIL_2.args_hash))
    assert workers.run(run_id) == "SUCCEEDED"
    assert workers.invocations[run_id] == []
    result = tool_results(workers, run_id)[EMAIL.id]
    assert result.is_error and "does not match" in result.content
    # A second decision for the same request finds nobody waiting: acknowledged, not retried.
    again = resume(workers.answer_body(request, decide(request, "approve")), stack.dependencies.stepfunctions)
    assert again.outcome is ResumeOutcome.TASK_GONE


def test_a_waived_tool_runs_without_approval(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.declared_approval.add("send_email")
    workers.model[run_id] = [wants_tools(EMAIL), said("Sent.")]
    start(stack, run_requested(run_id, agent="trusting"))
    assert workers.run(run_id) == "SUCCEEDED"
    assert workers.published(run_id, "run.approval.requested.v1") == []
    [invocation] = workers.invocations[run_id]
    assert invocation.approval is None


# -- coverage (keep last: it reads the executions every test above ran) -----------------------------------


def choice_branches() -> set[tuple[str, str]]:
    """(choice state, a state it can go to) for every rule and default of every Choice state."""
    found = set()
    for name, state in asl.states().items():
        if state["Type"] == "Choice":
            found |= {(name, rule["Next"]) for rule in state["Choices"]} | {(name, state["Default"])}
    return found


def history(stack: Stack, arn: str) -> list[dict[str, Any]]:
    events, token = [], None
    while True:
        page = stack.sfn.get_execution_history(
            executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {})
        )
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


# -- the watchdog: executions that end without publishing their ending ---------------------------------


def status_change_of(stack: Stack, run_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """The SQS record of the run's execution status change, as the emulator put it on the default bus and
    the watchdog's rule routed it (the emulator reports executions that end, as Step Functions does)."""
    deadline = time.monotonic() + timeout_s
    while not stack.status_changes[run_id]:
        assert time.monotonic() < deadline, f"no status change of {run_id} reached the watchdog's queue"
        received = stack.sqs.receive_message(QueueUrl=stack.watch_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in received.get("Messages", []):
            body = json.loads(message["Body"])
            assert body["source"] == "aws.states" and body["detail-type"] == "Step Functions Execution Status Change"
            stack.status_changes[body["detail"]["name"]].append(message)
            stack.sqs.delete_message(QueueUrl=stack.watch_url, ReceiptHandle=message["ReceiptHandle"])
    message = stack.status_changes[run_id].pop(0)
    return {"messageId": message["MessageId"], "receiptHandle": "rh", "body": message["Body"], "attributes": {},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn",
            "awsRegion": "us-east-1"}  # fmt: skip


def watch(record: dict[str, Any]) -> None:
    response = watchdog_handler({"Records": [record]}, FakeLambdaContext())
    assert response["batchItemFailures"] == []


def test_a_run_stopped_outside_agentwire_still_ends_with_run_failed(stack: Stack, workers: Workers) -> None:
    run_id = new_run_id()
    workers.hold.add("llm.completion.requested.v1")
    start(stack, run_requested(run_id))
    workers.pump_until(lambda: any(e.metadata.run_id == run_id for e in workers.held), timeout_s=20)
    [waiting] = [e for e in workers.held if e.metadata.run_id == run_id]
    # An operator stops the execution in the console: nobody publishes how the run ended.
    stack.sfn.stop_execution(executionArn=execution_arn(stack, run_id), error="Ops.Stopped", cause="the user's text")
    workers.deliver(waiting, said("too late"))  # moto ends a stopped execution when its task wakes up
    record = status_change_of(stack, run_id)
    assert json.loads(record["body"])["detail"]["status"] == "ABORTED"

    watch(record)
    watch(record)  # redelivered

    workers.pump_until(lambda: len(workers.published(run_id, "run.failed.v1")) == 2, timeout_s=10)
    first, again = workers.published(run_id, "run.failed.v1")
    assert first.metadata.event_id == again.metadata.event_id  # the same event: consumers take it once
    assert first.data.error.code == "Run.ExecutionAborted" and "Ops.Stopped" in first.data.error.message
    assert "the user's text" not in first.data.error.message  # a cause is never quoted
    assert (first.metadata.tenant_id, first.data.session_id) == (TENANT, SESSION)
    assert (
        first.metadata.causation_id == workers.published(run_id, "tool.catalog.requested.v1")[0].metadata.causation_id
    )
    assert workers.published(run_id, "run.completed.v1") == []


def test_runs_that_published_their_ending_get_no_second_one_from_the_watchdog(stack: Stack, workers: Workers) -> None:
    failed = new_run_id()
    workers.model[failed] = [LlmCompletionFailed(code="Llm.BadRequest", message="no")]
    start(stack, run_requested(failed))
    assert workers.run(failed) == "FAILED"  # through the Fail state, after run.failed.v1
    cancelled = new_run_id()
    workers.hold.add("llm.completion.requested.v1")
    start(stack, run_requested(cancelled))
    workers.pump_until(lambda: any(e.metadata.run_id == cancelled for e in workers.held), timeout_s=20)
    assert stack.starter.cancel(cancel(cancelled)) is CancelOutcome.STOPPED  # ABORTED with Run.Cancelled
    workers.deliver(next(e for e in workers.held if e.metadata.run_id == cancelled), said("too late"))

    watch(status_change_of(stack, failed))
    watch(status_change_of(stack, cancelled))

    workers.pump_until(lambda: bool(workers.published(cancelled, "run.cancelled.v1")), timeout_s=10)
    while workers.pump_once(wait_s=1):  # anything the watchdog would have published
        pass
    assert len(workers.published(failed, "run.failed.v1")) == 1
    assert workers.published(cancelled, "run.failed.v1") == []


def run_tests() -> dict[str, Callable[[Stack, Workers], None]]:
    """Every test of this module that drives runs (takes the stack and the workers), by name."""
    return {
        name: test
        for name, test in globals().items()
        if name.startswith("test_")
        and callable(test)
        and list(getattr(test, "__annotations__", {}))[:2] == ["stack", "workers"]
    }


def test_every_state_and_every_choice_branch_was_entered_by_some_run(stack: Stack) -> None:
    # Self-contained: the executions are read from this module's own emulator, and the run tests that
    # did not run here (another xdist worker, a -k selection, an earlier failure's order) run now.
    for name, test in run_tests().items():
        if name not in RAN_HERE:
            test(stack, Workers(stack))
    entered: set[str] = set()
    taken: set[tuple[str, str]] = set()
    executions = stack.sfn.list_executions(stateMachineArn=stack.machine_arn, maxResults=1000)["executions"]
    assert len(executions) >= 20
    for execution in executions:
        events = history(stack, execution["executionArn"])
        by_id = {event["id"]: event for event in events}
        for event in events:
            if not event["type"].endswith("StateEntered"):
                continue
            name = event["stateEnteredEventDetails"]["name"]
            entered.add(name)
            previous = by_id.get(event.get("previousEventId", 0), {})
            if previous.get("type") == "ChoiceStateExited":
                taken.add((previous["stateExitedEventDetails"]["name"], name))
    assert set(asl.states()) - entered == set(), "states no test run entered"
    # Branches are told apart by where they go (CheckErrorCause's three rules share one target). A failure
    # answered with a message reaches CheckErrorCause with a Cause (the emulator keeps SendTaskFailure's
    # cause: agentwire_infra.local.emulator.pass_task_failure_cause), so its default is required too.
    assert choice_branches() - taken == set(), "choice branches no test run took"
