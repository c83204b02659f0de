"""Memory unit tests: fake AWS credentials, a region, tracing off, and an in-process moto table."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
from agentwire_contracts.agents import AgentCatalog, AgentDefinition, ApprovalPolicy
from moto import mock_aws

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SECURITY_TOKEN"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "agentwire"
os.environ.setdefault("MEMORY_TABLE_NAME", "agentwire-memory-main")

TABLE_NAME = "agentwire-memory-main"

#: The agents of the unit tests' deployment: `memo@1` offers the memory tools, `memo@2` (the latest) no longer
#: does, `careful` offers remember only with a human approval. A call naming no agent is judged as the
#: packaged default agent, which offers neither.
MEMORY_AGENTS = AgentCatalog(
    [
        AgentDefinition(name="memo", version="1", model="offline", tools=("forget", "remember")),
        AgentDefinition(name="memo", version="2", model="offline", tools=("calculator",)),
        AgentDefinition(
            name="careful",
            model="offline",
            tools=("forget", "remember"),
            approval=ApprovalPolicy(require_for=("remember",)),
        ),
        AgentDefinition(name="assistant", model="offline", tools=("calculator", "current_time")),
    ]
)


def create_table(client: Any, name: str = TABLE_NAME) -> None:
    """The table as the manifest describes it: string keys pk/sk, on demand, TTL on expires_at."""
    client.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(aws: None) -> Any:
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table(client)
    return client


class FakePublisher:
    """In-memory stand-in for EventPublisher: keeps every publish call, optionally fails the next ones."""

    def __init__(self) -> None:
        self.calls: list[list[Any]] = []
        self.fail_next = 0

    def publish(self, events: Sequence[Any]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("bus unavailable")
        self.calls.append(list(events))

    @property
    def events(self) -> list[Any]:
        return [event for call in self.calls for event in call]


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()
