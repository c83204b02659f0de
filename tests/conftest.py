"""Fixtures of the cross-service tests: ONE local stack (emulator + five workers + gateway HTTP) per
session, on free loopback ports in a temporary directory, with the offline model provider.

Starting the emulator and importing five services costs seconds, so every integration and e2e test
shares it; tests isolate themselves by tenant, session and run ids instead of by stack.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from agentwire_contracts.publish import EventPublisher
from agentwire_infra.local.client import GatewayClient, wait_until
from agentwire_infra.local.stack import LocalStack, StackSettings

#: Stacks the tests start poll like `agentwire up` does (4 pollers per consumer; workers read it from the
#: environment they inherit), so the suite exercises concurrent and duplicate deliveries. Invocations of
#: a worker's handlers are serialized as in one Lambda sandbox (worker.INVOCATION_LOCK).
os.environ.setdefault("AGENTWIRE_WORKER_CONCURRENCY", "4")

#: Short, so the poison-message test sees maxReceiveCount deliveries within seconds.
TEST_VISIBILITY_TIMEOUT_S = 2

#: The xdist group of every test on the shared stack, and of the CDK tests (one synthesis per session).
STACK_GROUP = "stack"
INFRA_GROUP = "infra"
#: The session fixtures that start (or stand on) the shared stack.
STACK_FIXTURES = frozenset({"local_stack", "api", "other_tenant_api", "aws"})
TESTS_DIR = Path(__file__).parent


def xdist_group_of(item: pytest.Item) -> str:
    """`stack` for the tests on the shared stack (tests/ only: the services' kits reuse fixture names such
    as `aws`), `infra` for tests/infra, otherwise the test's module."""
    if item.path.is_relative_to(TESTS_DIR):
        if STACK_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            return STACK_GROUP
        if item.path.is_relative_to(TESTS_DIR / "infra"):
            return INFRA_GROUP
    return item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test an xdist group (`pytest -n 2 --dist loadgroup` keeps a group on one worker).

    A session or module fixture is set up once per worker that runs a test needing it, and several
    modules start their own stack with a scripted model whose responses are consumed in order: spread
    over two workers, each worker got its own stack and its own copy of the script, and tests got the
    wrong responses. So: every test on the shared stack runs on the worker that owns the stack, the CDK
    tests on the worker that synthesized the app, and every other module's tests on one worker, in file
    order. A test that names its own group keeps it.
    """
    loadgroup = bool(getattr(config.option, "loadgroup", False))
    for item in items:
        marker = item.get_closest_marker("xdist_group")
        if marker is not None:
            group = str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))
        else:
            group = xdist_group_of(item)
            item.add_marker(pytest.mark.xdist_group(group))
        if loadgroup:
            set_group_suffix(item, group)


def set_group_suffix(item: pytest.Item, group: str) -> None:
    """What xdist's loadgroup does with the marker: the scheduler groups by what follows the last "@" of
    the nodeid. xdist 3.8 sets `item._nodeid`, which pytest 9 no longer reads (the nodeid comes from
    `item._id`), so without this `--dist loadgroup` silently spread every test on its own."""
    nodeid = f"{item.nodeid}@{group}"
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest < 9 reads `_nodeid`, and xdist's own hook sets it
        return
    if isinstance(getattr(item, "_id", None), NodeId):
        item._id = NodeId.parse(nodeid)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    workdir: Path = tmp_path_factory.mktemp("agentwire-stack")
    settings = StackSettings(
        workdir=workdir,
        llm_provider="offline",
        visibility_timeout_s=TEST_VISIBILITY_TIMEOUT_S,
        dev_tenant="acme",
        write_local_json=False,
    )
    with LocalStack(settings) as stack:
        yield stack
        assert not stack.crashes, f"workers died during the session: {stack.crashes}"


@pytest.fixture(scope="session")
def api(local_stack: LocalStack) -> Iterator[GatewayClient]:
    """The gateway, authenticated as the stack's dev tenant."""
    with GatewayClient(local_stack.gateway_url, local_stack.api_key) as client:
        yield client


@pytest.fixture(scope="session")
def other_tenant_api(local_stack: LocalStack) -> Iterator[GatewayClient]:
    with GatewayClient(local_stack.gateway_url, local_stack.create_api_key("globex")) as client:
        yield client


@pytest.fixture(scope="session")
def aws(local_stack: LocalStack) -> Any:
    """boto3 clients on the stack's emulator: `aws("sqs")`."""
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = local_stack.client(service)
        return clients[service]

    return client


@pytest.fixture(scope="session")
def bus(local_stack: LocalStack, aws: Any) -> EventPublisher:
    """Publishes contract events on the shared stack's bus, as any producer would."""
    assert local_stack.topology is not None
    return EventPublisher(client=aws("events"), bus_name=local_stack.topology.bus_name)


AnswersOf = Callable[..., list[dict[str, Any]]]


@contextmanager
def captured_events(local_stack: LocalStack, aws: Any, detail_types: Sequence[str]) -> Iterator[AnswersOf]:
    """A queue of this test's own behind a rule for `detail_types` on the stack's bus; yields
    `get(run_id, count=1)`, which waits until `count` of the run's events arrived and returns them all."""
    assert local_stack.topology is not None
    name = f"capture-{uuid.uuid4().hex[:8]}"
    sqs, events, bus_name = aws("sqs"), aws("events"), local_stack.topology.bus_name
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName=bus_name, EventPattern=json.dumps({"detail-type": sorted(detail_types)}))
    events.put_targets(Rule=name, EventBusName=bus_name, Targets=[{"Id": "capture", "Arn": queue_arn}])
    seen: list[dict[str, Any]] = []

    def get(run_id: str, count: int = 1) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
                seen.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            mine = [e for e in seen if e["detail"]["metadata"].get("run_id") == run_id]
            return mine if len(mine) >= count else None

        found: list[dict[str, Any]] = wait_until(ready, timeout_s=30, what=f"{count} event(s) of {run_id}")
        return found

    try:
        yield get
    finally:
        events.remove_targets(Rule=name, EventBusName=bus_name, Ids=["capture"])
        events.delete_rule(Name=name, EventBusName=bus_name)
        sqs.delete_queue(QueueUrl=queue_url)


@pytest.fixture(scope="session")
def capture_events(local_stack: LocalStack, aws: Any) -> Callable[[Sequence[str]], Any]:
    """`with capture_events([detail types]) as get:` — see `captured_events`."""
    return lambda detail_types: captured_events(local_stack, aws, detail_types)
