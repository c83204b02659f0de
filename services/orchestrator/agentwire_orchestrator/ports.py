"""The small interfaces the orchestrator's logic needs from the outside world, and their outcomes.

Adapters (boto3) implement these; the logic and its tests never see boto3. Adapters translate the
Step Functions errors the logic must decide on into the exceptions below.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from agentwire_contracts.envelope import Event


class Publisher(Protocol):
    def publish_one(self, event: Event[Any]) -> None: ...


#: The error of the state machine's Fail state: the run published run.failed.v1 itself before ending.
RUN_FAILED_ERROR = "Run.Failed"
#: The error the starter stops an execution with on a cancel request (it publishes run.cancelled.v1).
RUN_CANCELLED_ERROR = "Run.Cancelled"


class ExecutionStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"
    PENDING_REDRIVE = "PENDING_REDRIVE"


@dataclass(frozen=True)
class Started:
    execution_arn: str
    #: True when an execution of this name already existed (a redelivered or duplicate request).
    already_existed: bool


@dataclass(frozen=True)
class ExecutionInfo:
    status: ExecutionStatus
    #: The execution's input, parsed (None if Step Functions did not return it).
    input: dict[str, Any] | None = None
    #: Why a FAILED (or stopped) execution ended: the error name and cause Step Functions reports.
    error: str | None = None
    cause: str | None = None


class TaskGone(Exception):
    """The task a token belonged to is no longer waiting (stopped or timed-out execution, stale token)."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason


class StepFunctions(Protocol):
    """What the orchestrator asks of Step Functions. Executions are named by run_id."""

    def start_execution(self, *, name: str, input: str) -> Started:
        """Start `name`; an existing execution of that name is reported, not raised."""
        ...

    def describe_execution(self, *, name: str) -> ExecutionInfo | None:
        """The execution called `name`, or None if there is none."""
        ...

    def stop_execution(self, *, name: str, cause: str) -> None: ...

    def send_task_success(self, *, task_token: str, output: str) -> None:
        """Raises `TaskGone` when the token's task is no longer waiting."""
        ...

    def send_task_failure(self, *, task_token: str, error: str, cause: str) -> None:
        """Raises `TaskGone` when the token's task is no longer waiting."""
        ...

    def send_task_heartbeat(self, *, task_token: str) -> None:
        """Raises `TaskGone` when the token's task is no longer waiting."""
        ...
