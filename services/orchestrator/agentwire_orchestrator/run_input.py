"""The execution input of a run: exactly the keys the state machine reads, every one present.

JSONPath on a missing key is a runtime error in Step Functions, so optional values are present as
null rather than absent. Pure functions: no clock, no randomness, so a redelivered request builds the
very same input (Step Functions treats a same-name, same-input StartExecution as idempotent).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agentwire_contracts.agents import AgentDefinition
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.run import RunRequested

#: Step Functions' limit for execution names (and allowed characters: no whitespace, brackets,
#: wildcards, punctuation or control characters). The run_id is the execution name.
MAX_EXECUTION_NAME = 80
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
#: Step Functions' limit for an execution's input (and any state's data).
MAX_INPUT_BYTES = 256 * 1024

COUNTER_KEYS = (
    "model_turns",
    "tool_calls",
    #: tool_calls plus the calls of the model turn in hand (what tool_calls becomes if they run).
    "tool_calls_after",
    #: every token of every model call: input, output, and the prompt-cache writes and reads (which the
    #: providers count apart from input_tokens); the agent's max_total_tokens bounds it.
    "total_tokens",
    "cost_microusd",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


@dataclass(frozen=True)
class StepTimeouts:
    """How long each waiting step may wait for its worker (`TimeoutSecondsPath` reads `$.run.timeouts`).

    Beyond it the step fails with States.Timeout: a worker that never answers cannot hang a run."""

    catalog_s: int = 60
    memory_s: int = 60
    model_s: int = 600
    tool_s: int = 300
    #: A tool call whose worker sends no `tool.invocation.heartbeat.v1` for this long fails with
    #: States.HeartbeatTimeout (a crashed or stuck worker is noticed long before `tool_s`). It covers the
    #: queue wait before the first beat too. Step Functions wants it below the timeout: capped at tool_s - 1.
    tool_heartbeat_s: int = 90

    def __post_init__(self) -> None:
        if self.tool_s < 2 or self.tool_heartbeat_s < 1:
            raise ValueError("tool_s must be at least 2 s and tool_heartbeat_s at least 1 s")

    def as_input(self) -> dict[str, int]:
        return {
            "catalog_s": self.catalog_s,
            "memory_s": self.memory_s,
            "model_s": self.model_s,
            "tool_s": self.tool_s,
            "tool_heartbeat_s": min(self.tool_heartbeat_s, self.tool_s - 1),
        }


def is_valid_execution_name(run_id: str) -> bool:
    return bool(EXECUTION_NAME.fullmatch(run_id))


def build_execution_input(
    event: Event[RunRequested], agent: AgentDefinition, timeouts: StepTimeouts | None = None
) -> dict[str, Any]:
    """The state machine's input for the run `event` requests, with `agent` resolved."""
    metadata, data = event.metadata, event.data
    if metadata.run_id is None:
        raise ValueError("run.requested has no run_id")
    return {
        "run": {
            "run_id": metadata.run_id,
            "tenant_id": metadata.tenant_id,
            "session_id": data.session_id,
            "user_id": data.user_id,
            "trace_header": metadata.trace_header,
            "traceparent": metadata.traceparent,
            "request_event_id": metadata.event_id,
            "deadline": deadline(event, agent),
            "agent": agent_input(agent),
            "timeouts": (timeouts or StepTimeouts()).as_input(),
        },
        "append": {"messages": [data.input.model_dump(mode="json")]},
        # `at`: when the counters were last updated (CountTurn stamps it; the deadline check reads it).
        "counters": {**dict.fromkeys(COUNTER_KEYS, 0), "at": rfc3339(event.metadata.occurred_at)},
    }


def deadline(event: Event[RunRequested], agent: AgentDefinition) -> str:
    """When the run must end (RFC 3339, UTC): the request's time plus the agent's max wall time.

    From the request, not the clock, so a redelivered request builds the same input."""
    return rfc3339(event.metadata.occurred_at + timedelta(seconds=agent.limits.max_wall_time_s))


def rfc3339(moment: datetime) -> str:
    """UTC to the second with `Z` (`2030-01-02T03:04:05Z`): the form every Step Functions timestamp
    comparison reads (moto's only reads this one)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def agent_input(agent: AgentDefinition) -> dict[str, Any]:
    """`$.run.agent`: everything the state machine reads of the agent (every key present, nulls allowed)."""
    return {
        "name": agent.name,
        "version": agent.version,
        #: `name@version`: how the tools service resolves the agent a call is made for (the pinned version).
        "ref": agent.ref,
        "model": agent.model,
        "system": agent.system,
        "tools": list(agent.tools),
        "max_tokens": agent.max_tokens,
        "temperature": agent.temperature,
        "cache_responses": agent.cache_responses,
        "tool_concurrency": agent.tool_concurrency,
        "limits": {
            "max_model_turns": agent.limits.max_model_turns,
            "max_tool_calls": agent.limits.max_tool_calls,
            "max_total_tokens": agent.limits.max_total_tokens,
            "max_cost_microusd": agent.limits.max_cost_microusd,
            "max_wall_time_s": agent.limits.max_wall_time_s,
        },
        "approval": {
            "require_for": list(agent.approval.require_for),
            "waive_for": list(agent.approval.waive_for),
            "timeout_s": agent.approval.timeout_s,
        },
        "context": {
            "max_context_tokens": agent.context.max_context_tokens,
            "model_context_tokens": agent.context.model_context_tokens,
            "compaction_threshold_tokens": agent.context.compaction_threshold_tokens,
        },
    }


def encode(execution_input: dict[str, Any]) -> str:
    """Deterministic JSON (sorted keys, compact) so equal inputs are equal strings."""
    return json.dumps(execution_input, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def execution_arn(state_machine_arn: str, name: str) -> str:
    """`arn:…:stateMachine:<machine>` → `arn:…:execution:<machine>:<name>`."""
    parts = state_machine_arn.split(":")
    if len(parts) != 7 or parts[5] != "stateMachine":
        raise ValueError(f"not a state machine ARN: {state_machine_arn!r}")
    return ":".join([*parts[:5], "execution", parts[6], name])
