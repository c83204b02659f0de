"""At most once for calls that change the world, on the real Powertools idempotency layer and the real
DynamoDB adapters (moto in-process): a worker that dies mid-call leaves an in-progress claim and no
result; once the claim lapses, a redelivery re-runs a read_only/idempotent tool but answers
`Tools.OutcomeUnknown` (not retryable) for a compensatable/irreversible one instead of acting again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from agentwire_contracts.consumer import StepError
from agentwire_contracts.content import canonical_args_hash
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.tool import ApprovalProof, ToolInvocationRequested
from agentwire_tools.adapters import DynamoAttemptLog, DynamoRunLease
from agentwire_tools.attempts import InMemoryAttemptLog
from agentwire_tools.audit import AuditRecord, InMemoryAuditLog
from agentwire_tools.idempotency import PowertoolsCallOnce
from agentwire_tools.manifest import MANIFEST
from agentwire_tools.registry import SideEffect, Tool, ToolRegistry, ToolUnavailable
from agentwire_tools.service import ToolsService
from moto import mock_aws
from tools_testkit import EchoInput, FakeLambdaContext, invocation_request, permissive_service

IDEMPOTENCY = MANIFEST.table_name(MANIFEST.table("idempotency"))
STATE = MANIFEST.table_name(MANIFEST.table("state"))
ARGS = {"text": "refund ord_1"}


class SandboxDied(BaseException):
    """Not an Exception: nothing cleans up after it (Powertools keeps the claim), like a killed worker."""


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=IDEMPOTENCY,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.create_table(
            TableName=STATE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def crashing_once(side_effect: SideEffect) -> tuple[Tool[EchoInput], list[str]]:
    """A tool whose first run dies after it acted (the worker was killed mid-call); later runs finish."""
    runs: list[str] = []

    def run(call: EchoInput) -> str:
        runs.append(call.text)
        if len(runs) == 1:
            raise SandboxDied
        return f"done: {call.text}"

    tool = Tool(
        untrusted_output=False,
        name="act",
        description="Acts on the world.",
        input_model=EchoInput,
        run=run,
        side_effect=side_effect,
    )
    return tool, runs


def request_for(side_effect: SideEffect) -> Event[ToolInvocationRequested]:
    # Irreversible tools always need an approval; give the one for these arguments.
    proof = ApprovalProof(approval_id="apr_1", args_hash=canonical_args_hash(ARGS), decided_by="bob")
    return invocation_request(
        "act", ARGS, call_id="toolu_x", approval=proof if side_effect is SideEffect.IRREVERSIBLE else None
    )


def worker(tool: Tool[Any], **kwargs: Any) -> ToolsService:
    """One worker's service, wired like `build_dependencies` (Powertools, run lease, attempt log)."""
    call_once = PowertoolsCallOnce.on_dynamodb(IDEMPOTENCY)
    call_once.register_lambda_context(FakeLambdaContext(remaining_ms=60_000))
    kwargs.setdefault("attempts", DynamoAttemptLog(STATE))
    return permissive_service(
        ToolRegistry([tool]), call_once, lease=DynamoRunLease(STATE), lease_wait_s=0, lease_margin_s=0, **kwargs
    )


def lapse_the_claim(client: Any) -> None:
    """The fake clock: move the dead attempt's in-progress deadline into the past."""
    [record] = client.scan(TableName=IDEMPOTENCY)["Items"]
    assert record["status"]["S"] == "INPROGRESS"  # no result was recorded
    client.update_item(
        TableName=IDEMPOTENCY,
        Key={"id": record["id"]},
        UpdateExpression="SET in_progress_expiration = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time() * 1000) - 1)}},
    )


def release_the_dead_workers_lease(client: Any) -> None:
    # A killed worker never releases the run's lease; it expires on its own (not what these tests are about).
    client.delete_item(TableName=STATE, Key={"pk": {"S": "tenant-a#run#run-0001"}, "sk": {"S": "lease"}})


def crash_then_lapse(dynamodb: Any, tool: Tool[Any], request: Event[ToolInvocationRequested]) -> None:
    with pytest.raises(SandboxDied):
        worker(tool).invoke(request)
    # While the dead attempt's claim lasts, a redelivery is Tools.Busy (retried with backoff).
    with pytest.raises(StepError) as busy:
        worker(tool).invoke(request)
    assert (busy.value.code, busy.value.retryable) == ("Tools.Busy", True)
    lapse_the_claim(dynamodb)
    release_the_dead_workers_lease(dynamodb)


