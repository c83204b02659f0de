"""The demo: one session, three turns through the HTTP API, with a tool call and memory across turns;
then a session on the `ops` agent whose `send_notification` call waits for a human approval, given
from the CLI: that part runs `agentwire chat`'s own code (`Chat`), fed `/approve` as its input.

It checks itself: a run that does not complete, or a last answer without "Ada" and 7006652, makes it
fail (exit status 1), so `agentwire demo` is also a smoke test of the whole system. The approval part
needs a model that calls `send_notification` when asked to notify the team; when the model answers
without calling it (the offline model has no rule for it yet), the demo says so and, unless
`require_approval`, goes on.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentwire_infra.commands.chat import DEFAULT_REASON, WAITING, Chat
from agentwire_infra.local.client import GatewayClient

TURNS: tuple[str, ...] = (
    "Hi! My name is Ada.",
    "What is 1234 * 5678?",
    "What's my name, and what was the last result you computed?",
)
#: What the last answer must contain: the name from turn one and the tool's result from turn two.
EXPECTED_IN_LAST_ANSWER: tuple[str, ...] = ("Ada", "7006652")

#: The approval part: a session on this agent, asked to notify the team (its send_notification needs approval).
APPROVAL_AGENT = "ops"
APPROVAL_TOOL = "send_notification"
APPROVAL_REQUEST = "Please notify the ops team: the nightly backup finished."
#: The reason `agentwire chat` gives a decision typed without one.
APPROVED_BY_CLI = DEFAULT_REASON["approve"]
APPROVAL_USER = "demo-user"

Printer = Callable[[str], None]


@dataclass
class DemoResult:
    session_id: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: The approval part: its session, its run, the approval as listed before the decision.
    approval_session_id: str = ""
    approval_run: dict[str, Any] = field(default_factory=dict)
    approval: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_message(message: dict[str, Any]) -> list[str]:
    role = message.get("role", "?")
    lines: list[str] = []
    for block in message.get("content", []):
        kind = block.get("type")
        if kind == "text":
            lines.append(f"  {role:>9}: {block.get('text', '')}")
        elif kind == "tool_use":
            lines.append(f"  {'tool call':>9}: {block.get('name')}({json.dumps(block.get('input', {}))})")
        elif kind == "tool_result":
            marker = " (error)" if block.get("is_error") else ""
            lines.append(f"  {'result':>9}: {_shorten(str(block.get('content', '')))}{marker}")
    return lines


def priced_model() -> str:
    """The model the packaged default agent runs on (what the offline model stands in for)."""
    from agentwire_contracts.agents import DEFAULT_AGENT, load_catalog

    return load_catalog().get(DEFAULT_AGENT).model


def cost_on_priced_model(input_tokens: int, output_tokens: int) -> float:
    """What the tokens would cost on `priced_model()`, from the llm service's price table."""
    from agentwire_contracts.content import Usage
    from agentwire_llm.pricing import default_price_table

    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return default_price_table().cost(priced_model(), usage).usd


def format_run(run: dict[str, Any]) -> list[str]:
    usage = run.get("usage") or {}
    cost = float(usage.get("cost_usd", 0.0))
    tokens_in, tokens_out = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    # The offline model costs nothing: say what the same tokens would cost on the agents' real model.
    estimate = f" (${cost_on_priced_model(tokens_in, tokens_out):.6f} on {priced_model()})" if cost == 0 else ""
    lines = [
        f"    run {run.get('run_id')}: {run.get('status')}" + (f" — {run['error']}" if run.get("error") else ""),
        f"    tokens: {tokens_in} in, {tokens_out} out; cost: ${cost:.6f}{estimate}",
    ]
    for step in run.get("steps", []):
        duration = step.get("duration_ms")
        took = f"{duration:8.1f} ms" if isinstance(duration, int | float) else "        -"
        service = str(step.get("service", "")).removeprefix("agentwire.")
        detail = _shorten(str(step.get("detail", "")), 70)
        lines.append(f"      {service:<8} {step.get('kind', ''):<8} {took}  {detail}")
    return lines


def pending_approval(client: GatewayClient, run_id: str) -> dict[str, Any] | None:
    approvals = client._ok(client.request("GET", f"/v1/runs/{run_id}/approvals"))["approvals"]
    return next((a for a in approvals if a.get("status") == "pending"), None)


