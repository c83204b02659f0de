"""Replay a recorded run: the same user input, the recorded model answers, another agent version.

1. **Recording** (`load_recording`): the local event recorder's `events/<run_id>.jsonl` holds every
   event of the run — its `run.requested` (input, agent, user), every `llm.completion.completed` (the
   model's answers, by step and purpose), the tool calls and their results, and how the run ended.
2. **Script** (`Recording.script`): the model answers as Anthropic-shaped messages, in the order the
   run asked for them — the scripted provider's format — so the replay's model answers as the recording's
   did, whatever the agent under test sends it.
3. **Replay** (`replay`): a fresh local stack with the scripted provider fed that script; a new run
   (new run and session ids, same tenant and user) of the recorded input is put on its bus as
   `run.requested` with the chosen agent and version (the orchestrator honours `agent_version`).
4. **Diff** (`diff`): the tool calls asked for (name and argument hash, in order), the final text, the
   model turns and the stop — recording against replay.

Side effects: none outside the replay's own fresh stack. Its tools worker runs in replay mode
(`TOOLS_REPLAY_RESULTS`, see `agentwire_tools.replaying`): a tool that is not read-only answers with the
recorded result of the same `tool_call.id` and never runs (a call the recording lacks is a tool error);
read-only tools run again. An approval the replay waits for is decided as it was in the recording (the
same approve/reject for the same call; a call the recording never had decided is rejected), published on
the replay's bus with the waiting task's token, as the gateway would.

The replay starts from an empty session: the recorded run's earlier turns are not in its context. The
scripted model does not read the context, so the answers are the recorded ones either way; an agent
version whose system prompt or tools change what it *asks for* shows up in the diff.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentwire_contracts.agents import split_ref
from agentwire_contracts.content import Message, canonical_args_hash
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.run import RunApprovalDecided, RunApprovalRequested, RunRequested
from agentwire_contracts.publish import EventPublisher

from agentwire_infra.local.recorder import EVENTS_DIR, read_run_events, run_file

TERMINAL = ("run.completed.v1", "run.failed.v1", "run.cancelled.v1")


class ReplayError(RuntimeError):
    """The run cannot be replayed (no recording, an unfinished run)."""


@dataclass(frozen=True)
class ToolCallSeen:
    tool_call_id: str
    name: str
    args_hash: str

    def key(self) -> tuple[str, str]:
        return (self.name, self.args_hash)


@dataclass
class Recording:
    run_id: str
    tenant_id: str
    user_id: str | None
    agent: str
    agent_version: str | None
    input: dict[str, Any]
    #: The model's answers (`llm.completion.completed` data), one per (step, purpose), in arrival order.
    completions: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[ToolCallSeen] = field(default_factory=list)
    #: tool_call_id → {"tool_name", "content", "is_error"}: what each call answered (the first answer).
    tool_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: tool_call_id → {"decision", "reason"}: how each approval was decided.
    decisions: dict[str, dict[str, str]] = field(default_factory=dict)
    approvals: int = 0
    status: str = ""
    output_text: str = ""
    model_turns: int = 0

    def script(self) -> list[dict[str, Any]]:
        """The recorded answers as Anthropic-shaped messages (the scripted provider's entries)."""
        return [anthropic_message(completion, index) for index, completion in enumerate(self.completions)]

    def input_text(self) -> str:
        return Message.model_validate(self.input).text()


def anthropic_message(completion: dict[str, Any], index: int) -> dict[str, Any]:
    usage = completion.get("usage") or {}
    return {
        "type": "message",
        "id": f"msg_replay_{index}",
        "role": "assistant",
        "model": completion.get("model") or "replayed",
        "content": (completion.get("message") or {}).get("content", []),
        "stop_reason": completion.get("stop_reason") or "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": int(usage.get("input_tokens", 0)),
            "output_tokens": int(usage.get("output_tokens", 0)),
        },
    }


