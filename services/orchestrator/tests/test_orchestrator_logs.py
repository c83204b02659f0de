"""Every log line the orchestrator writes for a record carries the record's run (as run_id and the
correlation id), tenant, session and trace (`telemetry.correlation_keys`), and none leaks onto the next
record of the batch."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.run import RunCancelRequested
from agentwire_orchestrator import handler
from agentwire_orchestrator.handler import resume_handler, starter_handler
from orchestrator_testkit import (
    SESSION,
    TENANT,
    FakeLambdaContext,
    FakeStepFunctions,
    completion,
    eventbridge_body,
    llm_failed,
    run_requested,
    sqs_event,
)

pytestmark = pytest.mark.usefixtures("installed")

TRACE_ID = "5759e988bd862e3fe1be46a994272793"
XRAY = f"Root=1-{TRACE_ID[:8]}-{TRACE_ID[8:]};Parent=53995c3f42cd8ad8;Sampled=1"
OTHER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
OTHER_XRAY = f"Root=1-{OTHER_TRACE_ID[:8]}-{OTHER_TRACE_ID[8:]};Parent=b7ad6b7169203331;Sampled=1"


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    registered = handler.logger.registered_handler
    original = registered.setStream(stream)  # type: ignore[attr-defined]
    yield stream
    registered.setStream(original)  # type: ignore[attr-defined]


def read(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def assert_correlated(line: dict[str, Any], run_id: str, trace_id: str, *, session: bool = True) -> None:
    assert line.get("run_id") == run_id and line.get("correlation_id") == run_id, line
    assert line.get("tenant_id") == TENANT, line
    assert line.get("trace_id") == trace_id, line
    if session:
        assert line.get("session_id") == SESSION, line


def test_every_starter_line_carries_run_session_tenant_and_trace(logs: io.StringIO) -> None:
    cancel = Event.create(
        RunCancelRequested(session_id=SESSION, reason="stop"), tenant_id=TENANT, run_id="run-2", trace_header=OTHER_XRAY
    )
    batch = sqs_event(
        eventbridge_body(run_requested("run-1", trace_header=XRAY)),
        eventbridge_body(run_requested("run-3", agent="nobody", trace_header=XRAY)),  # refused: a warning too
        eventbridge_body(cancel),
    )
    starter_handler(batch, FakeLambdaContext())
    lines = read(logs)
    by_run: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_run.setdefault(line.get("correlation_id", "?"), []).append(line)
    assert set(by_run) == {"run-1", "run-2", "run-3"}, lines
    assert {line["level"] for line in by_run["run-3"]} >= {"WARNING"}
    for run_id, trace_id in (("run-1", TRACE_ID), ("run-3", TRACE_ID), ("run-2", OTHER_TRACE_ID)):
        for line in by_run[run_id]:
            assert_correlated(line, run_id, trace_id)


def test_every_resume_line_carries_the_answers_run_and_trace(sfn: FakeStepFunctions, logs: io.StringIO) -> None:
    sfn.waiting("tok-ok")
    sfn.tokens["tok-gone"] = "TaskDoesNotExist"  # a warning line
    sfn.waiting("tok-fail")
    ok = Event.create(completion(), tenant_id=TENANT, run_id="run-1", task_token="tok-ok", trace_header=XRAY)
    gone = Event.create(completion(), tenant_id=TENANT, run_id="run-2", task_token="tok-gone", trace_header=OTHER_XRAY)
    failed = Event.create(llm_failed(), tenant_id=TENANT, run_id="run-3", task_token="tok-fail", trace_header=XRAY)
    resume_handler(sqs_event(*(eventbridge_body(e) for e in (ok, gone, failed))), FakeLambdaContext())
    lines = read(logs)
    by_run = {line.get("correlation_id"): line for line in lines}
    assert set(by_run) == {"run-1", "run-2", "run-3"}, lines
    assert_correlated(by_run["run-1"], "run-1", TRACE_ID)
    assert_correlated(by_run["run-2"], "run-2", OTHER_TRACE_ID)
    # A failure answer carries no session in its data (FailureData): the rest is there, and not the
    # previous record's session either.
    assert_correlated(by_run["run-3"], "run-3", TRACE_ID, session=False)
    assert "session_id" not in by_run["run-3"]


def test_an_invalid_run_event_is_still_logged_with_its_run(logs: io.StringIO) -> None:
    body = json.loads(eventbridge_body(run_requested("run-9", trace_header=XRAY)))
    body["detail"]["data"]["input"] = "not a message"
    starter_handler(sqs_event(json.dumps(body)), FakeLambdaContext())
    [line] = [line for line in read(logs) if line["level"] == "ERROR"]
    assert_correlated(line, "run-9", TRACE_ID)
