"""Fixtures of the llm service's unit tests: a fake AWS environment and moto tables."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

# The handler's Tracer is built at import, before any fixture runs: tracing must be off by then.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
# Tests import their builders from llm_testkit (a unique module name), next to this file.
sys.path.insert(0, str(Path(__file__).parent))

from agentwire_llm.dependencies import set_dependencies  # noqa: E402
from agentwire_llm.settings import get_settings  # noqa: E402
from llm_testkit import IDEMPOTENCY_TABLE, STATE_TABLE, create_tables  # noqa: E402


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and region, no tracing, and settings/dependencies rebuilt for every test."""
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_DEV": "false",
        "LLM_STATE_TABLE_NAME": STATE_TABLE,
        "LLM_IDEMPOTENCY_TABLE_NAME": IDEMPOTENCY_TABLE,
        "AGENTWIRE_EVENT_BUS_NAME": "test-bus",
    }.items():
        monkeypatch.setenv(name, value)
    unset = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "ANTHROPIC_API_KEY", "AGENTWIRE_LLM_PROVIDER", "AGENTWIRE_LLM_SCRIPT")
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    set_dependencies(None)
    yield
    get_settings.cache_clear()
    set_dependencies(None)


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    """An in-process moto DynamoDB with the llm tables created."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client)
        yield client
