"""Step Functions through boto3, behind the `StepFunctions` port.

Executions are addressed by name (the run_id); the ARN is derived from the state machine's. The
errors the logic decides on are translated: ExecutionAlreadyExists → `Started(already_existed=True)`,
ExecutionDoesNotExist → None, and a token whose task is no longer waiting → `TaskGone`. Every other
error propagates (the SQS record is retried and, in the end, lands in the DLQ).

An execution joins its run's trace: StartExecution gets `traceHeader`, the X-Ray header of the run
(`run.trace_header` of the execution's input, copied from the run.requested event's metadata; else the
X-Ray form of its `traceparent`), so on AWS the execution (and every event its states publish) is in the
trace of the request that asked for the run.
"""

from __future__ import annotations

import json
from typing import Any

from agentwire_contracts.telemetry import traceparent_to_xray
from botocore.exceptions import ClientError

from agentwire_orchestrator.ports import RUN_CANCELLED_ERROR, ExecutionInfo, ExecutionStatus, Started, TaskGone
from agentwire_orchestrator.run_input import execution_arn

#: Errors of SendTaskSuccess/Failure meaning nobody waits for this token any more: the execution was
#: stopped, timed out or finished, the task timed out, or the token was answered or never valid.
TASK_GONE_ERRORS = frozenset({"TaskDoesNotExist", "TaskTimedOut", "InvalidToken", "ExecutionDoesNotExist"})
#: StartExecution's limit on `traceHeader` (ASCII only).
MAX_TRACE_HEADER_CHARS = 256
_XRAY_FIELDS = ("Root", "Parent", "Sampled")


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def execution_trace_header(execution_input: str) -> str | None:
    """The X-Ray trace header of the run an execution input is for, fit for StartExecution (at most 256
    ASCII characters: extra fields of a longer header are dropped), or None (a tombstone, or no trace)."""
    try:
        parsed = json.loads(execution_input)
    except ValueError:
        return None
    run = parsed.get("run") if isinstance(parsed, dict) else None
    if not isinstance(run, dict):
        return None
    header, traceparent = run.get("trace_header"), run.get("traceparent")
    candidates = []
    if isinstance(header, str) and "Root=" in header:
        candidates.append(header.strip())
        fields = dict(part.strip().split("=", 1) for part in header.split(";") if "=" in part)
        candidates.append(";".join(f"{key}={fields[key]}" for key in _XRAY_FIELDS if key in fields))
    if isinstance(traceparent, str):
        candidates.append(traceparent_to_xray(traceparent) or "")
    for candidate in candidates:
        if candidate.startswith("Root=") and candidate.isascii() and len(candidate) <= MAX_TRACE_HEADER_CHARS:
            return candidate
    return None


class MissingStateMachine(RuntimeError):
    """The starter needs the state machine's ARN (AGENTWIRE_STATE_MACHINE_ARN)."""


class Boto3StepFunctions:
    def __init__(self, client: Any, state_machine_arn: str | None):
        self._client = client
        self._state_machine_arn = state_machine_arn

    @property
    def state_machine_arn(self) -> str:
        if not self._state_machine_arn:
            raise MissingStateMachine("AGENTWIRE_STATE_MACHINE_ARN is not set")
        return self._state_machine_arn

    def execution_arn(self, name: str) -> str:
        return execution_arn(self.state_machine_arn, name)

    def start_execution(self, *, name: str, input: str) -> Started:
        request = {"stateMachineArn": self.state_machine_arn, "name": name, "input": input}
        trace_header = execution_trace_header(input)
        if trace_header is not None:
            request["traceHeader"] = trace_header
        try:
            response = self._client.start_execution(**request)
        except ClientError as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                return Started(execution_arn=self.execution_arn(name), already_existed=True)
            raise
        arn = str(response["executionArn"])
        # Same name and input while running: Step Functions answers with the existing execution.
        return Started(execution_arn=arn, already_existed=False)

    def describe_execution(self, *, name: str) -> ExecutionInfo | None:
        try:
            response = self._client.describe_execution(executionArn=self.execution_arn(name))
        except ClientError as exc:
            if error_code(exc) == "ExecutionDoesNotExist":
                return None
            raise
        raw_input = response.get("input")
        parsed: dict[str, Any] | None = None
        if isinstance(raw_input, str):
            try:
                loaded = json.loads(raw_input)
            except json.JSONDecodeError:
                loaded = None
            parsed = loaded if isinstance(loaded, dict) else None
        status = ExecutionStatus(response["status"])
        error, cause = response.get("error"), response.get("cause")
        if status is ExecutionStatus.ABORTED and error is None:
            error, cause = self._stop_reason(self.execution_arn(name))
        return ExecutionInfo(status=status, input=parsed, error=error, cause=cause)

    def _stop_reason(self, arn: str) -> tuple[str | None, str | None]:
        """The error and cause a stopped execution was stopped with: its last history event (DescribeExecution
        documents them for failed executions only)."""
        events = self._client.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=1)["events"]
        details = events[0].get("executionAbortedEventDetails", {}) if events else {}
        return details.get("error") or None, details.get("cause") or None

    def stop_execution(self, *, name: str, cause: str) -> None:
        try:
            self._client.stop_execution(
                executionArn=self.execution_arn(name), error=RUN_CANCELLED_ERROR, cause=cause[:32_768]
            )
        except ClientError as exc:
            if error_code(exc) == "ExecutionDoesNotExist":
                return
            raise

    def send_task_success(self, *, task_token: str, output: str) -> None:
        try:
            self._client.send_task_success(taskToken=task_token, output=output)
        except ClientError as exc:
            _raise_gone(exc)

    def send_task_failure(self, *, task_token: str, error: str, cause: str) -> None:
        try:
            self._client.send_task_failure(taskToken=task_token, error=error, cause=cause)
        except ClientError as exc:
            _raise_gone(exc)

    def send_task_heartbeat(self, *, task_token: str) -> None:
        try:
            self._client.send_task_heartbeat(taskToken=task_token)
        except ClientError as exc:
            _raise_gone(exc)


def _raise_gone(exc: ClientError) -> None:
    code = error_code(exc)
    if code in TASK_GONE_ERRORS:
        raise TaskGone(code, str(exc.response.get("Error", {}).get("Message", ""))) from exc
    raise exc
