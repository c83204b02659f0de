"""Only read_only calls run in parallel with each other: a call that changes the world holds its run's
lease (the `state` table, DynamoDB adapter on moto in-process) while it runs; another such call of the
same run waits for it, then is refused as `Tools.Busy` (nothing ran); read_only calls never contend."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from agentwire_contracts.consumer import StepError
from agentwire_tools.adapters import DynamoRunLease
from agentwire_tools.manifest import MANIFEST
from agentwire_tools.registry import SideEffect, Tool, ToolRegistry
from agentwire_tools.service import ToolsService
from moto import mock_aws
from tools_testkit import RUN_ID, TENANT, EchoInput, invocation_request, permissive_service

STATE = MANIFEST.table_name(MANIFEST.table("state"))


@pytest.fixture
def lease() -> Iterator[DynamoRunLease]:
    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName=STATE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DynamoRunLease(STATE)


class Gate:
    """Tools that record when they run; `blocking` ones wait for `release`."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.runs: list[str] = []

    def tool(self, name: str, side_effect: SideEffect, *, blocking: bool = False) -> Tool[EchoInput]:
        def run(call: EchoInput) -> str:
            self.runs.append(name)
            if blocking:
                self.started.set()
                assert self.release.wait(10)
            return f"{name}: {call.text}"

        return Tool(
            untrusted_output=False,
            name=name,
            description=name,
            input_model=EchoInput,
            run=run,
            side_effect=side_effect,
            timeout_s=15,
        )


def service_with(lease: DynamoRunLease, gate: Gate, *, wait_s: float = 0) -> ToolsService:
    registry = ToolRegistry(
        [
            gate.tool("slow_write", SideEffect.IDEMPOTENT, blocking=True),
            gate.tool("slow_read", SideEffect.READ_ONLY, blocking=True),
            gate.tool("write", SideEffect.COMPENSATABLE),
            gate.tool("read", SideEffect.READ_ONLY),
        ]
    )
    return permissive_service(registry, lease=lease, lease_wait_s=wait_s)


def in_background(service: ToolsService, name: str, call_id: str, run_id: str = RUN_ID) -> threading.Thread:
    thread = threading.Thread(
        target=service.invoke, args=(invocation_request(name, {"text": "x"}, call_id=call_id, run_id=run_id),)
    )
    thread.start()
    return thread


def test_a_world_changing_call_is_busy_while_another_call_of_its_run_holds_the_lease(lease: DynamoRunLease) -> None:
    gate = Gate()
    tools = service_with(lease, gate)
    first = in_background(tools, "slow_write", "toolu_1")
    try:
        assert gate.started.wait(5)
        with pytest.raises(StepError) as busy:
            tools.invoke(invocation_request("write", {"text": "x"}, call_id="toolu_2"))
        assert (busy.value.code, busy.value.retryable) == ("Tools.Busy", True)
        assert "write" not in gate.runs  # nothing ran
        # A read_only call of the same run does not contend for the lease.
        assert tools.invoke(invocation_request("read", {"text": "x"}, call_id="toolu_3")).result.content == "read: x"
        # The lease is the run's: a call of another run is not held up.
        other = tools.invoke(invocation_request("write", {"text": "x"}, call_id="toolu_2", run_id="run-other"))
        assert other.result.content == "write: x"
    finally:
        gate.release.set()
        first.join(10)
    # Released with the call: the refused call now runs.
    assert tools.invoke(invocation_request("write", {"text": "x"}, call_id="toolu_2")).result.content == "write: x"


def test_a_world_changing_call_waits_for_the_lease_and_runs_once_it_is_released(lease: DynamoRunLease) -> None:
    gate = Gate()
    tools = service_with(lease, gate, wait_s=10)
    first = in_background(tools, "slow_write", "toolu_1")
    assert gate.started.wait(5)
    threading.Timer(0.5, gate.release.set).start()
    started = time.monotonic()
    answer = tools.invoke(invocation_request("write", {"text": "x"}, call_id="toolu_2"))
    first.join(10)
    assert answer.result.content == "write: x"
    assert time.monotonic() - started >= 0.4  # it waited for the first call ...
    assert gate.runs == ["slow_write", "write"]  # ... and ran after it


def test_read_only_calls_run_in_parallel_with_each_other(lease: DynamoRunLease) -> None:
    gate = Gate()
    tools = service_with(lease, gate)
    first = in_background(tools, "slow_read", "toolu_1")
    try:
        assert gate.started.wait(5)
        assert tools.invoke(invocation_request("read", {"text": "x"}, call_id="toolu_2")).result.content == "read: x"
        # A read_only call takes no lease, so a world-changing call is not held up by it either.
        assert tools.invoke(invocation_request("write", {"text": "x"}, call_id="toolu_3")).result.content == "write: x"
    finally:
        gate.release.set()
        first.join(10)


def test_the_dynamodb_run_lease(lease: DynamoRunLease) -> None:
    assert lease.acquire(TENANT, RUN_ID, "c1", ttl_s=60)
    assert lease.acquire(TENANT, RUN_ID, "c1", ttl_s=60)  # re-acquiring one's own lease
    assert not lease.acquire(TENANT, RUN_ID, "c2", ttl_s=60)
    assert lease.acquire(TENANT, "another-run", "c2", ttl_s=60)
    assert lease.acquire("another-tenant", RUN_ID, "c2", ttl_s=60)
    lease.release(TENANT, RUN_ID, "c2")  # not the holder: nothing happens
    assert not lease.acquire(TENANT, RUN_ID, "c2", ttl_s=60)
    lease.release(TENANT, RUN_ID, "c1")
    assert lease.acquire(TENANT, RUN_ID, "c2", ttl_s=-5)  # held, but already expired (a crashed holder)
    assert lease.acquire(TENANT, RUN_ID, "c3", ttl_s=60)  # taken over