def decide(client: GatewayClient, run_id: str, approval_id: str, decision: str, reason: str) -> dict[str, Any]:
    """A decision through the gateway's route, as `agentwire chat`'s `/approve` and `/reject` send it."""
    path = f"/v1/runs/{run_id}/approvals/{approval_id}"
    return client._ok(client.request("POST", path, json={"decision": decision, "reason": reason}))


def run_approval_demo(
    client: GatewayClient, result: DemoResult, *, out: Printer, timeout_s: float, require_approval: bool
) -> None:
    """A session on the ops agent asked to notify the team, driven by `agentwire chat`'s own code with
    `/approve` as its input: the call waits, the chat shows it and approves it, and it runs once."""
    # A user: the default policy lets an irreversible tool act only on behalf of one.
    session = client.create_session(agent=APPROVAL_AGENT, user_id=APPROVAL_USER)
    result.approval_session_id = session
    out(f"session {session} (agent {APPROVAL_AGENT}: {APPROVAL_TOOL} needs a human approval)")
    out(f"agentwire chat> {APPROVAL_REQUEST}")
    chat = Chat(client, session, out, decisions=io.StringIO("/approve\n"), spinner=io.StringIO(), echo=True)
    status = chat.say(APPROVAL_REQUEST)
    run_id = chat.run_id
    if run_id is None:
        result.problems.append(f"the message to the {APPROVAL_AGENT} agent was refused")
        return
    run = client.wait_for_run(run_id, timeout_s=timeout_s) if status == WAITING else client.get_run(run_id)
    result.approval_run = run
    if not chat.approvals:
        for line in format_run(run):
            out(line)
        note = f"the model answered without calling {APPROVAL_TOOL}, so there was nothing to approve"
        out(f"  ({note})\n")
        if require_approval:
            result.problems.append(note)
        return
    approval = chat.approvals[0]
    result.approval = approval
    out("")
    for message in client.messages(session):
        for line in format_message(message):
            out(line)
    for line in format_run(run):
        out(line)
    out("")
    if run.get("status") != "completed":
        result.problems.append(f"the approved run ended {run.get('status')}: {run.get('error')}")
        return
    results = [
        block
        for message in client.messages(session)
        for block in message.get("content", [])
        if block.get("type") == "tool_result" and block.get("tool_use_id") == approval["tool_call_id"]
    ]
    if len(results) != 1 or results[0].get("is_error"):
        result.problems.append(f"the approved {APPROVAL_TOOL} call did not run exactly once: {results}")


def run_demo(
    client: GatewayClient, *, out: Printer = print, timeout_s: float = 90.0, require_approval: bool = True
) -> DemoResult:
    result = DemoResult()
    result.session_id = client.create_session()
    out(f"session {result.session_id}\n")
    seen = 0
    for turn in TURNS:
        run = client.ask(result.session_id, turn, timeout_s=timeout_s)
        result.runs.append(run)
        transcript = client.messages(result.session_id)
        for message in transcript[seen:]:
            for line in format_message(message):
                out(line)
        seen = len(transcript)
        for line in format_run(run):
            out(line)
        out("")
        if run.get("status") != "completed":
            result.problems.append(f"the run for {turn!r} ended {run.get('status')}: {run.get('error')}")
    last = (result.runs[-1].get("output") or "") if result.runs else ""
    missing = [expected for expected in EXPECTED_IN_LAST_ANSWER if expected not in last]
    if missing:
        result.problems.append(f"the last answer lacks {missing}: {last!r}")
    run_approval_demo(client, result, out=out, timeout_s=timeout_s, require_approval=require_approval)
    every = [*result.runs, *([result.approval_run] if result.approval_run else [])]
    total_in = sum((run.get("usage") or {}).get("input_tokens", 0) for run in every)
    total_out = sum((run.get("usage") or {}).get("output_tokens", 0) for run in every)
    cost = sum(float((run.get("usage") or {}).get("cost_usd", 0.0)) for run in every)
    out(f"{len(every)} runs, {total_in} input tokens, {total_out} output tokens, ${cost:.6f}")
    if cost == 0:
        would = cost_on_priced_model(total_in, total_out)
        out(
            f"(the offline model is priced at $0; on {priced_model()}, the agents' model, these tokens would cost "
            f"${would:.6f} from the llm service's price table)"
        )
    out("demo OK" if result.ok else "demo FAILED:\n  " + "\n  ".join(result.problems))
    return result
