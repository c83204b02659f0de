"""The benchmark: N runs at concurrency C through the HTTP API, on the scripted model provider.

Every run is three model turns (tool_use calculator → tool_use current_time → end_turn), so two tool
calls and ten waitForTaskToken hops (catalog, 3 x context, 3 x model, 2 x tool, final append).
Completion is watched through one ListExecutions call per interval (not a GET per run, which would
load the emulator the benchmark measures); latencies come from Step Functions' execution history:

* a hop is one waitForTaskToken task, TaskSubmitted → TaskSucceeded/TaskFailed/TaskTimedOut, i.e.
  putEvents → rule → SQS → worker → handler → answer event → rule → SQS → resume → SendTaskSuccess;
* state transitions are the StateEntered events of an execution.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agentwire_infra.local.client import GatewayClient
from agentwire_infra.local.stack import LocalStack

DEFAULT_RESULTS = Path("bench/results.json")
TERMINAL_EXECUTION_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
HOP_END_EVENTS = frozenset({"TaskSucceeded", "TaskFailed", "TaskTimedOut"})
WAIT_FOR_TASK_TOKEN = ".waitForTaskToken"  # noqa: S105 (an ASL resource suffix)
MODEL_TURNS_PER_RUN = 3
BENCH_PROMPT = "What is 1234 * 5678, and what time is it?"

Printer = Callable[[str], None]


# -- the script --------------------------------------------------------------------------------------


def _message(index: int, content: list[dict[str, Any]], stop_reason: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_bench_{index:06d}",
        "role": "assistant",
        "model": "bench-scripted",
        "content": content,
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 400 + 40 * (index % MODEL_TURNS_PER_RUN), "output_tokens": 20},
    }


def _calculator(index: int) -> dict[str, Any]:
    return _message(
        index,
        [
            {"type": "text", "text": "Let me calculate that."},
            {
                "type": "tool_use",
                "id": f"toolu_bench_{index:06d}",
                "name": "calculator",
                "input": {"expression": "1234 * 5678"},
            },
        ],
        "tool_use",
    )


def _current_time(index: int) -> dict[str, Any]:
    return _message(
        index,
        [{"type": "tool_use", "id": f"toolu_bench_{index:06d}", "name": "current_time", "input": {"timezone": "UTC"}}],
        "tool_use",
    )


def _answer(index: int) -> dict[str, Any]:
    return _message(
        index, [{"type": "text", "text": "1234 * 5678 = 7006652, and the time is as the tool says."}], "end_turn"
    )


TURN_KINDS = (_calculator, _current_time, _answer)


def bench_script(runs: int, concurrency: int = 1, warmup_runs: int = 0) -> list[dict[str, Any]]:
    """Three entries per run (calculator, current_time, answer), laid out in blocks by turn position.

    The script is consumed in one global order by whichever run calls the model next. Laid out run by
    run ([calc, time, answer] x N), concurrent runs would take entries at random turn positions, and a
    run's number of turns would be geometric: some would hit the agent's turn limit. Laid out in blocks
    of `concurrency` entries per turn position (C calculators, C current_times, C answers, ...), each
    of the C runs in flight takes about one entry from each block, so every run gets ~3 turns, and a run
    that takes an entry out of step still gets a valid one (every tool_use is answerable anywhere, tool
    ids are unique). The block structure also keeps runs from drifting apart: the answer block ends the
    runs in flight together. The warm-up runs, one at a time, come first, each as [calc, time, answer].
    """
    entries: list[dict[str, Any]] = []
    for _ in range(warmup_runs):
        for kind in TURN_KINDS:
            entries.append(kind(len(entries)))
    remaining = runs
    while remaining > 0:
        block = min(concurrency, remaining)
        for kind in TURN_KINDS:
            for _ in range(block):
                entries.append(kind(len(entries)))
        remaining -= block
    return entries


def write_script(path: Path, runs: int, concurrency: int = 1, warmup_runs: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bench_script(runs, concurrency, warmup_runs)))
    return path


# -- execution history -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    state: str
    duration_ms: float
    outcome: str


def hops_of(history: Sequence[dict[str, Any]]) -> list[Hop]:
    """Every waitForTaskToken task of one execution's history, from TaskSubmitted to its outcome."""
    by_id = {event["id"]: event for event in history}

    def state_of(event: dict[str, Any]) -> str:
        # Walk back TaskSubmitted → TaskStarted → TaskScheduled → TaskStateEntered for the state's name.
        current: dict[str, Any] | None = event
        while current is not None:
            details = current.get("stateEnteredEventDetails")
            if details:
                return str(details.get("name", "?"))
            current = by_id.get(current.get("previousEventId", 0))
        return "?"

    hops: list[Hop] = []
    for event in history:
        if event["type"] not in HOP_END_EVENTS:
            continue
        submitted = by_id.get(event.get("previousEventId", 0))
        if submitted is None or submitted["type"] != "TaskSubmitted":
            continue
        resource = submitted.get("taskSubmittedEventDetails", {}).get("resource", "")
        if not str(resource).endswith(WAIT_FOR_TASK_TOKEN):
            continue
        duration = (_ts(event["timestamp"]) - _ts(submitted["timestamp"])) * 1000
        hops.append(Hop(state=state_of(submitted), duration_ms=duration, outcome=event["type"]))
    return hops


