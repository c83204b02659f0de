"""The state machine's definition, checked structurally against the contracts it speaks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentwire_contracts.content import ToolResultBlock
from agentwire_contracts.envelope import Metadata
from agentwire_contracts.events import REGISTRY
from agentwire_contracts.events.llm import LlmCompletionCompleted
from agentwire_contracts.events.memory import MemoryContextReady
from agentwire_contracts.events.run import RunApprovalDecided
from agentwire_contracts.events.tool import ToolCatalogReady, ToolInvocationCompleted
from agentwire_contracts.names import Source
from agentwire_orchestrator import asl
from agentwire_orchestrator.manifest import MANIFEST
from agentwire_orchestrator.ports import RUN_FAILED_ERROR

DEFINITION = json.loads(asl.definition_template())
STATES = asl.states()
WAITING = {name: s for name, s in STATES.items() if s.get("Resource", "").endswith(".waitForTaskToken")}
PUBLISHING = {name: s for name, s in STATES.items() if s.get("Resource", "").startswith("arn:aws:states:::events:")}
#: What answers each waiting state (its ResultSelector reads the answer's data).
ANSWERED_BY = {
    "DescribeTools": ToolCatalogReady,
    "LoadContext": MemoryContextReady,
    "CallModel": LlmCompletionCompleted,
    "InvokeTool": ToolInvocationCompleted,
    "SaveAnswer": MemoryContextReady,
    "Compact": LlmCompletionCompleted,
    "StoreSummary": MemoryContextReady,
    "RequestApproval": RunApprovalDecided,
}
#: Where each waiting state's TimeoutSecondsPath points: the run's step timeouts or the agent's policy.
TIMEOUT_PATHS = {
    "DescribeTools": "$.run.timeouts.catalog_s",
    "LoadContext": "$.run.timeouts.memory_s",
    "StoreSummary": "$.run.timeouts.memory_s",
    "SaveAnswer": "$.run.timeouts.memory_s",
    "CallModel": "$.run.timeouts.model_s",
    "Compact": "$.run.timeouts.model_s",
    "InvokeTool": "$.run.timeouts.tool_s",
    "RequestApproval": "$.run.agent.approval.timeout_s",
}
#: The steps whose worker beats while it works (tool calls can run for minutes); the others are short, or
#: wait for a person, who does not beat.
HEARTBEAT_PATHS = {"InvokeTool": "$.run.timeouts.tool_heartbeat_s"}


def scopes(definition: dict[str, Any]) -> list[dict[str, Any]]:
    """The definition and every nested Map/Parallel processor (each is its own namespace of states)."""
    found = [definition]
    for state in definition["States"].values():
        for nested in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if nested:
                found += scopes(nested)
    return found


def targets(state: dict[str, Any]) -> set[str]:
    found = {state[key] for key in ("Next", "Default") if key in state}
    found |= {c["Next"] for c in state.get("Catch", [])}
    found |= {c["Next"] for c in state.get("Choices", [])}
    return found


def keys(template: dict[str, Any]) -> set[str]:
    return {key.removesuffix(".$") for key in template}


@pytest.mark.parametrize("scope", scopes(DEFINITION), ids=lambda s: s["StartAt"])
def test_every_transition_lands_on_a_state_and_every_state_is_reachable(scope: dict[str, Any]) -> None:
    names = set(scope["States"])
    seen, todo = set(), [scope["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        assert name in names, f"transition to missing state {name!r}"
        todo += targets(scope["States"][name])
    assert seen == names, f"unreachable: {names - seen}"


def test_every_waiting_state_is_bounded_caught_and_answered_by_a_contract() -> None:
    assert set(WAITING) == set(ANSWERED_BY)
    for name, state in WAITING.items():
        assert state["TimeoutSecondsPath"] == TIMEOUT_PATHS[name], name
        assert state.get("HeartbeatSecondsPath") == HEARTBEAT_PATHS.get(name), name
        assert any(c["ErrorEquals"] == ["States.ALL"] for c in state["Catch"]), name
        metadata = state["Parameters"]["Entries"][0]["Detail"]["metadata"]
        assert metadata["task_token.$"] == "$$.Task.Token", name


@pytest.mark.parametrize("name", sorted(ANSWERED_BY))
def test_result_selectors_read_only_fields_the_answer_always_has(name: str) -> None:
    selector = WAITING[name].get("ResultSelector", {})
    fields = set(ANSWERED_BY[name].model_fields)
    for path in selector.values():
        assert path.startswith("$.") and path.removeprefix("$.").split(".")[0] in fields, f"{name}: {path}"


@pytest.mark.parametrize("name", sorted(PUBLISHING))
def test_every_published_event_is_a_contract_of_ours_with_full_metadata(name: str) -> None:
    [entry] = PUBLISHING[name]["Parameters"]["Entries"]
    assert entry["Source"] == Source.ORCHESTRATOR
    assert entry["DetailType"] in MANIFEST.publishes
    model = REGISTRY[entry["DetailType"]]
    metadata = keys(entry["Detail"]["metadata"])
    assert metadata <= set(Metadata.model_fields)
    assert {"event_id", "occurred_at", "schema_version", "tenant_id", "run_id", "causation_id"} <= metadata
    # The version the event is written to: a field added in 1.1 must not travel labelled 1.0.
    assert entry["Detail"]["metadata"]["schema_version"] == model.schema_version, name
    data = keys(entry["Detail"]["data"])
    assert data <= set(model.model_fields), f"{name}: unknown fields {data - set(model.model_fields)}"
    required = {field for field, info in model.model_fields.items() if info.is_required()}
    assert required <= data, f"{name}: missing {required - data}"


def test_every_retry_names_a_domain_error_code() -> None:
    for name, state in STATES.items():
        for retrier in state.get("Retry", []):
            for error in retrier["ErrorEquals"]:
                # The one exception: a worker that went silent is asked once more (see below).
                silent = name in WAITING and error in {"States.HeartbeatTimeout", "States.Timeout"}
                assert error == "States.ALL" or silent or error.split(".")[0] in {"Llm", "Tools", "Memory"}, (
                    name,
                    error,
                )
            assert retrier["IntervalSeconds"] <= 2 and retrier.get("JitterStrategy") == "FULL", name


@pytest.mark.parametrize("name", ["ToolCouldNotRun", "ApprovalRejected", "ApprovalTimedOut", "ApprovalMismatch"])
def test_a_tool_call_that_does_not_run_becomes_an_error_tool_result_block(name: str) -> None:
    parameters = STATES[name]["Parameters"]
    assert keys(parameters) == set(ToolResultBlock.model_fields)
    assert parameters["type"] == "tool_result" and parameters["is_error"] is True
    assert STATES[name].get("End") is True


def test_an_approval_binds_to_the_approval_id_the_call_and_its_arguments() -> None:
    [approve, reject] = STATES["CheckDecision"]["Choices"]
    assert {"Variable": "$.decision.decision", "StringEquals": "approve"} in approve["And"]
    assert {"Variable": "$.decision.tool_call_id", "StringEqualsPath": "$.call.id"} in approve["And"]
    assert {"Variable": "$.decision.args_hash", "StringEqualsPath": "$.call.args_hash"} in approve["And"]
    assert {"Variable": "$.decision.approval_id", "StringEqualsPath": "$.needs.approval_id"} in approve["And"]
    assert approve["Next"] == "GrantApproval" and STATES["GrantApproval"]["Next"] == "InvokeTool"
    assert STATES["CheckDecision"]["Default"] == "ApprovalMismatch"
    catches = {tuple(c["ErrorEquals"]): c["Next"] for c in STATES["RequestApproval"]["Catch"]}
    assert catches[("States.Timeout",)] == "ApprovalTimedOut"


def test_the_first_state_lets_only_tombstones_through_to_their_end() -> None:
    admit = STATES[DEFINITION["StartAt"]]
    assert admit["Type"] == "Choice"
    [rule] = admit["Choices"]
    assert rule == {"Variable": "$.cancelled", "IsPresent": True, "Next": "CancelledBeforeStart"}
    assert STATES["CancelledBeforeStart"]["Type"] == "Succeed"
    assert admit["Default"] == "PublishStarted"


def test_every_failure_path_publishes_run_failed_with_a_message() -> None:
    # Top-level states only: inside the Map a failure is a tool result, not a failed run.
    top = DEFINITION["States"].items()
    catches = {(n, tuple(c["ErrorEquals"])): c["Next"] for n, s in top for c in s.get("Catch", [])}
    # A rate-limited model call waits as told first; its bounds end in the same failure path.
    assert catches.pop(("CallModel", ("Llm.RateLimited",))) == "CountRateLimitWait"
    assert set(catches.values()) == {"CheckErrorCause"}
    assert {rule["Next"] for rule in STATES["CheckRateLimitWait"]["Choices"][:2]} == {"CheckErrorCause"}
    assert STATES["CheckRateLimitWaitLength"]["Choices"][0]["Next"] == "CheckErrorCause"
    assert STATES["WaitForRateLimit"]["Next"] == "CallModel"
    assert STATES["DefaultErrorCause"]["Next"] == "PublishFailed"
    assert STATES["CheckErrorCause"]["Default"] == "PublishFailed"


def test_a_tool_call_names_the_pinned_agent_version_and_retries_only_what_did_not_run() -> None:
    invoke = STATES["InvokeTool"]
    [entry] = invoke["Parameters"]["Entries"]
    # The tools service resolves `name@version` (a bare name would be judged as the latest version).
    assert entry["Detail"]["data"]["agent.$"] == "$.run.agent.ref"
    assert {"user_id.$", "approval.$"} <= set(entry["Detail"]["data"])
    [retrier, silent] = invoke["Retry"]
    # Tools.OutcomeUnknown (a world-changing call that may have happened) is never retried: the catch-all
    # turns it into the "did not complete" error result.
    assert set(retrier["ErrorEquals"]) == {"Tools.Unavailable", "Tools.Busy"}
    # A worker that went silent is asked once more: the tools service's idempotency record makes the new
    # request answer with the first one's result (or run it once the dead attempt's claim lapsed).
    assert set(silent["ErrorEquals"]) == {"States.HeartbeatTimeout", "States.Timeout"} and silent["MaxAttempts"] == 1
    assert [c["Next"] for c in invoke["Catch"] if c["ErrorEquals"] == ["States.ALL"]] == ["ToolCouldNotRun"]


@pytest.mark.parametrize("name", sorted(WAITING))
def test_a_step_whose_worker_went_silent_is_asked_once_more_but_a_human_is_not(name: str) -> None:
    """A Lambda that crashed mid-step has its message back only after the queue's visibility timeout (6x the
    function timeout: up to 30 min for llm), long after the step's own timeout: the step publishes its
    request once more instead (a new message, picked up at once), and the service answers it from its
    per-step idempotency record or does the work then. An approval that timed out is the human's answer."""
    silent = [r for r in STATES[name].get("Retry", []) if "States.Timeout" in r["ErrorEquals"]]
    if name == "RequestApproval":
        assert silent == []
        return
    [retrier] = silent
    assert retrier["MaxAttempts"] == 1
    assert STATES[name]["Retry"][-1] is retrier  # after the services' own retryable codes


