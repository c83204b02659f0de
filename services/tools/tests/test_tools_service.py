"""The two steps as functions of typed requests: catalog and invocation answers, and typed failures."""

from __future__ import annotations

import pytest
from agentwire_contracts.consumer import StepError
from agentwire_tools.builtins import builtin_tools
from agentwire_tools.execution import ToolOutcome
from agentwire_tools.registry import Tool, ToolRegistry, ToolUnavailable
from agentwire_tools.service import CallConflict, CallKey, CallStoreUnavailable, ToolsService
from tools_testkit import EchoInput, InMemoryCallOnce, catalog_request, invocation_request, permissive_service


def service(*extra: Tool[EchoInput], call_once: InMemoryCallOnce | None = None) -> ToolsService:
    registry = ToolRegistry([*builtin_tools(), *extra])
    return permissive_service(registry, call_once)


def test_tools_service_describes_the_requested_tools_in_name_order() -> None:
    ready = service().describe(catalog_request(["current_time", "calculator"]))
    assert [tool.name for tool in ready.tools] == ["calculator", "current_time"]
    assert ready.session_id == "session-1"


def test_tools_service_empty_catalog_is_fine() -> None:
    assert service().describe(catalog_request([])).tools == []


def test_tools_service_unknown_tool_in_the_catalog_is_a_typed_failure() -> None:
    with pytest.raises(StepError) as raised:
        service().describe(catalog_request(["calculator", "teleport"]))
    assert raised.value.code == "Tools.UnknownTool"
    assert raised.value.retryable is False
    assert "teleport" in raised.value.message


def test_tools_service_answers_a_call_with_a_tool_result_block() -> None:
    completed = service().invoke(invocation_request("calculator", {"expression": "2 ** 8"}, call_id="toolu_9", step=3))
    assert completed.tool_name == "calculator"
    assert completed.step == 3
    assert completed.result.type == "tool_result"
    assert completed.result.tool_use_id == "toolu_9"
    assert completed.result.content == "256"
    assert completed.result.is_error is False


def test_tools_service_an_unknown_tool_call_is_an_error_result_not_a_failure() -> None:
    completed = service().invoke(invocation_request("teleport", {"to": "Mars"}))
    assert completed.result.is_error
    assert completed.result.content.startswith("Unknown tool 'teleport'")


def test_tools_service_infrastructure_trouble_is_tools_unavailable_and_retryable() -> None:
    def down(call: EchoInput) -> str:
        raise ToolUnavailable("database unreachable")

    flaky = Tool(untrusted_output=False, name="flaky", description="d", input_model=EchoInput, run=down)
    with pytest.raises(StepError) as raised:
        service(flaky).invoke(invocation_request("flaky", {"text": "x"}))
    assert raised.value.code == "Tools.Unavailable"
    assert raised.value.retryable is True


def test_tools_service_keys_calls_by_tenant_run_and_call_id(counting_echo: tuple[Tool[EchoInput], list[str]]) -> None:
    tool, runs = counting_echo
    call_once = InMemoryCallOnce()
    tools = service(tool, call_once=call_once)
    first = tools.invoke(invocation_request("echo", {"text": "a"}, call_id="c1"))
    again = tools.invoke(invocation_request("echo", {"text": "a"}, call_id="c1"))
    other_run = tools.invoke(invocation_request("echo", {"text": "a"}, call_id="c1", run_id="run-0002"))
    assert runs == ["a", "a"]
    assert first == again
    assert other_run.result.content == first.result.content
    assert set(call_once.outcomes) == {
        CallKey(tenant_id="tenant-a", run_id="run-0001", tool_call_id="c1"),
        CallKey(tenant_id="tenant-a", run_id="run-0002", tool_call_id="c1"),
    }


class FailingCallOnce:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def __call__(self, key: object, record: object, call: object) -> ToolOutcome:
        raise self.error


def test_tools_service_an_unreachable_idempotency_store_is_tools_unavailable() -> None:
    tools = permissive_service(ToolRegistry(builtin_tools()), FailingCallOnce(CallStoreUnavailable("timeout")))
    with pytest.raises(StepError) as raised:
        tools.invoke(invocation_request("calculator", {"expression": "1"}))
    assert (raised.value.code, raised.value.retryable) == ("Tools.Unavailable", True)


def test_tools_service_a_reused_call_id_with_other_input_is_a_conflict() -> None:
    tools = permissive_service(ToolRegistry(builtin_tools()), FailingCallOnce(CallConflict("already made")))
    with pytest.raises(StepError) as raised:
        tools.invoke(invocation_request("calculator", {"expression": "1"}))
    assert (raised.value.code, raised.value.retryable) == ("Tools.ConflictingCall", False)


def test_tools_service_invocation_deadline_reads_the_lambda_context() -> None:
    from agentwire_tools.dependencies import InvocationDeadline
    from tools_testkit import FakeLambdaContext

    deadline = InvocationDeadline(reserve_s=5.0)
    assert deadline() is None  # outside Lambda: only the tools' own timeouts
    deadline.register_lambda_context(FakeLambdaContext(remaining_ms=8_000))
    assert deadline() == 3.0


def test_tools_service_a_call_already_running_is_busy_and_retryable() -> None:
    from agentwire_tools.service import CallInProgress

    def in_progress(key: CallKey, record: object, call: object) -> ToolOutcome:
        raise CallInProgress("tool call 'toolu_1' of run 'run-1' is already running")

    busy = permissive_service(ToolRegistry(builtin_tools()), in_progress)
    with pytest.raises(StepError) as raised:
        busy.invoke(invocation_request("calculator", {"expression": "1"}))
    assert (raised.value.code, raised.value.retryable) == ("Tools.Busy", True)
    assert "already running" in raised.value.message
