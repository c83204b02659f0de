"""The starter: run.requested → one execution named run_id; run.cancel.requested → stop, idempotently."""

from __future__ import annotations

import json

import pytest
from agentwire_contracts.agents import AgentCatalog, AgentDefinition
from agentwire_contracts.events.run import RunCancelled, RunFailed
from agentwire_orchestrator.agents import builtin_catalog
from agentwire_orchestrator.ports import ExecutionStatus
from agentwire_orchestrator.starter import CancelOutcome, MissingRunId, Starter, StartOutcome, is_tombstone
from orchestrator_testkit import TENANT, FakePublisher, FakeStepFunctions, cancel_requested, run_requested


@pytest.fixture
def starter(sfn: FakeStepFunctions, publisher: FakePublisher) -> Starter:
    return Starter(stepfunctions=sfn, publisher=publisher, agents=builtin_catalog())


def test_a_run_starts_one_execution_named_after_it_and_publishes_nothing(
    starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    result = starter.start(run_requested("run-1"))
    assert result.outcome is StartOutcome.STARTED
    assert list(sfn.executions) == ["run-1"]
    started_with = json.loads(sfn.executions["run-1"].input)
    assert started_with["run"]["agent"]["name"] == "assistant"
    assert started_with["append"]["messages"][0]["role"] == "user"
    assert publisher.events == []  # the state machine publishes run.started itself


def test_a_redelivered_request_is_harmless(starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher) -> None:
    event = run_requested("run-1")
    starter.start(event)
    starter.start(event)  # same name, same input, still running: the same execution
    assert len(sfn.executions) == 1
    assert publisher.events == []


def test_a_duplicate_after_the_run_ended_is_harmless(
    starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    starter.start(run_requested("run-1"))
    sfn.executions["run-1"].status = ExecutionStatus.SUCCEEDED
    result = starter.start(run_requested("run-1"))  # a new event id: different input
    assert result.outcome is StartOutcome.ALREADY_EXISTS
    assert len(sfn.executions) == 1
    assert publisher.events == []


def test_an_unknown_agent_fails_the_run_without_an_execution(
    starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    event = run_requested("run-1", agent="nobody")
    result = starter.start(event)
    assert result.outcome is StartOutcome.REJECTED
    assert sfn.executions == {}
    [failed] = publisher.of("run.failed.v1")
    assert isinstance(failed.data, RunFailed)
    assert failed.data.error.code == "Run.UnknownAgent"
    assert "nobody" in failed.data.error.message
    assert failed.metadata.run_id == "run-1"
    assert failed.metadata.tenant_id == TENANT
    assert failed.metadata.causation_id == event.metadata.event_id


def test_a_run_id_step_functions_cannot_name_an_execution_fails_the_run(
    starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    result = starter.start(run_requested("x" * 81))
    assert result.code == "Run.InvalidRunId"
    assert sfn.executions == {}
    assert publisher.of("run.failed.v1")[0].data.error.code == "Run.InvalidRunId"


def test_an_input_over_step_functions_limit_fails_the_run(sfn: FakeStepFunctions, publisher: FakePublisher) -> None:
    huge = AgentDefinition(name="huge", model="m", system="x" * 200_000)
    starter = Starter(stepfunctions=sfn, publisher=publisher, agents=AgentCatalog([huge]))
    result = starter.start(run_requested("run-1", agent="huge", text="y" * 70_000))
    assert result.code == "Run.InputTooLarge"
    assert sfn.executions == {}


def test_a_run_event_without_run_id_cannot_be_handled(starter: Starter) -> None:
    event = run_requested()
    event.metadata.run_id = None
    with pytest.raises(MissingRunId):
        starter.start(event)


# -- cancel --------------------------------------------------------------------------------------------


def test_cancelling_a_running_run_stops_it_and_publishes_cancelled(
    starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    starter.start(run_requested("run-1"))
    event = cancel_requested("run-1", reason="changed my mind")
    assert starter.cancel(event) is CancelOutcome.STOPPED
    assert sfn.executions["run-1"].status is ExecutionStatus.ABORTED
    assert sfn.executions["run-1"].stop_cause == "changed my mind"
    [cancelled] = publisher.of("run.cancelled.v1")
    assert isinstance(cancelled.data, RunCancelled)
    assert cancelled.data.stage == "running"
    assert cancelled.data.reason == "changed my mind"
    assert cancelled.metadata.causation_id == event.metadata.event_id


def test_a_redelivered_cancel_is_acknowledged_and_republished(
    starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    starter.start(run_requested("run-1"))
    event = cancel_requested("run-1")
    starter.cancel(event)
    assert starter.cancel(event) is CancelOutcome.ALREADY_CANCELLED
    # A crash between stop and publish must not lose the event; a repeat is harmless to readers.
    assert [e.data.stage for e in publisher.of("run.cancelled.v1")] == ["running", "running"]
    assert sfn.calls.count("stop:run-1") == 1


@pytest.mark.parametrize("status", [ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT])
def test_cancelling_an_ended_run_changes_nothing(
    starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher, status: ExecutionStatus
) -> None:
    starter.start(run_requested("run-1"))
    sfn.executions["run-1"].status = status
    assert starter.cancel(cancel_requested("run-1")) is CancelOutcome.ALREADY_ENDED
    assert sfn.executions["run-1"].status is status
    assert publisher.events == []


def test_a_run_that_ends_just_before_the_stop_keeps_its_own_ending(
    starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    starter.start(run_requested("run-1"))
    sfn.finish_before_stop = ExecutionStatus.SUCCEEDED
    assert starter.cancel(cancel_requested("run-1")) is CancelOutcome.ALREADY_ENDED
    assert publisher.events == []


def test_cancelling_before_the_run_starts_leaves_a_tombstone_the_request_cannot_pass(
    starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    assert starter.cancel(cancel_requested("run-1")) is CancelOutcome.CANCELLED_QUEUED
    tombstone = sfn.describe_execution(name="run-1")
    assert tombstone is not None and is_tombstone(tombstone)
    assert [e.data.stage for e in publisher.of("run.cancelled.v1")] == ["queued"]

    result = starter.start(run_requested("run-1"))  # the request arrives late
    assert result.outcome is StartOutcome.ALREADY_EXISTS
    assert tombstone == sfn.describe_execution(name="run-1")  # still the tombstone
    assert publisher.of("run.failed.v1") == []


def test_a_redelivered_pre_start_cancel_republishes_queued(
    starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    event = cancel_requested("run-1")
    starter.cancel(event)
    sfn.executions["run-1"].status = ExecutionStatus.SUCCEEDED  # the tombstone ends at once
    assert starter.cancel(event) is CancelOutcome.ALREADY_CANCELLED
    assert [e.data.stage for e in publisher.of("run.cancelled.v1")] == ["queued", "queued"]


def test_a_run_starting_while_cancel_looks_is_stopped_as_running(
    starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    sfn.start_before_tombstone = json.dumps({"run": {"run_id": "run-1"}})
    assert starter.cancel(cancel_requested("run-1")) is CancelOutcome.STOPPED
    assert sfn.executions["run-1"].status is ExecutionStatus.ABORTED
    assert [e.data.stage for e in publisher.of("run.cancelled.v1")] == ["running"]


def test_cancelling_a_run_id_no_execution_could_have_is_acknowledged(
    starter: Starter, sfn: FakeStepFunctions, publisher: FakePublisher
) -> None:
    assert starter.cancel(cancel_requested("no spaces allowed")) is CancelOutcome.ALREADY_ENDED
    assert sfn.calls == []


def test_what_the_starter_publishes_carries_both_trace_headers_of_the_request(
    starter: Starter, publisher: FakePublisher
) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    xray = "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"
    rejected = run_requested("run-1", agent="nobody").model_copy(deep=True)
    rejected.metadata.traceparent, rejected.metadata.trace_header = traceparent, xray
    starter.start(rejected)
    cancel = cancel_requested("run-2")
    cancel.metadata.traceparent, cancel.metadata.trace_header = traceparent, xray
    starter.cancel(cancel)
    published = publisher.of("run.failed.v1") + publisher.of("run.cancelled.v1")
    assert len(published) == 2
    for event in published:
        assert (event.metadata.traceparent, event.metadata.trace_header) == (traceparent, xray), event.detail_type