def test_a_model_call_carries_the_runs_spend_and_caps() -> None:
    [entry] = STATES["CallModel"]["Parameters"]["Entries"]
    data = entry["Detail"]["data"]
    assert data["spent_microusd.$"] == "$.counters.cost_microusd"
    assert data["max_cost_microusd.$"] == "$.run.agent.limits.max_cost_microusd"
    assert data["spent_tokens.$"] == "$.counters.total_tokens"
    assert data["max_total_tokens.$"] == "$.run.agent.limits.max_total_tokens"


def test_every_fail_state_names_the_error_the_watchdog_reads_as_already_published() -> None:
    # The watchdog publishes run.failed for a FAILED execution unless its error is the Fail state's: a
    # Fail state with another error would get a second run.failed.
    fails = {name: state for name, state in STATES.items() if state["Type"] == "Fail"}
    assert fails and all(state["Error"] == RUN_FAILED_ERROR for state in fails.values())


@pytest.mark.parametrize("name", ["CallModel", "Compact"])
def test_a_model_call_names_the_agent_version_the_session_pinned(name: str) -> None:
    """The llm service reads the agent's fallback models: those of the pinned version, not the latest's."""
    [entry] = STATES[name]["Parameters"]["Entries"]
    assert entry["Detail"]["data"]["agent.$"] == "$.run.agent.ref"
