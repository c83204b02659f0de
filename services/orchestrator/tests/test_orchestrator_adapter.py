"""The boto3 adapter translates exactly the Step Functions errors the logic decides on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentwire_orchestrator.adapters.stepfunctions import Boto3StepFunctions, MissingStateMachine
from agentwire_orchestrator.ports import ExecutionStatus, TaskGone
from botocore.exceptions import ClientError

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:agentwire-run"


def client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, operation)


class ScriptedClient:
    """Records calls; raises the error queued for an operation, else returns its canned response."""

    def __init__(self, **responses: Any):
        self.responses = responses
        self.errors: dict[str, ClientError] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, operation: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append((operation, kwargs))
            if operation in self.errors:
                raise self.errors[operation]
            return self.responses.get(operation, {})

        return call


def test_start_passes_name_and_input_to_the_state_machine() -> None:
    client = ScriptedClient(start_execution={"executionArn": "arn:x"})
    started = Boto3StepFunctions(client, MACHINE).start_execution(name="run-1", input="{}")
    assert started.execution_arn == "arn:x" and not started.already_existed
    assert client.calls == [("start_execution", {"stateMachineArn": MACHINE, "name": "run-1", "input": "{}"})]


def test_execution_already_exists_is_reported_not_raised() -> None:
    client = ScriptedClient()
    client.errors["start_execution"] = client_error("ExecutionAlreadyExists", "StartExecution")
    started = Boto3StepFunctions(client, MACHINE).start_execution(name="run-1", input="{}")
    assert started.already_existed
    assert started.execution_arn.endswith(":execution:agentwire-run:run-1")


def test_other_start_errors_propagate() -> None:
    client = ScriptedClient()
    client.errors["start_execution"] = client_error("ExecutionLimitExceeded", "StartExecution")
    with pytest.raises(ClientError):
        Boto3StepFunctions(client, MACHINE).start_execution(name="run-1", input="{}")


def test_the_starter_needs_the_state_machine() -> None:
    with pytest.raises(MissingStateMachine):
        Boto3StepFunctions(ScriptedClient(), None).start_execution(name="run-1", input="{}")


def test_describe_reads_status_and_input_and_missing_is_none() -> None:
    client = ScriptedClient(describe_execution={"status": "RUNNING", "input": json.dumps({"cancelled": {}})})
    adapter = Boto3StepFunctions(client, MACHINE)
    info = adapter.describe_execution(name="run-1")
    assert info is not None and info.status is ExecutionStatus.RUNNING and info.input == {"cancelled": {}}
    assert client.calls == [
        ("describe_execution", {"executionArn": "arn:aws:states:us-east-1:123456789012:execution:agentwire-run:run-1"})
    ]
    client.errors["describe_execution"] = client_error("ExecutionDoesNotExist", "DescribeExecution")
    assert adapter.describe_execution(name="run-1") is None


def test_describe_reads_why_a_failed_execution_failed() -> None:
    client = ScriptedClient(describe_execution={"status": "FAILED", "error": "States.TaskFailed", "cause": "bus down"})
    info = Boto3StepFunctions(client, MACHINE).describe_execution(name="run-1")
    assert info is not None and (info.error, info.cause) == ("States.TaskFailed", "bus down")
    assert [operation for operation, _ in client.calls] == ["describe_execution"]


def test_describe_reads_who_stopped_an_aborted_execution_from_its_last_history_event() -> None:
    aborted = {"type": "ExecutionAborted", "executionAbortedEventDetails": {"error": "Run.Cancelled", "cause": "user"}}
    client = ScriptedClient(describe_execution={"status": "ABORTED"}, get_execution_history={"events": [aborted]})
    info = Boto3StepFunctions(client, MACHINE).describe_execution(name="run-1")
    assert info is not None and (info.error, info.cause) == ("Run.Cancelled", "user")
    assert client.calls[1] == (
        "get_execution_history",
        {
            "executionArn": "arn:aws:states:us-east-1:123456789012:execution:agentwire-run:run-1",
            "reverseOrder": True,
            "maxResults": 1,
        },
    )
    bare = ScriptedClient(describe_execution={"status": "ABORTED"}, get_execution_history={"events": []})
    stopped = Boto3StepFunctions(bare, MACHINE).describe_execution(name="run-1")
    assert stopped is not None and stopped.error is None


@pytest.mark.parametrize("code", ["TaskDoesNotExist", "TaskTimedOut", "InvalidToken"])
@pytest.mark.parametrize("operation", ["send_task_success", "send_task_failure"])
def test_a_gone_task_is_a_typed_outcome(code: str, operation: str) -> None:
    client = ScriptedClient()
    client.errors[operation] = client_error(code, operation)
    adapter = Boto3StepFunctions(client, None)  # resume needs no state machine ARN
    with pytest.raises(TaskGone) as raised:
        if operation == "send_task_success":
            adapter.send_task_success(task_token="t", output="{}")
        else:
            adapter.send_task_failure(task_token="t", error="E.x", cause="c")
    assert raised.value.reason == code


@pytest.mark.parametrize("code", ["ThrottlingException", "InvalidOutput", "KmsThrottlingException"])
def test_other_send_errors_propagate_for_a_retry(code: str) -> None:
    client = ScriptedClient()
    client.errors["send_task_success"] = client_error(code, "SendTaskSuccess")
    with pytest.raises(ClientError):
        Boto3StepFunctions(client, None).send_task_success(task_token="t", output="{}")


# -- the run's trace -----------------------------------------------------------------------------------

XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
TRACEPARENT = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"


def run_input(**run: Any) -> str:
    return json.dumps({"run": {"run_id": "run-1", **run}, "append": {"messages": []}})


def started_with(execution_input: str) -> dict[str, Any]:
    client = ScriptedClient(start_execution={"executionArn": "arn:x"})
    Boto3StepFunctions(client, MACHINE).start_execution(name="run-1", input=execution_input)
    [(operation, kwargs)] = client.calls
    assert operation == "start_execution"
    return kwargs


def test_the_execution_joins_the_runs_trace() -> None:
    kwargs = started_with(run_input(trace_header=XRAY, traceparent=TRACEPARENT))
    assert kwargs["traceHeader"] == XRAY
    assert (kwargs["name"], kwargs["stateMachineArn"]) == ("run-1", MACHINE)


def test_without_an_xray_header_the_traceparent_names_the_trace() -> None:
    assert started_with(run_input(trace_header=None, traceparent=TRACEPARENT))["traceHeader"] == XRAY


def test_a_header_over_step_functions_limit_keeps_root_parent_and_sampled() -> None:
    long_header = f"{XRAY};Lineage={'a' * 300}"
    header = started_with(run_input(trace_header=long_header))["traceHeader"]
    assert header == XRAY and len(header) <= 256
    # Not ASCII (Step Functions refuses it): the X-Ray fields alone.
    assert started_with(run_input(trace_header=f"{XRAY};Note=\u00e9"))["traceHeader"] == XRAY


@pytest.mark.parametrize(
    "execution_input",
    [
        json.dumps({"cancelled": {"run_id": "run-1"}}),  # a tombstone: no run, no trace
        run_input(trace_header=None, traceparent=None),
        run_input(trace_header="garbage", traceparent="also garbage"),
    ],
)
def test_no_usable_trace_sends_no_trace_header(execution_input: str) -> None:
    assert "traceHeader" not in started_with(execution_input)


def test_step_functions_takes_the_trace_header_parameter() -> None:
    """botocore checks every parameter against the StartExecution model (a fake client would take any)."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client = boto3.client("stepfunctions", region_name="us-east-1")
        definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
        machine = client.create_state_machine(name="agentwire-run", definition=definition, roleArn=role)
        started = Boto3StepFunctions(client, machine["stateMachineArn"]).start_execution(
            name="run-1", input=run_input(trace_header=XRAY)
        )
    assert started.execution_arn.endswith(":execution:agentwire-run:run-1") and not started.already_existed
