"""One result per tool call on the real Powertools idempotency layer over (mocked) DynamoDB."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from agentwire_contracts.consumer import StepError
from agentwire_tools.builtins import builtin_tools
from agentwire_tools.execution import ToolOutcome, execute
from agentwire_tools.idempotency import PowertoolsCallOnce
from agentwire_tools.manifest import MANIFEST
from agentwire_tools.registry import Tool, ToolRegistry, ToolUnavailable
from agentwire_tools.service import CallConflict, CallKey, CallRecord, CallStoreUnavailable
from moto import mock_aws
from tools_testkit import EchoInput, FakeLambdaContext, invocation_request, permissive_service

# Most tests here run outside a Lambda invocation on purpose; Powertools warns about that each time.
pytestmark = pytest.mark.filterwarnings("ignore:Couldn't determine the remaining time left")

TABLE = MANIFEST.table("idempotency")
TABLE_NAME = MANIFEST.table_name(TABLE)


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        # Built from the manifest, like the local runtime and the CDK stack do.
        client.create_table(
            TableName=TABLE_NAME,
            KeySchema=[{"AttributeName": TABLE.partition_key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": TABLE.partition_key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.update_time_to_live(
            TableName=TABLE_NAME,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TABLE.ttl_attribute},
        )
        yield client


def items(client: Any) -> list[dict[str, Any]]:
    return client.scan(TableName=TABLE_NAME)["Items"]


def test_tools_idempotency_same_call_twice_runs_the_tool_once(
    dynamodb: Any, counting_echo: tuple[Tool[EchoInput], list[str]]
) -> None:
    tool, runs = counting_echo
    service = permissive_service(ToolRegistry([tool]), PowertoolsCallOnce.on_dynamodb(TABLE_NAME))
    request = invocation_request("echo", {"text": "hello"}, call_id="toolu_1")

    first = service.invoke(request)
    second = service.invoke(request)

    assert runs == ["hello"]
    assert first == second
    assert first.result.content == "echo: hello"
    [record] = items(dynamodb)
    assert record["status"]["S"] == "COMPLETED"
    assert record["id"]["S"].startswith("tools.invocation#")
    # the TTL attribute the manifest's table expires on, about a day ahead by default
    assert 23 * 3600 < int(record["expiration"]["N"]) - time.time() <= 24 * 3600


def test_tools_idempotency_replay_is_marked_and_a_new_call_id_runs_again(
    dynamodb: Any, counting_echo: tuple[Tool[EchoInput], list[str]]
) -> None:
    tool, runs = counting_echo
    call_once = PowertoolsCallOnce.on_dynamodb(TABLE_NAME)
    registry = ToolRegistry([tool])
    key = CallKey("tenant-a", "run-1", "c1")
    record = CallRecord("echo", {"text": "x"})

    fresh = call_once(key, record, lambda: execute(registry, "echo", {"text": "x"}))
    replayed = call_once(key, record, lambda: execute(registry, "echo", {"text": "x"}))
    other = call_once(CallKey("tenant-a", "run-1", "c2"), record, lambda: execute(registry, "echo", {"text": "x"}))
    other_tenant = call_once(
        CallKey("tenant-b", "run-1", "c1"), record, lambda: execute(registry, "echo", {"text": "x"})
    )

    assert runs == ["x", "x", "x"]
    assert (fresh.replayed, replayed.replayed, other.replayed, other_tenant.replayed) == (False, True, False, False)
    assert replayed.model_copy(update={"replayed": False}) == fresh
    assert len(items(dynamodb)) == 3


def test_tools_idempotency_error_results_are_replayed_too(dynamodb: Any) -> None:
    service = permissive_service(ToolRegistry(builtin_tools()), PowertoolsCallOnce.on_dynamodb(TABLE_NAME))
    request = invocation_request("calculator", {"expression": "1/0"})
    first, second = service.invoke(request), service.invoke(request)
    assert first.result.is_error and first.result == second.result
    assert first.duration_ms == second.duration_ms  # the stored outcome, not a second run


def test_tools_idempotency_same_id_with_different_input_is_refused(dynamodb: Any) -> None:
    call_once = PowertoolsCallOnce.on_dynamodb(TABLE_NAME)
    registry = ToolRegistry(builtin_tools())
    key = CallKey("tenant-a", "run-1", "c1")
    call_once(
        key,
        CallRecord("calculator", {"expression": "1+1"}),
        lambda: execute(registry, "calculator", {"expression": "1+1"}),
    )
    with pytest.raises(CallConflict):
        call_once(
            key,
            CallRecord("calculator", {"expression": "2+2"}),
            lambda: execute(registry, "calculator", {"expression": "2+2"}),
        )


def test_tools_idempotency_an_unavailable_tool_is_not_remembered(dynamodb: Any) -> None:
    attempts: list[int] = []

    def recovering(call: EchoInput) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ToolUnavailable("downstream 503")
        return "ok now"

    tool = Tool(untrusted_output=False, name="recovering", description="d", input_model=EchoInput, run=recovering)
    service = permissive_service(ToolRegistry([tool]), PowertoolsCallOnce.on_dynamodb(TABLE_NAME))
    request = invocation_request("recovering", {"text": "x"})
    with pytest.raises(StepError, match="Tools.Unavailable"):
        service.invoke(request)
    assert items(dynamodb) == []  # the in-progress record was removed, so the retry may run
    assert service.invoke(request).result.content == "ok now"
    assert len(attempts) == 2


def test_tools_idempotency_in_progress_record_expires_with_the_lambda_deadline(dynamodb: Any) -> None:
    call_once = PowertoolsCallOnce.on_dynamodb(TABLE_NAME)
    call_once.register_lambda_context(FakeLambdaContext(remaining_ms=45_000))
    seen_while_running: list[dict[str, Any]] = []

    def peek() -> ToolOutcome:
        seen_while_running.extend(items(dynamodb))
        return execute(ToolRegistry(builtin_tools()), "calculator", {"expression": "3"})

    call_once(CallKey("t", "r", "c"), CallRecord("calculator", {"expression": "3"}), peek)

    [in_progress] = seen_while_running
    assert in_progress["status"]["S"] == "INPROGRESS"
    expires_in_ms = int(in_progress["in_progress_expiration"]["N"]) - time.time() * 1000
    assert 40_000 < expires_in_ms <= 45_000


def test_tools_idempotency_a_crashed_attempt_blocks_only_until_its_deadline(dynamodb: Any) -> None:
    """An attempt whose Lambda died mid-call left an INPROGRESS record: a redelivery before its
    deadline is refused as `CallInProgress` (the service answers Tools.Busy, which the run retries), one
    after it runs the call — right for calculator (read_only); a compensatable/irreversible call is
    answered Tools.OutcomeUnknown instead (test_tools_at_most_once.py)."""
    from agentwire_tools.service import CallInProgress

    registry = ToolRegistry(builtin_tools())
    key, record = CallKey("t", "r", "c"), CallRecord("calculator", {"expression": "3"})
    crashed = PowertoolsCallOnce.on_dynamodb(TABLE_NAME)
    crashed.register_lambda_context(FakeLambdaContext(remaining_ms=60_000))

    class SandboxDied(BaseException):
        """Not an Exception: Powertools does not clean up, like a real crash."""

    def die() -> ToolOutcome:
        raise SandboxDied

    with pytest.raises(SandboxDied):
        crashed(key, record, die)
    redelivery = PowertoolsCallOnce.on_dynamodb(TABLE_NAME)
    with pytest.raises(CallInProgress, match="already running"):
        redelivery(key, record, lambda: execute(registry, "calculator", {"expression": "3"}))

    # Let the crashed attempt's deadline pass.
    dynamodb.update_item(
        TableName=TABLE_NAME,
        Key={"id": items(dynamodb)[0]["id"]},
        UpdateExpression="SET in_progress_expiration = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time() * 1000) - 1)}},
    )
    assert redelivery(key, record, lambda: execute(registry, "calculator", {"expression": "3"})).content == "3"


def test_tools_idempotency_a_missing_table_is_store_unavailable() -> None:
    with mock_aws():
        call_once = PowertoolsCallOnce.on_dynamodb("no-such-table")
        with pytest.raises(CallStoreUnavailable):
            call_once(CallKey("t", "r", "c"), CallRecord("calculator", {}), lambda: pytest.fail("must not run"))
