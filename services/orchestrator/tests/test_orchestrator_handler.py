"""The Lambda entry points: SQS batches in, partial batch failures out; one bad record never fails the rest."""

from __future__ import annotations

import json

import pytest
from agentwire_contracts.events.llm import LlmCompletionFailed
from agentwire_orchestrator.handler import resume_handler, starter_handler
from orchestrator_testkit import (
    FakeLambdaContext,
    FakePublisher,
    FakeStepFunctions,
    answer,
    cancel_requested,
    completion,
    eventbridge_body,
    run_requested,
    sqs_event,
)

pytestmark = pytest.mark.usefixtures("installed")


def failed_ids(response: dict) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def test_starter_starts_refuses_and_cancels_in_one_batch(sfn: FakeStepFunctions, publisher: FakePublisher) -> None:
    batch = sqs_event(
        eventbridge_body(run_requested("run-1")),
        eventbridge_body(run_requested("run-2", agent="nobody")),
        eventbridge_body(cancel_requested("run-1")),
    )
    response = starter_handler(batch, FakeLambdaContext())
    assert failed_ids(response) == []
    assert list(sfn.executions) == ["run-1"]
    assert [e.detail_type for e in publisher.events] == ["run.failed.v1", "run.cancelled.v1"]


def test_a_malformed_record_is_reported_alone(sfn: FakeStepFunctions) -> None:
    batch = sqs_event("not json", eventbridge_body(run_requested("run-1")), json.dumps({"detail-type": "x"}))
    response = starter_handler(batch, FakeLambdaContext())
    assert failed_ids(response) == ["m-0", "m-2"]
    assert list(sfn.executions) == ["run-1"]


def test_resume_answers_tasks_and_reports_only_retryable_records(sfn: FakeStepFunctions) -> None:
    sfn.waiting("tok-ok")
    sfn.waiting("tok-fail")
    sfn.tokens["tok-gone"] = "TaskDoesNotExist"
    batch = sqs_event(
        eventbridge_body(answer(completion(), token="tok-ok")),
        eventbridge_body(answer(LlmCompletionFailed(code="Llm.BadRequest", message="no"), token="tok-fail")),
        eventbridge_body(answer(completion(), token="tok-gone")),
        eventbridge_body(answer(completion(), token=None)),
    )
    response = resume_handler(batch, FakeLambdaContext())
    assert failed_ids(response) == []
    assert [token for token, _ in sfn.successes] == ["tok-ok"]
    assert [(token, error) for token, error, _ in sfn.failures] == [("tok-fail", "Llm.BadRequest")]


def test_resume_reports_a_record_step_functions_could_not_take(sfn: FakeStepFunctions) -> None:
    sfn.waiting("tok-1")
    sfn.fail_next_send = ConnectionError("endpoint unreachable")
    response = resume_handler(sqs_event(eventbridge_body(answer(completion(), token="tok-1"))), FakeLambdaContext())
    assert failed_ids(response) == ["m-0"]
