"""Shared setup of the tools service's unit tests: fake AWS credentials, no tracing, and fixtures."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set before any agentwire_tools module (and boto3 client) is imported.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SECURITY_TOKEN", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("TOOLS_IDEMPOTENCY_TABLE_NAME", "agentwire-tools-idempotency")
os.environ.setdefault("TOOLS_AUDIT_TABLE_NAME", "agentwire-tools-audit")
os.environ.setdefault("TOOLS_STATE_TABLE_NAME", "agentwire-tools-state")

# The repo imports tests with --import-mode=importlib (no packages), so the shared fakes module is
# made importable by path; its name is unique across the repo.
sys.path.insert(0, str(Path(__file__).parent))

from agentwire_contracts.testing import LambdaContextStub  # noqa: E402
from agentwire_tools.registry import Tool  # noqa: E402
from tools_testkit import EchoInput, FakeLambdaContext, SlowInput  # noqa: E402


@pytest.fixture
def counting_echo() -> tuple[Tool[EchoInput], list[str]]:
    """A tool that records each time its body runs."""
    runs: list[str] = []

    def run(call: EchoInput) -> str:
        runs.append(call.text)
        return f"echo: {call.text}"

    return Tool(untrusted_output=False, name="echo", description="Echo the text.", input_model=EchoInput, run=run), runs


@pytest.fixture
def slow_tool() -> Iterator[Tool[SlowInput]]:
    """Waits until released (or its input's seconds pass), with a 0.2 s deadline."""
    release = threading.Event()

    def run(call: SlowInput) -> str:
        release.wait(call.seconds)
        return "finally done"

    yield Tool(
        untrusted_output=False,
        name="slow",
        description="Deliberately slow.",
        input_model=SlowInput,
        run=run,
        timeout_s=0.2,
    )
    release.set()  # let the abandoned worker thread finish


@pytest.fixture
def lambda_context() -> LambdaContextStub:
    return FakeLambdaContext()