@pytest.mark.parametrize("side_effect", [SideEffect.COMPENSATABLE, SideEffect.IRREVERSIBLE])
def test_a_world_changing_call_whose_worker_died_is_outcome_unknown_not_run_again(
    dynamodb: Any, side_effect: SideEffect
) -> None:
    tool, runs = crashing_once(side_effect)
    request = request_for(side_effect)
    crash_then_lapse(dynamodb, tool, request)

    for _ in range(2):  # the heartbeat's second ask, then a late SQS redelivery: neither acts
        with pytest.raises(StepError) as unknown:
            worker(tool).invoke(request)
        assert (unknown.value.code, unknown.value.retryable) == ("Tools.OutcomeUnknown", False)
        assert f"{side_effect.value} action is not run again" in unknown.value.message
    assert runs == [ARGS["text"]]  # the tool acted once: the attempt that died


@pytest.mark.parametrize("side_effect", [SideEffect.READ_ONLY, SideEffect.IDEMPOTENT])
def test_a_call_safe_to_repeat_whose_worker_died_runs_again_once_its_claim_lapses(
    dynamodb: Any, side_effect: SideEffect
) -> None:
    tool, runs = crashing_once(side_effect)
    request = request_for(side_effect)
    crash_then_lapse(dynamodb, tool, request)

    answer = worker(tool).invoke(request)
    assert answer.result.content == "done: refund ord_1" and not answer.result.is_error
    assert runs == [ARGS["text"], ARGS["text"]]
    # ... and once it has a result, that result is replayed: no third run.
    assert worker(tool).invoke(request).result == answer.result
    assert len(runs) == 2


class DiesWhileAuditing(InMemoryAuditLog):
    def record(self, entry: AuditRecord) -> None:
        raise SandboxDied


def test_a_world_changing_call_whose_worker_died_before_the_tool_began_runs_once_its_claim_lapses(
    dynamodb: Any,
) -> None:
    """Only an attempt that reached the tool counts: one that died before (here: writing its audit record)
    cannot have acted, so the call runs after all."""
    runs: list[str] = []
    tool = Tool(
        untrusted_output=False,
        name="act",
        description="Acts on the world.",
        input_model=EchoInput,
        run=lambda call: runs.append(call.text) or "done",
        side_effect=SideEffect.COMPENSATABLE,
    )
    request = request_for(SideEffect.COMPENSATABLE)
    with pytest.raises(SandboxDied):
        worker(tool, audit=DiesWhileAuditing()).invoke(request)
    lapse_the_claim(dynamodb)
    assert worker(tool).invoke(request).result.content == "done"
    assert runs == [ARGS["text"]]


@pytest.mark.parametrize("side_effect", [SideEffect.COMPENSATABLE, SideEffect.IRREVERSIBLE])
def test_a_world_changing_tool_that_fails_on_its_infrastructure_is_outcome_unknown_and_never_rerun(
    dynamodb: Any, side_effect: SideEffect
) -> None:
    runs: list[str] = []

    def half_done(call: EchoInput) -> str:
        runs.append(call.text)
        raise ToolUnavailable("payment API timed out after the request was sent")

    tool = Tool(
        untrusted_output=False,
        name="act",
        description="Acts on the world.",
        input_model=EchoInput,
        run=half_done,
        side_effect=side_effect,
    )
    request = request_for(side_effect)
    with pytest.raises(StepError) as first:
        worker(tool).invoke(request)
    assert (first.value.code, first.value.retryable) == ("Tools.OutcomeUnknown", False)
    assert "payment API timed out" in first.value.message
    # Powertools forgot the failed attempt (no result to store); the attempt log did not.
    with pytest.raises(StepError) as again:
        worker(tool).invoke(request)
    assert again.value.code == "Tools.OutcomeUnknown"
    assert runs == [ARGS["text"]]


def test_an_unreachable_attempt_log_runs_nothing_and_is_retryable(dynamodb: Any) -> None:
    tool, runs = crashing_once(SideEffect.COMPENSATABLE)
    with pytest.raises(StepError) as raised:
        worker(tool, attempts=DynamoAttemptLog("no-such-table")).invoke(request_for(SideEffect.COMPENSATABLE))
    assert (raised.value.code, raised.value.retryable) == ("Tools.Unavailable", True)
    assert runs == []


def test_the_attempt_log_marks_each_call_once() -> None:
    log = InMemoryAttemptLog()
    assert log.begin("t", "r", "c1") is True
    assert log.begin("t", "r", "c1") is False
    assert log.begin("t", "r", "c2") is True
    assert log.begin("other-tenant", "r", "c1") is True
