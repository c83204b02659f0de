"""Gateway test fixtures: moto (in-process) DynamoDB, a fake bus publisher, API Gateway v2 events."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import boto3
import pytest
from moto import mock_aws

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "agentwire"
os.environ["POWERTOOLS_DEV"] = "false"
os.environ["GATEWAY_TABLE_NAME"] = "test-gateway-main"
os.environ["AGENTWIRE_EVENT_BUS_NAME"] = "test-bus"

from agentwire_contracts.envelope import Event  # noqa: E402
from agentwire_contracts.publish import PublishError  # noqa: E402
from agentwire_contracts.testing import LambdaContextStub  # noqa: E402
from agentwire_gateway import admin  # noqa: E402
from agentwire_gateway.adapters.dynamodb import (  # noqa: E402
    DynamoApiKeyStore,
    DynamoIdempotencyStore,
    DynamoRateCounter,
    DynamoReadModel,
    DynamoTable,
)
from agentwire_gateway.dependencies import Dependencies, set_dependencies  # noqa: E402
from agentwire_gateway.guards import IdempotencyGuard, RateLimiter  # noqa: E402
from agentwire_gateway.handler import http_handler  # noqa: E402
from agentwire_gateway.service import Authenticator, Gateway, Projector  # noqa: E402

TABLE_NAME = os.environ["GATEWAY_TABLE_NAME"]


@dataclass
class FakePublisher:
    """The bus, in memory: what the gateway published, in order. `fail` makes the next publish fail."""

    events: list[Event[Any]] = field(default_factory=list)
    fail: bool = False

    def publish(self, events: Sequence[Event[Any]]) -> None:
        if self.fail:
            raise PublishError([{"detail_type": e.detail_type, "ErrorCode": "InternalFailure"} for e in events])
        self.events.extend(events)

    def publish_one(self, event: Event[Any]) -> None:
        self.publish([event])


FakeLambdaContext = partial(LambdaContextStub, "agentwire-gateway-http", memory_limit_in_mb=1024, timeout_s=29)


def create_table(client: Any, name: str = TABLE_NAME) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client)
        yield client


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def read_model(dynamodb: Any) -> DynamoReadModel:
    return DynamoReadModel(DynamoTable(dynamodb, TABLE_NAME))


@pytest.fixture
def deps(dynamodb: Any, read_model: DynamoReadModel, publisher: FakePublisher) -> Iterator[Dependencies]:
    table = DynamoTable(dynamodb, TABLE_NAME)
    keys = DynamoApiKeyStore(table)
    dependencies = Dependencies(
        authenticator=Authenticator(keys=keys),
        gateway=Gateway(read_model=read_model, publisher=publisher),
        projector=Projector(read_model=read_model, publisher=publisher),
        idempotency=IdempotencyGuard(DynamoIdempotencyStore(table)),
        rate_limiter=RateLimiter(DynamoRateCounter(table), default_per_minute=1000),
        keys=keys,
    )
    set_dependencies(dependencies)
    yield dependencies
    set_dependencies(None)


@pytest.fixture
def key_a(dynamodb: Any) -> str:
    return admin.create_api_key("tenant-a", table_name=TABLE_NAME, dynamodb_client=dynamodb)


@pytest.fixture
def key_b(dynamodb: Any) -> str:
    return admin.create_api_key("tenant-b", table_name=TABLE_NAME, dynamodb_client=dynamodb)


def http_event(
    method: str,
    path: str,
    *,
    api_key: str | None = None,
    json_body: Any = None,
    raw_body: str | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
    base64_body: bool = False,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload-2.0 event, as the local runtime and AWS deliver it."""
    all_headers = {"host": "api.agentwire.test", "user-agent": "pytest"}
    body = raw_body
    if json_body is not None:
        body = json.dumps(json_body)
        all_headers["content-type"] = "application/json"
    if api_key is not None:
        all_headers["authorization"] = f"Bearer {api_key}"
    all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
    if body is not None and base64_body:
        body = base64.b64encode(body.encode()).decode()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.agentwire.test",
            "domainPrefix": "api",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "pytest",
            },
            "requestId": "req-http-0001",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000,
        },
        "body": body,
        "isBase64Encoded": base64_body,
        **({"queryStringParameters": dict(parse_qsl(query, keep_blank_values=True))} if query else {}),
    }


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: Any

    def problem(self, status: int) -> dict[str, Any]:
        """Assert this is an RFC 9457 problem with `status`; return its body."""
        assert self.status == status, (self.status, self.body)
        assert self.header("content-type") == "application/problem+json"
        assert set(self.body) >= {"type", "title", "status", "detail", "instance"}
        assert self.body["status"] == status
        return self.body

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


def call(event: dict[str, Any]) -> HttpResult:
    response = http_handler(event, FakeLambdaContext())
    raw = response.get("body") or ""
    try:
        body = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        body = raw
    return HttpResult(status=response["statusCode"], headers=response.get("headers") or {}, body=body)


class HttpClient:
    """Calls `http_handler` with events built by `http_event`."""

    def request(self, method: str, path: str, **options: Any) -> HttpResult:
        return call(http_event(method, path, **options))

    def get(self, path: str, **options: Any) -> HttpResult:
        return self.request("GET", path, **options)

    def post(self, path: str, **options: Any) -> HttpResult:
        return self.request("POST", path, **options)


@pytest.fixture
def http(deps: Dependencies) -> HttpClient:
    return HttpClient()
