"""`agentwire runs show` over recorded events and spans: a failed step shows its error code and message,
a failed run its error, and a tool's long input and result are cut (and drawn cut) — not only the happy
path the emulator test draws."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from agentwire_contracts import telemetry, testing
from agentwire_contracts.content import ErrorInfo, Message, TextBlock, ToolCall, ToolResultBlock
from agentwire_contracts.envelope import Event, EventData
from agentwire_contracts.events.llm import LlmCompletionFailed, LlmCompletionRequested
from agentwire_contracts.events.run import RunFailed, RunRequested
from agentwire_contracts.events.tool import ToolInvocationCompleted, ToolInvocationFailed, ToolInvocationRequested
from agentwire_infra import cli
from agentwire_infra.local import runview
from agentwire_infra.local.recorder import EVENTS_DIR, record_line, run_file

RUN = "run-failing-1"
SESSION = "s-1"
LONG_INPUT = {"query": "alpha " * 40 + "THE-END-OF-THE-INPUT"}
LONG_RESULT = "line one\n\n" + "beta " * 60 + "THE-END-OF-THE-RESULT"


class Recording:
    """Writes a run's events as the local recorder does (one EventBridge envelope per line)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.clock = 1_700_000_000.0
        (workdir / EVENTS_DIR).mkdir(parents=True, exist_ok=True)

    def record(self, event: Event[Any]) -> Event[Any]:
        self.clock += 0.25
        _, line = record_line(json.loads(testing.eventbridge_body(event)))
        line["recorded_at"] = self.clock
        # One quarter second apart, so the order and durations do not depend on how fast the test runs.
        line["detail"]["metadata"]["occurred_at"] = f"{_iso(self.clock)}"
        with run_file(self.workdir / EVENTS_DIR, RUN).open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
        return event

    def request(self, data: EventData) -> Event[Any]:
        return self.record(Event.create(data, tenant_id="acme", run_id=RUN, task_token="tok"))


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def failed_run(tmp_path: Path) -> Path:
    rec = Recording(tmp_path)
    requested = rec.request(
        RunRequested(session_id=SESSION, input=Message(role="user", content=[TextBlock(text="hi")]))
    )
    # A tool whose long input and result must be cut.
    call = ToolCall.of("c1", "search", LONG_INPUT)
    tool = rec.request(ToolInvocationRequested(session_id=SESSION, step=1, tool_call=call))
    rec.record(
        tool.answer(
            ToolInvocationCompleted(
                session_id=SESSION,
                step=1,
                tool_name="search",
                result=ToolResultBlock(tool_use_id="c1", content=LONG_RESULT),
            )
        )
    )
    # A tool the tools service could not run at all.
    broken = rec.request(
        ToolInvocationRequested(session_id=SESSION, step=1, tool_call=ToolCall.of("c2", "fetch", {"url": "x"}))
    )
    rec.record(broken.answer(ToolInvocationFailed(code="Tools.Unavailable", message="x" * 500, retryable=True)))
    # The model call that ended the run.
    hello = [Message(role="user", content=[TextBlock(text="hi")])]
    model = rec.request(LlmCompletionRequested(session_id=SESSION, step=2, model="claude-test", messages=hello))
    rec.record(model.answer(LlmCompletionFailed(code="Llm.BadRequest", message="prompt is too long\nfor this model")))
    rec.record(
        requested.answer(
            RunFailed(session_id=SESSION, error=ErrorInfo(code="Llm.BadRequest", message="prompt is too long"))
        )
    )
    return tmp_path


def test_a_failed_step_shows_its_code_and_message(failed_run: Path) -> None:
    view = runview.build_run(failed_run, RUN, spans=[])
    assert view.status == "failed" and view.error == "Llm.BadRequest: prompt is too long"
    assert [(step.kind, step.status) for step in view.steps] == [
        ("tool", "ok"),
        ("tool", "failed"),
        ("model", "failed"),
    ]
    _, broken, model = view.steps
    assert (broken.service, broken.answer_type) == ("tools", "tool.invocation.failed.v1")
    # The code, then the message on one line and cut to 200 characters.
    assert broken.error is not None and broken.error.startswith("Tools.Unavailable: xxx")
    assert len(broken.error) == len("Tools.Unavailable: ") + 200 and broken.error.endswith("…")
    assert broken.tool == "fetch" and broken.tool_result is None
    assert model.error == "Llm.BadRequest: prompt is too long for this model"
    # A failed model turn billed nothing.
    assert (model.input_tokens, model.output_tokens, model.cost_microusd) == (0, 0, 0)
    assert all(step.duration_ms == 250.0 for step in view.steps)


def test_long_tool_input_and_result_are_truncated(failed_run: Path) -> None:
    [tool, *_] = runview.build_run(failed_run, RUN, spans=[]).steps
    assert tool.tool == "search" and tool.error is None
    assert tool.tool_input is not None and tool.tool_result is not None
    for cut in (tool.tool_input, tool.tool_result):
        assert len(cut) == runview.TEXT_LIMIT and cut.endswith("…")
    assert tool.tool_input.startswith('{"query": "alpha alpha') and "THE-END-OF-THE-INPUT" not in tool.tool_input
    # Whitespace (the result's blank line) is collapsed before the cut.
    assert tool.tool_result.startswith("line one beta beta") and "THE-END-OF-THE-RESULT" not in tool.tool_result


def test_runs_show_draws_the_errors_and_only_the_cut_text(failed_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--workdir", str(failed_run), "runs", "show", RUN]) == 0
    drawn = capsys.readouterr().out
    assert "FAILED" in drawn and "error: Llm.BadRequest: prompt is too long" in drawn
    lines = drawn.splitlines()
    [fetch] = [line for line in lines if "fetch(" in line]
    assert fetch.startswith("✗") and "✗ Tools.Unavailable: xxx" in fetch
    [model] = [line for line in lines if re.search(r"llm\s+model", line)]
    assert model.startswith("✗") and "Llm.BadRequest: prompt is too long for this model" in model
    [search] = [line for line in lines if "search(" in line]
    assert search.startswith(" ") and "→ line one beta" in search
    assert "THE-END-OF-THE-INPUT" not in drawn and "THE-END-OF-THE-RESULT" not in drawn

    assert cli.main(["--workdir", str(failed_run), "runs", "show", RUN[:8], "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert [step["error"] is not None for step in as_json["steps"]] == [False, True, True]


def test_the_handler_time_comes_from_the_consumer_span_of_the_step(failed_run: Path) -> None:
    events = [json.loads(line) for line in run_file(failed_run / EVENTS_DIR, RUN).read_text().splitlines()]
    [broken] = [e for e in events if e["detail"]["data"].get("tool_call", {}).get("name") == "fetch"]
    span = {
        "trace_id": "0" * 31 + "1",
        "span_id": "0" * 15 + "1",
        "service": "tools",
        "duration_ms": 12.5,
        "attributes": {telemetry.ATTR_RUN_ID: RUN, telemetry.ATTR_EVENT_ID: broken["detail"]["metadata"]["event_id"]},
    }
    steps = runview.build_run(failed_run, RUN, spans=[span]).steps
    assert [step.handler_ms for step in steps] == [None, 12.5, None]
