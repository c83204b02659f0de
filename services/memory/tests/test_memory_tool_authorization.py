"""remember/forget are authorized by memory with the tools service's rule before anything runs: default deny,
the agent definition the run pinned must offer the tool (and approve it when that agent requires it). A
refusal is an `is_error` result the model sees, recorded once per call, and logged with its reason."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from agentwire_contracts.content import ToolCall, canonical_args_hash
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.tool import ApprovalProof, ToolInvocationRequested
from agentwire_contracts.testing import LambdaContextStub, eventbridge_body, sqs_record
from agentwire_memory import handler
from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.handler import Dependencies
from agentwire_memory.service import ToolDecision, authorize_tool_call, serve_tool_call

from .conftest import MEMORY_AGENTS, TABLE_NAME

FACT = "Their locker code is 4711."


def call(
    name: str = "remember",
    tool_input: dict[str, Any] | None = None,
    *,
    agent: str = "memo@1",
    call_id: str = "c1",
    approval: ApprovalProof | None = None,
) -> Event[ToolInvocationRequested]:
    data = ToolInvocationRequested(
        session_id="s1",
        step=1,
        tool_call=ToolCall.of(call_id, name, tool_input if tool_input is not None else {"fact": FACT}),
        user_id="u1",
        agent=agent,
        approval=approval,
    )
    return Event.create(data, tenant_id="acme", run_id="run-1", task_token="tok")


@pytest.fixture
def store(dynamodb: Any) -> DynamoTranscriptStore:
    return DynamoTranscriptStore(dynamodb, TABLE_NAME, sleep=lambda _: None)


def proof_for(tool_input: dict[str, Any]) -> ApprovalProof:
    return ApprovalProof(approval_id="ap-1", args_hash=canonical_args_hash(tool_input), decided_by="ops@acme")


@pytest.mark.parametrize(
    ("agent", "name", "approval", "allowed", "policy"),
    [
        ("memo@1", "remember", None, True, "agent-offers-tool"),
        ("memo@1", "forget", None, True, "agent-offers-tool"),
        # The pinned version decides, not the latest: memo@2 no longer offers the memory tools.
        ("memo@2", "remember", None, False, "default-deny"),
        ("memo", "remember", None, False, "default-deny"),  # no version: the latest (memo@2)
        ("", "remember", None, False, "default-deny"),  # no agent: judged as the default agent (assistant)
        ("assistant@1", "forget", None, False, "default-deny"),
        ("ghost@1", "remember", None, False, "agentwire.unknown-agent"),
        ("memo@9", "remember", None, False, "agentwire.unknown-agent"),
        ("careful@1", "remember", None, False, "agentwire.approval-required"),
        ("careful@1", "remember", proof_for({"fact": "something else"}), False, "agentwire.approval-required"),
        ("careful@1", "remember", proof_for({"fact": FACT}), True, "agent-offers-tool"),
        ("careful@1", "forget", None, True, "agent-offers-tool"),  # careful requires approval for remember only
    ],
)
def test_the_authorization_matrix(
    agent: str, name: str, approval: ApprovalProof | None, allowed: bool, policy: str
) -> None:
    decision = authorize_tool_call(call(name, agent=agent, approval=approval), MEMORY_AGENTS)
    assert (decision.allowed, decision.policy) == (allowed, policy), decision.reason


def test_an_injected_remember_for_an_agent_that_does_not_offer_it_is_refused_and_saves_nothing(
    store: DynamoTranscriptStore,
) -> None:
    decisions: list[ToolDecision] = []
    # What a prompt-injected "call remember" becomes: a well-formed call from a run whose agent lacks the tool.
    denied = serve_tool_call(call(agent="memo@2"), store, agents=MEMORY_AGENTS, on_decision=decisions.append)

    assert denied.result.is_error and denied.result.tool_use_id == "c1"
    assert "refused by policy (default-deny)" in denied.result.content and "not run" in denied.result.content
    assert FACT not in denied.result.content
    assert store.list_facts("acme", "u1") == []
    assert decisions == [ToolDecision(False, "memo@2", "default-deny", "agent memo@2 does not offer 'remember'")]
    # Exactly one answer per call: a redelivery gets the recorded refusal, without deciding again.
    again = serve_tool_call(call(agent="memo@2"), store, agents=MEMORY_AGENTS, on_decision=decisions.append)
    assert again.result == denied.result and len(decisions) == 1


def test_a_forget_for_an_agent_that_does_not_offer_it_forgets_nothing(store: DynamoTranscriptStore) -> None:
    assert not serve_tool_call(call(), store, agents=MEMORY_AGENTS).result.is_error
    refused = serve_tool_call(call("forget", {"fact": "locker"}, agent="", call_id="c2"), store, agents=MEMORY_AGENTS)
    assert refused.result.is_error
    assert [fact.text for fact in store.list_facts("acme", "u1")] == [FACT]


def test_the_deployments_packaged_agents_are_the_default_catalog(store: DynamoTranscriptStore) -> None:
    # No catalog given: the deployment's, the packaged defaults: assistant@2 does not offer remember, the
    # latest assistant (what a bare name means) does.
    assert serve_tool_call(call(agent="assistant@2"), store).result.is_error
    assert store.list_facts("acme", "u1") == []
    assert not serve_tool_call(call(agent="assistant", call_id="c2"), store).result.is_error
    assert [fact.text for fact in store.list_facts("acme", "u1")] == [FACT]


@pytest.fixture
def deps(store: DynamoTranscriptStore, publisher: Any) -> Iterator[Dependencies]:
    dependencies = Dependencies(store=store, publisher=publisher, agents=MEMORY_AGENTS)
    handler.set_dependencies(dependencies)
    yield dependencies
    handler.set_dependencies(None)


def test_the_handler_answers_a_refusal_and_logs_the_decision_without_the_fact(
    deps: Dependencies, publisher: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(handler.logger.registered_handler, "stream", stream)
    request = call(agent="memo@2")

    response = handler.lambda_handler({"Records": [sqs_record(eventbridge_body(request))]}, LambdaContextStub())

    assert response == {"batchItemFailures": []}
    (answer,) = publisher.events
    assert answer.detail_type == "tool.invocation.completed.v1" and answer.metadata.task_token == "tok"
    assert answer.data.result.is_error
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    [denial] = [line for line in lines if line.get("message") == "tool call denied"]
    assert (denial["decision"], denial["policy"], denial["agent"], denial["outcome"]) == (
        "deny",
        "default-deny",
        "memo@2",
        "denied",
    )
    assert denial["reason"] == "agent memo@2 does not offer 'remember'"
    assert FACT not in stream.getvalue()
    assert deps.store.list_facts("acme", "u1") == []
