"""Resume: an answer event → SendTaskSuccess/Failure with its token; a gone task is acknowledged."""

from __future__ import annotations

import json

import pytest
from agentwire_contracts.content import ToolCall
from agentwire_contracts.events.memory import MemoryContextFailed, MemoryContextReady
from agentwire_contracts.events.run import RunStarted
from agentwire_contracts.events.tool import (
    ToolCatalogReady,
    ToolInvocationCompleted,
    ToolInvocationFailed,
    ToolInvocationHeartbeat,
)
from agentwire_contracts.parsing import InvalidEvent
from agentwire_orchestrator.resume import ResumeOutcome, resume
from orchestrator_testkit import (
    SESSION,
    FakeStepFunctions,
    answer,
    completion,
    eventbridge_body,
    llm_failed,
    tool_result,
    user_message,
)


def test_a_completion_resumes_the_task_with_its_data(sfn: FakeStepFunctions) -> None:
    token = sfn.waiting("tok-1")
    event = answer(
        completion("tool_use", tool_calls=[ToolCall(id="t1", name="calculator", input={"x": 1})]), token=token
    )
    result = resume(eventbridge_body(event), sfn)
    assert result.outcome is ResumeOutcome.SUCCEEDED
    assert result.run_id == "run-1"
    [(sent_token, output)] = sfn.successes
    assert sent_token == token
    assert json.loads(output) == event.detail()["data"]


def test_the_output_has_every_field_the_state_machine_selects_even_if_the_producer_left_defaults_out(
    sfn: FakeStepFunctions,
) -> None:
    token = sfn.waiting("tok-1")
    event = answer(completion(), token=token)
    detail = event.detail()
    for defaulted in ("text", "tool_calls", "usage"):
        del detail["data"][defaulted]
    resume(eventbridge_body(event, detail=detail), sfn)
    output = json.loads(sfn.successes[0][1])
    # CallModel's ResultSelector: message, text, tool_calls, stop_reason, usage
    assert {"message", "text", "tool_calls", "stop_reason", "usage"} <= set(output)
    assert output["tool_calls"] == [] and output["text"] == ""


@pytest.mark.parametrize(
    "data",
    [
        MemoryContextReady(session_id=SESSION, step=0, messages=[user_message()]),
        ToolCatalogReady(session_id=SESSION, tools=[]),
        ToolInvocationCompleted(session_id=SESSION, step=1, tool_name="calculator", result=tool_result()),
    ],
)
def test_every_success_answer_resumes(sfn: FakeStepFunctions, data: object) -> None:
    token = sfn.waiting("tok-1")
    assert resume(eventbridge_body(answer(data, token=token)), sfn).outcome is ResumeOutcome.SUCCEEDED  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        llm_failed("Llm.RateLimited", "slow down"),
        MemoryContextFailed(code="Memory.Unavailable", message="table throttled"),
        ToolInvocationFailed(code="Tools.Unavailable", message="no capacity"),
    ],
)
def test_a_failure_answer_fails_the_task_with_its_code_and_message(sfn: FakeStepFunctions, data: object) -> None:
    token = sfn.waiting("tok-1")
    result = resume(eventbridge_body(answer(data, token=token)), sfn)  # type: ignore[arg-type]
    assert result.outcome is ResumeOutcome.FAILED
    [(sent_token, error, cause)] = sfn.failures
    assert (sent_token, error, cause) == (token, data.code, data.message)  # type: ignore[attr-defined]
    assert sfn.successes == []


@pytest.mark.parametrize("reason", ["TaskDoesNotExist", "TaskTimedOut", "InvalidToken"])
def test_a_task_nobody_waits_for_is_acknowledged(sfn: FakeStepFunctions, reason: str) -> None:
    sfn.tokens["tok-1"] = reason
    result = resume(eventbridge_body(answer(completion(), token="tok-1")), sfn)
    assert result.outcome is ResumeOutcome.TASK_GONE
    assert result.code == reason