def tool_result_of(completed: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`tool.invocation.completed` data → (tool_call_id, the result as the tools' replay mode reads it)."""
    result = completed["result"]
    return result["tool_use_id"], {
        "tool_name": completed["tool_name"], "content": result["content"], "is_error": result["is_error"],
    }  # fmt: skip


def load_recording(events_dir: Path, run_id: str) -> Recording:
    """The recording of `run_id` from the local recorder's `<events_dir>/<run_id>.jsonl`."""
    events = read_run_events(events_dir, run_id)
    if not events:
        raise ReplayError(
            f"no recorded events for run {run_id} in {run_file(events_dir, run_id)}: the local stack records "
            "every run's events there while it runs (record_events); on AWS the bus archive keeps them"
        )
    requested = [e for e in events if e["detail_type"] == "run.requested.v1"]
    if not requested:
        raise ReplayError(f"the recording of {run_id} has no run.requested event (recorded after it was sent?)")
    request = requested[0]["detail"]
    data = request["data"]
    recording = Recording(
        run_id=run_id,
        tenant_id=request["metadata"]["tenant_id"],
        user_id=data.get("user_id"),
        agent=data.get("agent") or "assistant",
        agent_version=data.get("agent_version"),
        input=data["input"],
    )
    seen_steps: set[tuple[int, str]] = set()
    seen_calls: set[str] = set()
    for event in events:
        kind, data = event["detail_type"], event["detail"].get("data") or {}
        if kind == "llm.completion.completed.v1":
            key = (int(data.get("step", 0)), str(data.get("purpose", "turn")))
            if key not in seen_steps:  # a redelivered request answered twice is one answer
                seen_steps.add(key)
                recording.completions.append(data)
        elif kind == "tool.invocation.requested.v1":
            call = data["tool_call"]
            if call["id"] not in seen_calls:
                seen_calls.add(call["id"])
                recording.tool_calls.append(
                    ToolCallSeen(call["id"], call["name"], call.get("args_hash") or canonical_args_hash(call["input"]))
                )
        elif kind == "tool.invocation.completed.v1":
            recording.tool_results.setdefault(*tool_result_of(data))
        elif kind == "run.approval.requested.v1":
            recording.approvals += 1
        elif kind == "run.approval.decided.v1":
            recording.decisions.setdefault(
                data["tool_call_id"], {"decision": data["decision"], "reason": data.get("reason", "")}
            )
        elif kind in TERMINAL and not recording.status:
            recording.status = kind.split(".")[1]
            recording.output_text = data.get("output_text", "")
            recording.model_turns = int(data.get("model_turns", 0))
    return recording


def refusal(recording: Recording) -> str | None:
    """Why this recording cannot be replayed (None: it can)."""
    if recording.status != "completed":
        return f"run {recording.run_id} did not complete ({recording.status or 'still running'}): nothing to compare"
    return None


@dataclass
class Replayed:
    run_id: str
    agent: str
    status: str
    output_text: str = ""
    model_turns: int = 0
    tool_calls: list[ToolCallSeen] = field(default_factory=list)
    #: tool_call_id → {"tool_name", "content", "is_error"}, as in `Recording.tool_results`.
    tool_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None


def replayed_from_events(run_id: str, agent: str, events: list[dict[str, Any]]) -> Replayed:
    result = Replayed(run_id=run_id, agent=agent, status="")
    seen: set[str] = set()
    for event in events:
        kind, data = event["detail_type"], event["detail"].get("data") or {}
        if kind == "tool.invocation.requested.v1" and data["tool_call"]["id"] not in seen:
            call = data["tool_call"]
            seen.add(call["id"])
            result.tool_calls.append(
                ToolCallSeen(call["id"], call["name"], call.get("args_hash") or canonical_args_hash(call["input"]))
            )
        elif kind == "tool.invocation.completed.v1":
            result.tool_results.setdefault(*tool_result_of(data))
        elif kind in TERMINAL and not result.status:
            result.status = kind.split(".")[1]
            result.output_text = data.get("output_text", "")
            result.model_turns = int(data.get("model_turns", 0))
            error = data.get("error") or {}
            result.error = f"{error.get('code')}: {error.get('message')}" if error else None
    return result


def diff(recording: Recording, replayed: Replayed) -> list[str]:
    """What differs between the recording and the replay (empty: the same run)."""
    lines: list[str] = []
    if replayed.status != "completed":
        lines.append(f"status: recorded completed, replayed {replayed.status} ({replayed.error})")
    recorded_calls = [call.key() for call in recording.tool_calls]
    replayed_calls = [call.key() for call in replayed.tool_calls]
    if recorded_calls != replayed_calls:
        lines.append("tool calls (name, args hash):")
        lines += [
            f"  - {name} {digest[:12]}" for name, digest in recorded_calls if (name, digest) not in replayed_calls
        ]
        lines += [
            f"  + {name} {digest[:12]}" for name, digest in replayed_calls if (name, digest) not in recorded_calls
        ]
        if sorted(recorded_calls) == sorted(replayed_calls):
            lines.append("  (the same calls in another order)")
    if recording.output_text != replayed.output_text:
        lines += ["final text:", f"  - {recording.output_text!r}", f"  + {replayed.output_text!r}"]
    if recording.model_turns != replayed.model_turns:
        lines.append(f"model turns: {recording.model_turns} → {replayed.model_turns}")
    return lines


def replay(
    recording: Recording,
    *,
    agent: str | None = None,
    workdir: Path | None = None,
    timeout_s: float = 60.0,
    out: Callable[[str], None] = print,
) -> Replayed:
    """Re-drive the recorded run on a fresh local stack with the scripted provider (see the module doc)."""
    reason = refusal(recording)
    if reason:
        raise ReplayError(reason)
    from agentwire_infra.local.stack import LocalStack, StackSettings

    name, version = split_ref(agent or recording.agent)
    version_or_none = version or (None if agent else recording.agent_version)
    ref = name + (f"@{version_or_none}" if version_or_none else "")
    with tempfile.TemporaryDirectory(prefix="agentwire-replay-") as scratch:
        root = workdir or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        script = root / "replay-script.json"
        script.write_text(json.dumps(recording.script(), indent=1))
        out(f"replaying run {recording.run_id} ({len(recording.completions)} model answers) as {ref}…")
        results = root / "replay-tool-results.json"
        results.write_text(json.dumps(recording.tool_results, indent=1))
        settings = StackSettings(
            workdir=root / "stack", llm_provider="scripted", llm_script=script, dev_tenant=None,
            write_local_json=False, worker_env={"TOOLS_REPLAY_RESULTS": str(results.resolve())},
        )  # fmt: skip
        with LocalStack(settings) as stack:
            run_id = f"replay_{uuid.uuid4().hex}"
            request = Event.create(
                RunRequested(
                    session_id=f"replay_{uuid.uuid4().hex[:24]}",
                    input=Message.model_validate(recording.input),
                    agent=name,
                    agent_version=version_or_none,
                    user_id=recording.user_id,
                ),
                tenant_id=recording.tenant_id,
                run_id=run_id,
            )
            bus = EventPublisher(client=stack.client("events"), bus_name=stack.describe()["bus_name"])
            bus.publish_one(request)
            events_dir = stack.workdir / EVENTS_DIR
            deadline = time.monotonic() + timeout_s
            decided: set[str] = set()
            while True:
                events = read_run_events(events_dir, run_id)
                if any(e["detail_type"] in TERMINAL for e in events):
                    return replayed_from_events(run_id, ref, events)
                for waiting in events:
                    if waiting["detail_type"] == "run.approval.requested.v1":
                        decide_as_recorded(recording, waiting, bus, decided)
                if time.monotonic() > deadline:
                    return Replayed(run_id=run_id, agent=ref, status="timed out", error=f"not ended in {timeout_s}s")
                time.sleep(0.1)


def decide_as_recorded(recording: Recording, waiting: dict[str, Any], bus: EventPublisher, decided: set[str]) -> None:
    """Answer one `run.approval.requested` of the replay as the recording decided that call (once)."""
    call_id = str(waiting["detail"]["data"]["tool_call"]["id"])
    if call_id in decided:  # the driver polls: each approval is read and answered once
        return
    requested = Event[RunApprovalRequested].model_validate(waiting["detail"])
    recorded = recording.decisions.get(call_id)
    decision = RunApprovalDecided(
        session_id=requested.data.session_id,
        approval_id=requested.data.approval_id,
        tool_call_id=call_id,
        args_hash=requested.data.args_hash,
        decision="approve" if recorded and recorded["decision"] == "approve" else "reject",
        reason=recorded["reason"] if recorded else "replay: this call was never decided in the recording",
        decided_by=f"replay of {recording.run_id}",
    )
    bus.publish_one(requested.answer(decision))
    decided.add(call_id)


def report(recording: Recording, replayed: Replayed) -> list[str]:
    lines = [
        f"recorded {recording.run_id} ({recording.agent}"
        + (f"@{recording.agent_version}" if recording.agent_version else "")
        + f"): {len(recording.tool_calls)} tool call(s), {recording.model_turns} turn(s)",
        f"replayed {replayed.run_id} ({replayed.agent}): {replayed.status}, {len(replayed.tool_calls)} tool call(s), "
        f"{replayed.model_turns} turn(s)",
    ]
    differences = diff(recording, replayed)
    lines += differences or ["no difference: the same tool calls and the same final answer"]
    return lines
