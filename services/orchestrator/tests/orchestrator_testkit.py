"""Fakes of the orchestrator's ports and builders of the events it consumes (unit tests only)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from agentwire_contracts.content import Message, TextBlock, ToolCall, ToolResultBlock, ToolUseBlock, Usage
from agentwire_contracts.envelope import Event, EventData
from agentwire_contracts.events.llm import LlmCompletionCompleted, LlmCompletionFailed
from agentwire_contracts.events.run import RunCancelRequested, RunRequested
from agentwire_orchestrator.ports import ExecutionInfo, ExecutionStatus, Started, TaskGone

TENANT = "t-acme"
SESSION = "s-1"


@dataclass
class FakeExecution:
    name: str
    input: str
    status: ExecutionStatus = ExecutionStatus.RUNNING
    stop_cause: str | None = None
    #: Why it ended, as DescribeExecution (or, when stopped, the last history event) reports it.
    error: str | None = None


@dataclass
class FakeStepFunctions:
    """Executions by name with Step Functions' naming rules; tokens are either waiting or gone."""

    executions: dict[str, FakeExecution] = field(default_factory=dict)
    #: token → None (waiting) or the reason it is gone (e.g. "TaskDoesNotExist").
    tokens: dict[str, str | None] = field(default_factory=dict)
    successes: list[tuple[str, str]] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    heartbeats: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    #: Raised by the next send_task_* call (e.g. a throttling error), then cleared.
    fail_next_send: Exception | None = None
    #: Simulates a run finishing on its own between DescribeExecution and StopExecution.
    finish_before_stop: ExecutionStatus | None = None
    #: Simulates a run starting between DescribeExecution (none) and the tombstone's StartExecution.
    start_before_tombstone: str | None = None

    def waiting(self, token: str) -> str:
        self.tokens[token] = None
        return token

    def start_execution(self, *, name: str, input: str) -> Started:
        self.calls.append(f"start:{name}")
        if self.start_before_tombstone is not None and name not in self.executions:
            self.executions[name] = FakeExecution(name, self.start_before_tombstone)
            self.start_before_tombstone = None
        arn = f"arn:aws:states:us-east-1:123456789012:execution:agentwire-run:{name}"
        existing = self.executions.get(name)
        if existing is not None:
            # Same name and input while running: Step Functions answers with the running execution,
            # which the adapter cannot tell from a new one; otherwise ExecutionAlreadyExists.
            same = existing.input == input and existing.status is ExecutionStatus.RUNNING
            return Started(execution_arn=arn, already_existed=not same)
        self.executions[name] = FakeExecution(name, input)
        return Started(execution_arn=arn, already_existed=False)

    def describe_execution(self, *, name: str) -> ExecutionInfo | None:
        self.calls.append(f"describe:{name}")
        execution = self.executions.get(name)
        if execution is None:
            return None
        return ExecutionInfo(status=execution.status, input=json.loads(execution.input), error=execution.error)

    def stop_execution(self, *, name: str, cause: str) -> None:
        self.calls.append(f"stop:{name}")
        execution = self.executions[name]
        if self.finish_before_stop is not None:
            execution.status = self.finish_before_stop
            return
        if execution.status is ExecutionStatus.RUNNING:
            execution.status = ExecutionStatus.ABORTED
            execution.stop_cause = cause

    def _answer(self, token: str) -> None:
        if self.fail_next_send is not None:
            error, self.fail_next_send = self.fail_next_send, None
            raise error
        if token not in self.tokens:
            raise TaskGone("InvalidToken", "no such token")
        gone = self.tokens[token]
        if gone is not None:
            raise TaskGone(gone)
        self.tokens[token] = "TaskDoesNotExist"  # answered: a second answer finds nobody waiting

    def send_task_success(self, *, task_token: str, output: str) -> None:
        self._answer(task_token)
        self.successes.append((task_token, output))

    def send_task_failure(self, *, task_token: str, error: str, cause: str) -> None:
        self._answer(task_token)
        self.failures.append((task_token, error, cause))

    def send_task_heartbeat(self, *, task_token: str) -> None:
        if task_token not in self.tokens:
            raise TaskGone("InvalidToken", "no such token")
        gone = self.tokens[task_token]
        if gone is not None:
            raise TaskGone(gone)
        self.heartbeats.append(task_token)  # beats leave the task waiting


@dataclass
class FakePublisher:
    events: list[Event[Any]] = field(default_factory=list)

    def publish_one(self, event: Event[Any]) -> None:
        self.events.append(event)

    def of(self, detail_type: str) -> list[Event[Any]]:
        return [event for event in self.events if event.detail_type == detail_type]


def user_message(text: str = "What is 6 * 7?") -> Message:
    return Message(role="user", content=[TextBlock(text=text)])


def run_requested(
    run_id: str = "run-1",
    *,
    agent: str = "assistant",
    text: str = "What is 6 * 7?",
    user_id: str | None = "u-1",
    trace_header: str | None = None,
) -> Event[RunRequested]:
    return Event.create(
        RunRequested(session_id=SESSION, input=user_message(text), agent=agent, user_id=user_id),
        tenant_id=TENANT,
        run_id=run_id,
        trace_header=trace_header,
    )


def cancel_requested(run_id: str = "run-1", reason: str = "user pressed stop") -> Event[RunCancelRequested]:
    return Event.create(RunCancelRequested(session_id=SESSION, reason=reason), tenant_id=TENANT, run_id=run_id)


def eventbridge_body(event: Event[Any], *, detail: dict[str, Any] | None = None) -> str:
    """The SQS body EventBridge delivers for `event`."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": event.detail_type,
            "source": event.source,
            "account": "123456789012",
            "time": "2025-01-01T00:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": detail if detail is not None else event.detail(),
        }
    )


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m-{index}",
                "receiptHandle": f"rh-{index}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:agentwire-orchestrator-resume",
                "awsRegion": "us-east-1",
            }
            for index, body in enumerate(bodies)
        ]
    }


def answer(data: EventData, *, token: str | None = "token-1", run_id: str = "run-1") -> Event[Any]:
    return Event.create(data, tenant_id=TENANT, run_id=run_id, task_token=token)


def completion(stop_reason: str = "end_turn", text: str = "42", tool_calls: list[ToolCall] | None = None) -> EventData:
    calls = tool_calls or []
    content: list[Any] = [TextBlock(text=text)] if text else []
    content += [ToolUseBlock(id=c.id, name=c.name, input=c.input) for c in calls]
    return LlmCompletionCompleted(
        session_id=SESSION,
        step=0,
        message=Message(role="assistant", content=content),
        text=text,
        tool_calls=calls,
        stop_reason=stop_reason,
        usage=Usage(input_tokens=10, output_tokens=5),
    )


def llm_failed(code: str = "Llm.BadRequest", message: str = "bad request") -> EventData:
    return LlmCompletionFailed(code=code, message=message)


def tool_result(text: str = "42") -> ToolResultBlock:
    return ToolResultBlock(tool_use_id="toolu_1", content=text)


@dataclass
class FakeLambdaContext:
    function_name: str = "agentwire-orchestrator"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:agentwire-orchestrator"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "req-1"
    log_group_name: str = "/aws/lambda/agentwire-orchestrator"
    log_stream_name: str = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
