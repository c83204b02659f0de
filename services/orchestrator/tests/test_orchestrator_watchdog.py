"""The watchdog: a run whose execution ended without publishing its ending still gets run.failed, once;
a run that published its own ending (the Fail state, a cancel, a tombstone) gets nothing more."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentwire_contracts.events.run import RunFailed
from agentwire_orchestrator.dependencies import Dependencies, set_dependencies
from agentwire_orchestrator.handler import watchdog_handler
from agentwire_orchestrator.ports import RUN_CANCELLED_ERROR, RUN_FAILED_ERROR, ExecutionStatus
from agentwire_orchestrator.run_input import build_execution_input, encode
from agentwire_orchestrator.starter import TOMBSTONE_KEY
from agentwire_orchestrator.watchdog import ExecutionStatusChange, WatchOutcome, watch
from orchestrator_testkit import (
    SESSION,
    TENANT,
    FakeExecution,
    FakeLambdaContext,
    FakePublisher,
    FakeStepFunctions,
    run_requested,
    sqs_event,
)

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:agentwire-run"


def status_change(name: str = "run-1", status: str = "FAILED", machine: str = MACHINE) -> dict[str, Any]:
    """The event as AWS documents it (EventBridge reference: Step Functions Execution Status Change)."""
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2026-12-04T16:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:states:us-east-1:123456789012:execution:agentwire-run:{name}"],
        "detail": {
            "executionArn": f"arn:aws:states:us-east-1:123456789012:execution:agentwire-run:{name}",
            "stateMachineArn": machine,
            "name": name,
            "status": status,
            "startDate": 1796400000000,
            "stopDate": 1796400060000,
            "input": "{}",
            "inputDetails": {"included": True},
            "output": None,
            "outputDetails": None,
        },
    }


def ended(sfn: FakeStepFunctions, status: ExecutionStatus, error: str | None, name: str = "run-1") -> None:
    from agentwire_orchestrator.agents import builtin_catalog

    execution_input = encode(build_execution_input(run_requested(name), builtin_catalog().get("assistant")))
    sfn.executions[name] = FakeExecution(name, execution_input, status=status, error=error)


def run(sfn: FakeStepFunctions, publisher: FakePublisher, change: dict[str, Any]) -> WatchOutcome:
    parsed = ExecutionStatusChange.model_validate(change)
    return watch(parsed, state_machine_arn=MACHINE, stepfunctions=sfn, publisher=publisher).outcome


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (ExecutionStatus.FAILED, "States.TaskFailed", "Run.ExecutionFailed"),
        (ExecutionStatus.FAILED, None, "Run.ExecutionFailed"),
        (ExecutionStatus.TIMED_OUT, None, "Run.ExecutionTimedOut"),
        (ExecutionStatus.ABORTED, "Ops.Stopped", "Run.ExecutionAborted"),
        (ExecutionStatus.ABORTED, None, "Run.ExecutionAborted"),
    ],
)
def test_an_execution_that_ended_without_its_ending_gets_run_failed_once(
    sfn: FakeStepFunctions, publisher: FakePublisher, status: ExecutionStatus, error: str | None, code: str
) -> None:
    ended(sfn, status, error)

    assert run(sfn, publisher, status_change(status=status.value)) is WatchOutcome.PUBLISHED
    assert run(sfn, publisher, status_change(status=status.value)) is WatchOutcome.PUBLISHED  # redelivered

    first, again = publisher.of("run.failed.v1")
    assert first.metadata.event_id == again.metadata.event_id  # one event, whatever the deliveries
    assert isinstance(first.data, RunFailed) and first.data.error.code == code
    assert (first.metadata.tenant_id, first.metadata.run_id, first.data.session_id) == (TENANT, "run-1", SESSION)
    assert status.value in first.data.error.message and (error or "none reported") in first.data.error.message


@pytest.mark.parametrize(
    ("status", "error"),
    [(ExecutionStatus.FAILED, RUN_FAILED_ERROR), (ExecutionStatus.ABORTED, RUN_CANCELLED_ERROR)],
)
def test_a_run_that_published_its_own_ending_gets_nothing_more(
    sfn: FakeStepFunctions, publisher: FakePublisher, status: ExecutionStatus, error: str
) -> None:
    ended(sfn, status, error)
    assert run(sfn, publisher, status_change(status=status.value)) is WatchOutcome.ALREADY_ENDED
    assert publisher.events == []


def test_a_tombstone_execution_is_a_cancel_that_beat_the_start(
    sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    tombstone = encode({TOMBSTONE_KEY: {"run_id": "run-1", "reason": "", "cancel_event_id": "e"}})
    sfn.executions["run-1"] = FakeExecution("run-1", tombstone, status=ExecutionStatus.FAILED, error="X.Y")
    assert run(sfn, publisher, status_change()) is WatchOutcome.ALREADY_ENDED
    assert publisher.events == []


def test_other_machines_succeeded_and_redriven_executions_are_left_alone(
    sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    ended(sfn, ExecutionStatus.FAILED, "States.TaskFailed")
    other = "arn:aws:states:us-east-1:123456789012:stateMachine:someone-elses"
    assert run(sfn, publisher, status_change(machine=other)) is WatchOutcome.NOT_OURS
    assert sfn.calls == []  # not even described
    assert run(sfn, publisher, status_change(status="SUCCEEDED")) is WatchOutcome.NOT_WATCHED
    sfn.executions["run-1"].status = ExecutionStatus.RUNNING  # redriven since the change was sent
    assert run(sfn, publisher, status_change()) is WatchOutcome.NOT_WATCHED
    assert run(sfn, publisher, status_change(name="run-gone")) is WatchOutcome.NOT_WATCHED
    assert publisher.events == []


def test_the_handler_reports_only_the_record_it_cannot_read(sfn: FakeStepFunctions, publisher: FakePublisher) -> None:
    ended(sfn, ExecutionStatus.TIMED_OUT, None)
    set_dependencies(
        Dependencies(
            stepfunctions=sfn, publisher=publisher, agents=None,  # type: ignore[arg-type]
            max_task_output_bytes=4096, state_machine_arn=MACHINE,
        )
    )  # fmt: skip
    try:
        response = watchdog_handler(
            sqs_event(json.dumps(status_change(status="TIMED_OUT")), '{"detail-type": "something else"}'),
            FakeLambdaContext(),
        )
    finally:
        set_dependencies(None)
    assert [item["itemIdentifier"] for item in response["batchItemFailures"]] == ["m-1"]
    [failed] = publisher.of("run.failed.v1")
    assert failed.data.error.code == "Run.ExecutionTimedOut"
