"""A run's timeline from what the local stack records: its events (`events/<run_id>.jsonl`, from the
recorder's tap on the bus) and the services' spans (`spans/*.jsonl`).

Each step is a request the state machine published and the answer that resumed it (joined by
`causation_id`): which service did it, when it started (relative to `run.requested`), how long it took
end to end, how much of that the handler itself took (its consumer span), tokens and cost of a model
turn, a tool's input and result (truncated), and the error of a failed step.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agentwire_contracts import telemetry

from agentwire_infra.local.recorder import EVENTS_DIR, NO_RUN, read_run_events

SPANS_DIR = "spans"
#: Memory publishes it beside its answer (same cause); it is not the answer.
APPENDED = "memory.message.appended.v1"
TEXT_LIMIT = 60
FINAL_TYPES = ("run.completed.v1", "run.failed.v1", "run.cancelled.v1")
STEP_KINDS = {
    "memory.context.requested.v1": "context",
    "llm.completion.requested.v1": "model",
    "tool.invocation.requested.v1": "tool",
    "tool.catalog.requested.v1": "catalog",
    "run.approval.requested.v1": "approval",
}
#: Which service answers each request (the answer's source says it too; this names a step still waiting).
ANSWERED_BY = {
    "memory.context.requested.v1": "memory",
    "llm.completion.requested.v1": "llm",
    "tool.invocation.requested.v1": "tools",
    "tool.catalog.requested.v1": "tools",
    "run.approval.requested.v1": "gateway",
}


def _time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def short(value: Any, limit: int = TEXT_LIMIT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return telemetry.truncate(" ".join(text.split()), limit)


@dataclass
class Step:
    index: int
    kind: str
    service: str
    request_type: str
    start_ms: float
    duration_ms: float | None
    status: str  # ok | failed | waiting
    answer_type: str | None = None
    handler_ms: float | None = None
    summary: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_microusd: int = 0
    tool: str | None = None
    tool_input: str | None = None
    tool_result: str | None = None
    error: str | None = None


@dataclass
class RunView:
    run_id: str
    status: str
    tenant_id: str | None = None
    session_id: str | None = None
    started_at: float | None = None
    duration_ms: float | None = None
    model_turns: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_microusd: int = 0
    error: str | None = None
    trace_ids: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    span_count: int = 0
    execution_id: str | None = None
    steps: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_spans(workdir: Path) -> list[dict[str, Any]]:
    return telemetry.read_spans(sorted((workdir / SPANS_DIR).glob("*.jsonl")))


def list_run_ids(workdir: Path) -> list[str]:
    directory = workdir / EVENTS_DIR
    return [path.stem for path in directory.glob("*.jsonl") if path.stem != NO_RUN]


def _summary(kind: str, request: dict[str, Any], answer: dict[str, Any] | None) -> str:
    data = (answer or {}).get("detail", {}).get("data", {})
    if kind == "context":
        if not answer:
            return ""
        return f"appended {data.get('appended', 0)}, context of {data.get('message_count', 0)} message(s)"
    if kind == "model":
        if not answer:
            return f"model {request['detail']['data'].get('model', '')}"
        return f"{data.get('model') or request['detail']['data'].get('model', '')} → {data.get('stop_reason', '')}"
    if kind == "catalog":
        return ", ".join(tool.get("name", "") for tool in data.get("tools", []))
    if kind == "approval":
        call = request["detail"]["data"].get("tool_call", {})
        return f"approve {call.get('name', '')}?"
    return ""


def build_run(workdir: Path, run_id: str, spans: list[dict[str, Any]] | None = None) -> RunView:
    events = read_run_events(workdir / EVENTS_DIR, run_id)
    if not events:
        raise KeyError(run_id)
    events.sort(key=lambda line: (_time(line["detail"]["metadata"].get("occurred_at")) or 0, line["recorded_at"]))
    by_cause: dict[str, list[dict[str, Any]]] = {}
    for line in events:
        cause = line["detail"]["metadata"].get("causation_id")
        if cause:
            by_cause.setdefault(cause, []).append(line)
    first = events[0]
    origin = _time(first["detail"]["metadata"].get("occurred_at")) or first["recorded_at"]
    view = RunView(
        run_id=run_id, status="running", tenant_id=first["detail"]["metadata"].get("tenant_id"), started_at=origin
    )

    run_spans = [
        span
        for span in (spans if spans is not None else load_spans(workdir))
        if span.get("attributes", {}).get(telemetry.ATTR_RUN_ID) == run_id
    ]
    handler_span: dict[tuple[str, str], dict[str, Any]] = {}
    for span in run_spans:
        attributes = span.get("attributes", {})
        if attributes.get(telemetry.ATTR_EVENT_ID):
            handler_span[(attributes[telemetry.ATTR_EVENT_ID], span.get("service", ""))] = span
    view.trace_ids = sorted({span["trace_id"] for span in run_spans})
    view.services = sorted({span.get("service", "") for span in run_spans})
    view.span_count = len(run_spans)

    for line in events:
        detail_type = line["detail_type"]
        metadata, data = line["detail"]["metadata"], line["detail"].get("data", {})
        view.session_id = view.session_id or data.get("session_id")
        at = _time(metadata.get("occurred_at")) or line["recorded_at"]
        if detail_type == "run.started.v1":
            view.execution_id = data.get("execution_id")
        if detail_type in FINAL_TYPES:
            view.status = detail_type.split(".")[1]
            view.duration_ms = round((at - origin) * 1000, 1)
            usage = data.get("usage") or {}
            view.input_tokens = int(usage.get("input_tokens", 0))
            view.output_tokens = int(usage.get("output_tokens", 0))
            view.cost_microusd = int(data.get("cost_microusd", 0))
            view.model_turns = int(data.get("model_turns", 0))
            view.tool_calls = int(data.get("tool_calls", 0))
            error = data.get("error")
            if error:
                view.error = f"{error.get('code')}: {error.get('message', '')}"
            if detail_type == "run.cancelled.v1":
                view.error = f"cancelled: {data.get('reason', '')}"
        kind = STEP_KINDS.get(detail_type)
        if kind is None:
            continue
        answers = [a for a in by_cause.get(metadata["event_id"], []) if a["detail_type"] != APPENDED]
        answer = answers[-1] if answers else None
        service = (answer["source"] if answer else "").removeprefix("agentwire.") or ANSWERED_BY.get(detail_type, "?")
        end = (_time(answer["detail"]["metadata"].get("occurred_at")) or answer["recorded_at"]) if answer else None
        step = Step(
            index=len(view.steps) + 1,
            kind=kind,
            service=service,
            request_type=detail_type,
            start_ms=round((at - origin) * 1000, 1),
            duration_ms=round((end - at) * 1000, 1) if end is not None else None,
            status="waiting"
            if answer is None
            else ("failed" if answer["detail_type"].endswith(".failed.v1") else "ok"),
            answer_type=answer["detail_type"] if answer else None,
            summary=_summary(kind, line, answer),
        )
        consumer_span = handler_span.get((metadata["event_id"], service))
        if consumer_span is not None:
            step.handler_ms = consumer_span.get("duration_ms")
        answer_data = answer["detail"].get("data", {}) if answer else {}
        if kind == "model" and answer and step.status == "ok":
            usage = answer_data.get("usage") or {}
            step.input_tokens = int(usage.get("input_tokens", 0))
            step.output_tokens = int(usage.get("output_tokens", 0))
            step.cost_microusd = int(answer_data.get("cost_microusd", 0))
        if kind in ("tool", "approval"):
            call = data.get("tool_call", {})
            step.tool = call.get("name")
            step.tool_input = short(call.get("input", {}))
            if answer and step.status == "ok" and kind == "tool":
                result = answer_data.get("result") or {}
                step.tool_result = short(result.get("content", ""))
                if result.get("is_error"):
                    step.error = "tool returned an error"
        if step.status == "failed":
            step.error = f"{answer_data.get('code')}: {short(answer_data.get('message', ''), 200)}"
        view.steps.append(step)
    if view.status == "running" and view.steps:
        last = view.steps[-1]
        view.duration_ms = last.start_ms + (last.duration_ms or 0)
    return view


def list_runs(workdir: Path, limit: int | None = None) -> list[RunView]:
    spans = load_spans(workdir)
    views = []
    for run_id in list_run_ids(workdir):
        try:
            views.append(build_run(workdir, run_id, spans))
        except KeyError:
            continue
    views.sort(key=lambda view: view.started_at or 0, reverse=True)
    return views[:limit] if limit else views


# -- drawing -----------------------------------------------------------------------------------------

BAR_WIDTH = 32


def _ms(value: float | None) -> str:
    if value is None:
        return "…"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def _usd(microusd: int) -> str:
    return f"${microusd / 1e6:.4f}"


def bar(start_ms: float, duration_ms: float | None, total_ms: float, width: int = BAR_WIDTH) -> str:
    """A Gantt bar: where the step sits in the run and how long it took (at least one cell)."""
    total = max(total_ms, 1.0)
    begin = min(width - 1, int(start_ms / total * width))
    length = width - begin if duration_ms is None else max(1, round(duration_ms / total * width))
    length = min(length, width - begin)
    fill = "░" if duration_ms is None else "█"
    return " " * begin + fill * length + " " * (width - begin - length)


def render_run(view: RunView) -> str:
    lines = [
        f"run {view.run_id}  {view.status.upper()}  tenant {view.tenant_id}  session {view.session_id}",
        f"  {_ms(view.duration_ms)}, {view.model_turns} model turn(s), {view.tool_calls} tool call(s), "
        f"{view.input_tokens} in / {view.output_tokens} out tokens, {_usd(view.cost_microusd)}",
    ]
    if view.trace_ids:
        lines.append(f"  trace {', '.join(view.trace_ids)}  ({view.span_count} spans from {', '.join(view.services)})")
    if view.execution_id:
        lines.append(f"  execution {view.execution_id}")
    if view.error:
        lines.append(f"  error: {view.error}")
    lines.append("")
    total = view.duration_ms or max((s.start_ms + (s.duration_ms or 0) for s in view.steps), default=1.0)
    lines.append(
        f"  {'#':>2}  {'start':>8}  {'service':<12} {'step':<8} {'took':>8} {'handler':>8}  "
        f"{'timeline':<{BAR_WIDTH}}  detail"
    )
    for step in view.steps:
        detail = step.summary
        if step.kind == "model" and step.status == "ok":
            detail += f"  {step.input_tokens} in/{step.output_tokens} out {_usd(step.cost_microusd)}"
        if step.tool:
            detail = f"{step.tool}({step.tool_input})"
            if step.tool_result is not None:
                detail += f" → {step.tool_result}"
        if step.error:
            detail += f"  ✗ {step.error}"
        marker = {"ok": " ", "failed": "✗", "waiting": "…"}[step.status]
        lines.append(
            f"{marker} {step.index:>2}  {'+' + _ms(step.start_ms):>8}  {step.service:<12} {step.kind:<8} "
            f"{_ms(step.duration_ms):>8} {_ms(step.handler_ms) if step.handler_ms is not None else '':>8}  "
            f"{bar(step.start_ms, step.duration_ms, total)}  {detail}"
        )
    return "\n".join(lines)


def render_list(views: list[RunView]) -> str:
    if not views:
        return "no runs recorded yet (start the stack with `agentwire up`, then send a message)"
    lines = [f"{'run':<38} {'status':<10} {'started':<19} {'took':>8} {'steps':>5} {'tokens in/out':>14} {'cost':>9}"]
    for view in views:
        started = datetime.fromtimestamp(view.started_at).strftime("%Y-%m-%d %H:%M:%S") if view.started_at else ""
        lines.append(
            f"{view.run_id:<38} {view.status:<10} {started:<19} {_ms(view.duration_ms):>8} {len(view.steps):>5} "
            f"{f'{view.input_tokens}/{view.output_tokens}':>14} {_usd(view.cost_microusd):>9}"
        )
    return "\n".join(lines)
