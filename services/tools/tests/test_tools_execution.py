"""Every way a call can go wrong becomes an error result the model can read, except infrastructure."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from agentwire_contracts import telemetry
from agentwire_tools.builtins import builtin_tools
from agentwire_tools.execution import MESSAGE_WITHHELD, CallUnavailable, Outcome, execute, truncate
from agentwire_tools.registry import SideEffect, Tool, ToolError, ToolRegistry, ToolUnavailable
from pydantic import BaseModel, Field
from tools_testkit import EchoInput, SlowInput


def registry_with(*tools: Tool[Any]) -> ToolRegistry:
    return ToolRegistry([*builtin_tools(), *tools])


def test_tools_execution_runs_a_valid_call() -> None:
    outcome = execute(registry_with(), "calculator", {"expression": "6 * 7"})
    assert outcome.content == "42"
    assert outcome.is_error is False
    assert outcome.outcome is Outcome.OK
    assert outcome.duration_ms >= 0


def test_tools_execution_reports_a_missing_field_as_an_error_result() -> None:
    outcome = execute(registry_with(), "calculator", {"expr": "1 + 1"})
    assert outcome.is_error
    assert outcome.outcome is Outcome.INVALID_INPUT
    assert outcome.content.startswith("Invalid input for tool calculator:")
    assert "expression: Field required" in outcome.content
    # the model is told what the tool expects, so it can fix the call
    assert '"expression"' in outcome.content


def test_tools_execution_reports_a_wrong_type_and_an_unexpected_field() -> None:
    outcome = execute(registry_with(), "current_time", {"timezone": 5, "locale": "fr"})
    assert outcome.is_error and outcome.outcome is Outcome.INVALID_INPUT
    assert "timezone: Input should be a valid string" in outcome.content
    assert "locale: Extra inputs are not permitted" in outcome.content


def test_tools_execution_never_echoes_the_invalid_input_value() -> None:
    secret = "sk-live-" + "x" * 600  # too long, and must not be copied into the result or logs
    outcome = execute(registry_with(), "calculator", {"expression": secret})
    assert outcome.is_error
    assert secret not in outcome.content


def test_tools_execution_reports_an_unknown_tool_with_the_available_ones() -> None:
    outcome = execute(registry_with(), "shell", {"cmd": "rm -rf /"})
    assert outcome.is_error and outcome.outcome is Outcome.UNKNOWN_TOOL
    expected = "Unknown tool 'shell'. Available tools: calculator, current_time, http_fetch, send_notification."
    assert outcome.content == expected


def test_tools_execution_turns_a_tool_error_into_its_message() -> None:
    outcome = execute(registry_with(), "calculator", {"expression": "1 / 0"})
    assert outcome.is_error and outcome.outcome is Outcome.TOOL_ERROR
    assert outcome.content == "Division by zero."


def test_tools_execution_times_out_a_slow_tool(slow_tool: Tool[SlowInput]) -> None:
    started = time.perf_counter()
    outcome = execute(registry_with(slow_tool), "slow", {"seconds": 10})
    elapsed = time.perf_counter() - started
    assert outcome.is_error and outcome.outcome is Outcome.TIMEOUT
    assert outcome.content.startswith("Tool slow did not finish within its time limit of 0.2 s.")
    assert 0.2 <= elapsed < 2
    assert 200 <= outcome.duration_ms < 2000


def test_tools_execution_the_invocation_time_left_caps_the_tool_timeout(slow_tool: Tool[SlowInput]) -> None:
    outcome = execute(registry_with(slow_tool), "slow", {"seconds": 10}, time_left_s=0.05)
    assert outcome.outcome is Outcome.TIMEOUT
    assert "time limit of 0.05 s" in outcome.content
    # more time left than the tool's own timeout: the tool's timeout wins
    assert "time limit of 0.2 s" in execute(registry_with(slow_tool), "slow", {"seconds": 10}, time_left_s=60).content


def test_tools_execution_a_timed_out_action_warns_it_may_still_happen(slow_tool: Tool[SlowInput]) -> None:
    action = Tool(
        untrusted_output=False,
        name="send_email",
        description="d",
        input_model=SlowInput,
        run=slow_tool.run,
        timeout_s=0.1,
        side_effect=SideEffect.IRREVERSIBLE,
    )
    outcome = execute(registry_with(action), "send_email", {"seconds": 10})
    assert outcome.outcome is Outcome.TIMEOUT
    assert "may still complete in the background" in outcome.content


def test_tools_execution_lets_a_fast_call_of_a_slow_tool_finish(slow_tool: Tool[SlowInput]) -> None:
    outcome = execute(registry_with(slow_tool), "slow", {"seconds": 0.01})
    assert not outcome.is_error
    assert outcome.content == "finally done"


def _crash(call: EchoInput) -> str:
    raise KeyError("missing")


def test_tools_execution_turns_a_crash_into_an_error_result() -> None:
    crashing = Tool(
        untrusted_output=False, name="crashy", description="Always crashes.", input_model=EchoInput, run=_crash
    )
    outcome = execute(registry_with(crashing), "crashy", {"text": "hi"})
    assert outcome.is_error and outcome.outcome is Outcome.CRASHED
    assert outcome.content == "Tool crashy failed: KeyError: 'missing'"


def _crash_quoting_the_input(call: EchoInput) -> str:
    try:
        int(call.text)
    except ValueError as exc:
        raise RuntimeError(f"could not parse {call.text!r}") from exc
    return call.text


@pytest.mark.parametrize("recording", [False, True])
def test_tools_execution_logs_a_crash_without_the_content_its_messages_quote(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, recording: bool
) -> None:
    """The traceback reaches the operator; the messages (here quoting the input, in the crash and its cause)
    only under the content-recording rule, and then redacted."""
    for name in (telemetry.ENV_RECORD_CONTENT, telemetry.ENV_GENAI_CAPTURE_CONTENT):
        monkeypatch.delenv(name, raising=False)
    if recording:
        monkeypatch.setenv(telemetry.ENV_RECORD_CONTENT, "true")
    crashing = Tool(
        untrusted_output=False, name="parse", description="d", input_model=EchoInput, run=_crash_quoting_the_input
    )
    with caplog.at_level(logging.DEBUG, logger="agentwire_tools.execution"):
        outcome = execute(registry_with(crashing), "parse", {"text": "password=hunter2 Zebediah"})

    assert outcome.outcome is Outcome.CRASHED
    [record] = [r for r in caplog.records if r.name == "agentwire_tools.execution"]
    logged = record.getMessage() + (record.exc_text or "")
    assert record.levelno == logging.ERROR and record.exc_info is None  # no traceback with messages attached
    assert "tool parse crashed" in logged and "_crash_quoting_the_input" in logged  # the frames are there
    assert "ValueError: " in logged and "RuntimeError: " in logged  # the cause, then the crash
    assert "hunter2" not in logged
    if recording:
        assert "password=[REDACTED]" in logged and "Zebediah" in logged
    else:
        assert logged.count(MESSAGE_WITHHELD) == 2 and "Zebediah" not in logged


def _down(call: EchoInput) -> str:
    raise ToolUnavailable("weather API answered 503")


def test_tools_execution_a_result_that_cannot_be_rendered_is_a_crash_result() -> None:
    looped: dict[str, object] = {}
    looped["self"] = looped
    odd = Tool(untrusted_output=False, name="odd", description="d", input_model=EchoInput, run=lambda c: looped)
    outcome = execute(registry_with(odd), "odd", {"text": "x"})
    assert outcome.is_error and outcome.outcome is Outcome.CRASHED
    assert "Circular reference" in outcome.content


def test_tools_execution_lets_infrastructure_trouble_escape() -> None:
    flaky = Tool(untrusted_output=False, name="weather", description="Forecast.", input_model=EchoInput, run=_down)
    with pytest.raises(CallUnavailable, match="weather API answered 503"):
        execute(registry_with(flaky), "weather", {"text": "Paris"})


def test_tools_execution_caps_the_output_size() -> None:
    chatty = Tool(
        untrusted_output=False,
        name="chatty",
        description="Talks a lot.",
        input_model=EchoInput,
        run=lambda c: c.text * 1000,
        max_output_chars=200,
    )
    outcome = execute(registry_with(chatty), "chatty", {"text": "abc"})
    assert len(outcome.content) == 200
    assert outcome.truncated
    assert outcome.content.endswith("[output truncated: 3000 characters, limit 200]")
    assert outcome.content.startswith("abcabc")
    assert not outcome.is_error


def test_tools_execution_caps_the_message_of_a_tool_error_too() -> None:
    def loud(call: EchoInput) -> str:
        raise ToolError("no! " * 500)

    tool = Tool(
        untrusted_output=False,
        name="loud",
        description="Fails loudly.",
        input_model=EchoInput,
        run=loud,
        max_output_chars=100,
    )
    outcome = execute(registry_with(tool), "loud", {"text": "x"})
    assert outcome.is_error and len(outcome.content) == 100


class Forecast(BaseModel):
    city: str
    high_c: float = Field(ge=-100, le=100)


def test_tools_execution_renders_models_and_json_values() -> None:
    as_model = Tool(
        untrusted_output=False,
        name="forecast",
        description="d",
        input_model=EchoInput,
        run=lambda c: Forecast(city=c.text, high_c=21.5),
    )
    as_dict = Tool(
        untrusted_output=False,
        name="lookup",
        description="d",
        input_model=EchoInput,
        run=lambda c: {"city": c.text, "n": [1, 2]},
    )
    registry = registry_with(as_model, as_dict)
    assert json.loads(execute(registry, "forecast", {"text": "Zürich"}).content) == {"city": "Zürich", "high_c": 21.5}
    assert execute(registry, "lookup", {"text": "Zürich"}).content == '{"city":"Zürich","n":[1,2]}'


def test_tools_execution_measures_duration_with_the_injected_clock() -> None:
    ticks = iter([10.0, 10.25])
    outcome = execute(registry_with(), "calculator", {"expression": "1"}, clock=lambda: next(ticks))
    assert outcome.duration_ms == 250.0


def test_tools_truncate_keeps_within_the_cap() -> None:
    for cap in (64, 100, 1000):
        assert len(truncate("z" * 5000, cap)) == cap
