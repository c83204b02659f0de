"""One model call per (run, step): Powertools idempotency on a moto DynamoDB table."""

from __future__ import annotations

import time

import pytest
from agentwire_contracts.consumer import StepError
from agentwire_llm.adapters.idempotency import PowertoolsOncePerStep
from agentwire_llm.adapters.script_cursor import DynamoDbScriptCursor
from agentwire_llm.completion import CompletionService
from agentwire_llm.model import Completion, CompletionRequest
from agentwire_llm.providers.scripted import Script, ScriptedProvider
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from llm_testkit import (
    IDEMPOTENCY_TABLE,
    STATE_TABLE,
    FakeLambdaContext,
    completion_request_event,
    error_response,
    text_response,
    user,
)


def scripted_service(dynamodb, *entries: dict) -> tuple[CompletionService, PowertoolsOncePerStep]:
    script = Script.from_entries(list(entries))
    provider = ScriptedProvider(script, DynamoDbScriptCursor(dynamodb, STATE_TABLE, script.fingerprint))
    once = PowertoolsOncePerStep(IDEMPOTENCY_TABLE, client=dynamodb)
    once.register_lambda_context(FakeLambdaContext())
    return CompletionService(provider, once), once


def script_calls(dynamodb) -> int:
    items = dynamodb.scan(TableName=STATE_TABLE)["Items"]
    return sum(int(item["calls"]["N"]) for item in items)


def test_llm_redelivered_request_replays_the_recorded_answer(dynamodb) -> None:
    service, _ = scripted_service(dynamodb, text_response("first"), text_response("second"))
    request = completion_request_event([user("hello")], run_id="run-42", step=3)
    redelivered = completion_request_event([user("hello")], run_id="run-42", step=3)
    assert redelivered.metadata.event_id != request.metadata.event_id

    first = service.answer(request)
    again = service.answer(redelivered)
    assert first.replayed is False and again.replayed is True
    assert again.data == first.data
    assert again.data.text == "first"
    assert script_calls(dynamodb) == 1

    # The next step is a new call and takes the next entry.
    assert service.answer(completion_request_event([user("hello")], run_id="run-42", step=4)).data.text == "second"
    assert script_calls(dynamodb) == 2
    records = dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"]
    assert len(records) == 2
    assert all(r["status"]["S"] == "COMPLETED" and int(r["expiration"]["N"]) > time.time() for r in records)


def test_llm_same_step_of_another_run_or_tenant_is_another_call(dynamodb) -> None:
    service, _ = scripted_service(dynamodb, text_response("a"), text_response("b"), text_response("c"))
    assert service.answer(completion_request_event([user("hi")], run_id="run-1", step=0)).data.text == "a"
    assert service.answer(completion_request_event([user("hi")], run_id="run-2", step=0)).data.text == "b"
    other_tenant = completion_request_event([user("hi")], run_id="run-1", step=0, tenant_id="tenant-2")
    assert service.answer(other_tenant).data.text == "c"


def test_llm_failures_are_not_recorded_so_a_retry_calls_again(dynamodb) -> None:
    service, _ = scripted_service(dynamodb, error_response("overloaded_error"), text_response("recovered"))
    request = completion_request_event([user("hello")], run_id="run-7", step=1)
    with pytest.raises(StepError) as raised:
        service.answer(request)
    assert raised.value.code == "Llm.Overloaded"
    assert dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"] == []

    # Step Functions' Retry sends the same step again: it reaches the provider and takes the next entry.
    retried = service.answer(completion_request_event([user("hello")], run_id="run-7", step=1))
    assert retried.replayed is False and retried.data.text == "recovered"


def test_llm_same_step_with_different_content_is_refused(dynamodb) -> None:
    service, _ = scripted_service(dynamodb, text_response("a"), text_response("b"))
    service.answer(completion_request_event([user("hello")], run_id="run-9", step=0))
    with pytest.raises(StepError) as raised:
        service.answer(completion_request_event([user("something else")], run_id="run-9", step=0))
    assert raised.value.code == "Llm.BadRequest"
    assert script_calls(dynamodb) == 1


class ReentrantProvider:
    """While answering, a duplicate delivery of the same step arrives (a second worker)."""

    name = "reentrant"

    def __init__(self) -> None:
        self.service: CompletionService | None = None
        self.duplicate_error: Exception | None = None
        self.calls = 0

    def complete(self, request: CompletionRequest) -> Completion:
        self.calls += 1
        assert self.service is not None
        try:
            self.service.answer(completion_request_event([user("hello")], run_id="run-5", step=0))
        except Exception as exc:  # recorded for the test to inspect
            self.duplicate_error = exc
        return Completion.model_validate(
            {
                "message": {"role": "assistant", "content": [{"type": "text", "text": "done"}]},
                "stop_reason": "end_turn",
                "model": "m",
                "provider": self.name,
            }
        )


def test_llm_in_progress_record_blocks_a_duplicate_and_expires_with_the_invocation(dynamodb) -> None:
    provider = ReentrantProvider()
    once = PowertoolsOncePerStep(IDEMPOTENCY_TABLE, client=dynamodb)
    once.register_lambda_context(FakeLambdaContext(remaining_ms=120_000))
    service = CompletionService(provider, once)
    provider.service = service

    before_ms = time.time() * 1000
    answer = service.answer(completion_request_event([user("hello")], run_id="run-5", step=0))

    assert answer.data.text == "done"
    assert provider.calls == 1
    # The duplicate is a retryable Llm.Unavailable (the run's Retry backs off), not an SQS redelivery.
    assert isinstance(provider.duplicate_error, StepError)
    assert (provider.duplicate_error.code, provider.duplicate_error.retryable) == ("Llm.Unavailable", True)
    assert isinstance(provider.duplicate_error.__cause__, IdempotencyAlreadyInProgressError)
    [record] = dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"]
    # The lock of a crashed attempt lapses when its invocation would have timed out, not after the TTL.
    in_progress_until = int(record["in_progress_expiration"]["N"])
    assert before_ms + 110_000 < in_progress_until < before_ms + 130_000


def test_llm_crashed_call_leaves_no_record(dynamodb) -> None:
    class Crashing:
        name = "crashing"

        def complete(self, request):
            raise RuntimeError("connection reset")

    once = PowertoolsOncePerStep(IDEMPOTENCY_TABLE, client=dynamodb)
    once.register_lambda_context(FakeLambdaContext())
    with pytest.raises(RuntimeError):
        CompletionService(Crashing(), once).answer(completion_request_event([user("x")]))
    assert dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"] == []
