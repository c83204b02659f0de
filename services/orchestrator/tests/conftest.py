"""Shared setup of the orchestrator's unit tests: fake AWS credentials, no tracing, shared fakes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set before any agentwire_orchestrator module (and boto3 client) is imported.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "agentwire")

# Tests are imported with --import-mode=importlib (no packages): make the shared fakes importable.
sys.path.insert(0, str(Path(__file__).parent))

from orchestrator_testkit import FakePublisher, FakeStepFunctions  # noqa: E402


@pytest.fixture
def sfn() -> FakeStepFunctions:
    return FakeStepFunctions()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def installed(sfn: FakeStepFunctions, publisher: FakePublisher) -> Iterator[None]:
    """The handlers' dependencies replaced by the fakes for one test."""
    from agentwire_orchestrator.agents import builtin_catalog
    from agentwire_orchestrator.dependencies import Dependencies, set_dependencies

    set_dependencies(
        Dependencies(stepfunctions=sfn, publisher=publisher, agents=builtin_catalog(), max_task_output_bytes=4096)
    )
    yield
    set_dependencies(None)