def failure_reason(history: Sequence[dict[str, Any]]) -> str:
    """The error the run failed with: the `$.error` the state machine carried into its failure path."""
    for event in reversed(history):
        details = event.get("stateEnteredEventDetails") or {}
        try:
            error = json.loads(details.get("input") or "{}").get("error")
        except ValueError:
            continue
        if isinstance(error, dict) and error.get("Error"):
            return f"{error.get('Error')}: {str(error.get('Cause', ''))[:300]}"
    for event in reversed(history):
        for key in ("executionFailedEventDetails", "executionTimedOutEventDetails", "executionAbortedEventDetails"):
            if key in event:
                return f"{event[key].get('error', '')}: {event[key].get('cause', '')}"
    return "unknown"


def state_transitions(history: Iterable[dict[str, Any]]) -> int:
    return sum(1 for event in history if str(event["type"]).endswith("StateEntered"))


def _ts(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def execution_history(stepfunctions: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in stepfunctions.get_paginator("get_execution_history").paginate(executionArn=execution_arn):
        events.extend(page["events"])
    return events


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure reported was measured)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- where the CPU goes ------------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far, from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3 of stat(5), so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stack_processes(stack: LocalStack) -> dict[str, list[int]]:
    """The stack's processes by role: the emulator and each service's workers (the bench's own is 'client')."""
    roles: dict[str, list[int]] = {"client": [os.getpid()]}
    if stack.emulator is not None:
        roles["emulator"] = [stack.emulator.process.pid]
    for worker in stack.workers.values():
        roles.setdefault(worker.service, []).append(worker.process.pid)
    return roles


def cpu_snapshot(roles: dict[str, list[int]]) -> dict[str, float]:
    return {role: sum(process_cpu_s(pid) or 0.0 for pid in pids) for role, pids in roles.items()}


def cpu_per_run(before: dict[str, float], after: dict[str, float], runs: int) -> dict[str, float]:
    """CPU seconds each role spent per run while the measured runs were going on."""
    return {role: round((after[role] - before.get(role, 0.0)) / max(runs, 1), 4) for role in sorted(after)}


# -- the run -----------------------------------------------------------------------------------------


class ExecutionWatcher:
    """Polls ListExecutions and wakes whoever waits for a run (execution name = run_id) to end."""

    def __init__(self, stepfunctions: Any, state_machine_arn: str, interval_s: float = 0.1) -> None:
        self._sfn = stepfunctions
        self._arn = state_machine_arn
        self._interval_s = interval_s
        self._done: dict[str, dict[str, Any]] = {}
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="execution-watcher", daemon=True)

    def __enter__(self) -> ExecutionWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _event(self, name: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(name, threading.Event())

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            for page in self._sfn.get_paginator("list_executions").paginate(stateMachineArn=self._arn):
                for execution in page["executions"]:
                    name = execution["name"]
                    if execution["status"] in TERMINAL_EXECUTION_STATUSES and name not in self._done:
                        self._done[name] = execution
                        self._event(name).set()

    def wait(self, run_id: str, timeout_s: float) -> dict[str, Any] | None:
        if self._event(run_id).wait(timeout_s):
            return self._done[run_id]
        return None


@dataclass
class BenchResult:
    runs: int
    concurrency: int
    wall_s: float
    runs_per_s: float
    hops: int
    hops_per_s: float
    hop_p50_ms: float
    hop_p95_ms: float
    hop_p99_ms: float
    hop_max_ms: float
    run_p50_ms: float
    run_p95_ms: float
    state_transitions_per_run: float
    failed_runs: int
    model_turns: int
    tool_calls: int
    hop_p50_ms_by_state: dict[str, float] = field(default_factory=dict)
    #: CPU seconds per run by process role (emulator, each service, the bench client), from /proc.
    cpu_s_per_run: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _one_run(client: GatewayClient, watcher: ExecutionWatcher, timeout_s: float) -> tuple[str, dict[str, Any] | None]:
    session_id = client.create_session()
    run_id = str(client.send_message(session_id, BENCH_PROMPT)["run_id"])
    return run_id, watcher.wait(run_id, timeout_s)


def run_bench(
    stack: LocalStack,
    *,
    runs: int,
    concurrency: int,
    warmup_runs: int = 1,
    timeout_s: float = 300.0,
    out: Printer = print,
) -> BenchResult:
    assert stack.topology is not None and stack.api_key is not None
    sfn = stack.client("stepfunctions")
    clients = [GatewayClient(stack.gateway_url, stack.api_key) for _ in range(concurrency)]
    try:
        with ExecutionWatcher(sfn, stack.topology.state_machine_arn) as watcher:
            # The first run pays cold starts (the interpreter's imports, each handler's first call).
            for _ in range(warmup_runs):
                run_id, execution = _one_run(clients[0], watcher, timeout_s)
                out(f"warm-up run {run_id}: {execution['status'] if execution else 'timed out'}")
            roles = stack_processes(stack)
            cpu_before = cpu_snapshot(roles)
            started = time.time()
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                futures = [
                    pool.submit(_one_run, clients[index % concurrency], watcher, timeout_s) for index in range(runs)
                ]
                finished = [future.result() for future in futures]
            observed_end = time.time()
            cpu_after = cpu_snapshot(roles)
    finally:
        for client in clients:
            client.close()

    failures: list[str] = []
    hops: list[Hop] = []
    transitions: list[int] = []
    run_ms: list[float] = []
    stops: list[float] = []
    for run_id, execution in finished:
        if execution is None:
            failures.append(f"{run_id}: did not finish within {timeout_s}s")
            continue
        history = execution_history(sfn, execution["executionArn"])
        if execution["status"] != "SUCCEEDED":
            failures.append(f"{run_id}: {execution['status']} ({failure_reason(history)})")
        hops.extend(hops_of(history))
        transitions.append(state_transitions(history))
        run_ms.append((_ts(execution["stopDate"]) - _ts(execution["startDate"])) * 1000)
        stops.append(_ts(execution["stopDate"]))
    # The emulator's stop dates are exact; the watcher sees them up to one poll interval late.
    end = max(stops) if len(stops) == runs else observed_end
    wall_s = max(end - started, 1e-9)
    durations = [hop.duration_ms for hop in hops]
    by_state: dict[str, list[float]] = {}
    for hop in hops:
        by_state.setdefault(hop.state, []).append(hop.duration_ms)
    return BenchResult(
        runs=runs,
        concurrency=concurrency,
        wall_s=round(wall_s, 3),
        runs_per_s=round(runs / wall_s, 2),
        hops=len(hops),
        hops_per_s=round(len(hops) / wall_s, 1),
        hop_p50_ms=round(percentile(durations, 0.50), 1),
        hop_p95_ms=round(percentile(durations, 0.95), 1),
        hop_p99_ms=round(percentile(durations, 0.99), 1),
        hop_max_ms=round(max(durations, default=float("nan")), 1),
        run_p50_ms=round(percentile(run_ms, 0.50), 1),
        run_p95_ms=round(percentile(run_ms, 0.95), 1),
        state_transitions_per_run=round(statistics.fmean(transitions), 1) if transitions else float("nan"),
        failed_runs=len(failures),
        model_turns=sum(1 for hop in hops if hop.state == "CallModel"),
        tool_calls=sum(1 for hop in hops if hop.state == "InvokeTool"),
        hop_p50_ms_by_state={state: round(percentile(values, 0.5), 1) for state, values in sorted(by_state.items())},
        cpu_s_per_run=cpu_per_run(cpu_before, cpu_after, runs),
        failures=failures[:20],
    )


def format_result(result: BenchResult) -> str:
    rows = [
        ("runs", f"{result.runs} (concurrency {result.concurrency})"),
        ("wall", f"{result.wall_s:.2f} s"),
        ("throughput", f"{result.runs_per_s:.2f} runs/s, {result.hops_per_s:.1f} hops/s"),
        (
            "hop latency",
            f"p50 {result.hop_p50_ms:.1f} ms, p95 {result.hop_p95_ms:.1f} ms, "
            f"p99 {result.hop_p99_ms:.1f} ms, max {result.hop_max_ms:.1f} ms ({result.hops} hops)",
        ),
        ("run latency", f"p50 {result.run_p50_ms:.0f} ms, p95 {result.run_p95_ms:.0f} ms"),
        ("transitions", f"{result.state_transitions_per_run:.1f} states entered per run"),
        ("work", f"{result.model_turns} model turns, {result.tool_calls} tool calls"),
        ("failed runs", str(result.failed_runs)),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append("hop p50 by state: " + ", ".join(f"{s} {v:.1f} ms" for s, v in result.hop_p50_ms_by_state.items()))
    if result.cpu_s_per_run:
        total = sum(result.cpu_s_per_run.values())
        lines.append(
            f"CPU per run: {total:.2f} s in all, "
            + ", ".join(f"{role} {seconds:.3f} s" for role, seconds in result.cpu_s_per_run.items())
        )
        emulator = result.cpu_s_per_run.get("emulator")
        if emulator:
            # The emulator is one Python process: its GIL lets it use one core at the most.
            lines.append(
                f"ceilings: the emulator on one core {1 / emulator:.2f} runs/s; "
                f"everything on {os.cpu_count()} cores {(os.cpu_count() or 1) / total:.2f} runs/s"
            )
    lines.extend(f"  failed: {failure}" for failure in result.failures)
    return "\n".join(lines)