def test_a_redelivered_answer_finds_the_task_answered_and_is_acknowledged(sfn: FakeStepFunctions) -> None:
    token = sfn.waiting("tok-1")
    body = eventbridge_body(answer(completion(), token=token))
    assert resume(body, sfn).outcome is ResumeOutcome.SUCCEEDED
    assert resume(body, sfn).outcome is ResumeOutcome.TASK_GONE
    assert len(sfn.successes) == 1


def test_an_answer_without_a_token_is_dropped(sfn: FakeStepFunctions) -> None:
    result = resume(eventbridge_body(answer(completion(), token=None)), sfn)
    assert result.outcome is ResumeOutcome.NO_TOKEN
    assert sfn.successes == [] and sfn.failures == []


def test_other_step_functions_errors_propagate_for_an_sqs_retry(sfn: FakeStepFunctions) -> None:
    sfn.waiting("tok-1")
    sfn.fail_next_send = ConnectionError("throttled")
    body = eventbridge_body(answer(completion(), token="tok-1"))
    with pytest.raises(ConnectionError):
        resume(body, sfn)
    assert resume(body, sfn).outcome is ResumeOutcome.SUCCEEDED  # the retry gets through


def test_an_answer_too_large_for_step_functions_fails_the_task_clearly(sfn: FakeStepFunctions) -> None:
    token = sfn.waiting("tok-1")
    big = MemoryContextReady(session_id=SESSION, step=0, messages=[user_message("x" * 5000)])
    result = resume(eventbridge_body(answer(big, token=token)), sfn, max_output_bytes=4096)
    assert result.outcome is ResumeOutcome.OUTPUT_TOO_LARGE
    [(_, error, cause)] = sfn.failures
    assert error == "Run.OutputTooLarge"
    assert "4096" in cause and "memory.context.ready.v1" in cause
    assert sfn.successes == []


def test_an_invalid_answer_fails_the_task_at_once_and_still_raises_for_the_dlq(sfn: FakeStepFunctions) -> None:
    token = sfn.waiting("tok-1")
    event = answer(completion(), token=token)
    detail = event.detail()
    del detail["data"]["stop_reason"]  # required
    with pytest.raises(InvalidEvent):
        resume(eventbridge_body(event, detail=detail), sfn)
    [(_, error, _cause)] = sfn.failures
    assert error == "Contract.InvalidEvent"


def test_events_that_are_not_answers_are_ignored(sfn: FakeStepFunctions) -> None:
    event = answer(RunStarted(session_id=SESSION), token="tok-1")
    assert resume(eventbridge_body(event), sfn).outcome is ResumeOutcome.IGNORED
    unknown = json.dumps({"detail-type": "something.else.v9", "source": "x", "detail": {}})
    assert resume(unknown, sfn).outcome is ResumeOutcome.IGNORED
    assert sfn.successes == [] and sfn.failures == []


def heartbeat() -> ToolInvocationHeartbeat:
    return ToolInvocationHeartbeat(
        session_id=SESSION, step=2, tool_name="http_fetch", tool_call_id="toolu_1", elapsed_ms=15000.0
    )


def test_a_heartbeat_beats_the_task_and_leaves_it_waiting(sfn: FakeStepFunctions) -> None:
    token = sfn.waiting("tok-1")
    for _ in range(2):
        result = resume(eventbridge_body(answer(heartbeat(), token=token)), sfn)
        assert result.outcome is ResumeOutcome.HEARTBEAT
    assert sfn.heartbeats == [token, token]
    assert sfn.successes == [] and sfn.failures == []
    # The answer that follows still finds the task waiting.
    assert resume(eventbridge_body(answer(completion(), token=token)), sfn).outcome is ResumeOutcome.SUCCEEDED


def test_a_heartbeat_after_the_answer_is_acknowledged(sfn: FakeStepFunctions) -> None:
    token = sfn.waiting("tok-1")
    assert resume(eventbridge_body(answer(completion(), token=token)), sfn).outcome is ResumeOutcome.SUCCEEDED
    late = resume(eventbridge_body(answer(heartbeat(), token=token)), sfn)
    assert (late.outcome, late.code) == (ResumeOutcome.TASK_GONE, "TaskDoesNotExist")
    assert sfn.heartbeats == []
