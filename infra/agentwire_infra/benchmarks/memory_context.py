"""Context assembly cost for a short and a long session: latency and DynamoDB items read.

Two sessions on the emulator, 100 and 10,000 messages (user/assistant turns of ~60 tokens each), the same
token budget; each assembly is a real `memory.context.requested.v1` served by the memory service's use
case through its DynamoDB adapter. Reads go newest-first and stop at the budget, so the long session
should cost about what the short one does (target: ratio <= 2x).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from agentwire_contracts.content import Message, TextBlock
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.memory import MemoryContextRequested
from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.manifest import MANIFEST
from agentwire_memory.service import ContextConfig, serve_context_request
from agentwire_memory.transcript import MAX_MESSAGES_PER_APPEND, AppendKey, SessionRef

NAME = "memory_context"
DESCRIPTION = "context assembly latency and DynamoDB items read: 100 vs 10,000 messages (target ratio <= 2x)"

TABLE_NAME = "bench-memory-main"


def create_memory_table(dynamodb: Any, name: str = TABLE_NAME) -> str:
    spec = MANIFEST.table("main")
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": spec.partition_key, "AttributeType": "S"},
            {"AttributeName": spec.sort_key, "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": spec.partition_key, "KeyType": "HASH"},
            {"AttributeName": spec.sort_key, "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


class CountingClient:
    """A DynamoDB client that counts the items its reads return (Query items, GetItem hits) and calls."""

    def __init__(self, client: Any):
        self._client = client
        self.items_read = 0
        self.calls = 0
        self.seconds = 0.0

    def reset(self) -> None:
        self.items_read = 0
        self.calls = 0
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in {"query", "get_item", "transact_write_items", "put_item", "update_item", "batch_write_item"}:
            return attribute

        def counted(**kwargs: Any) -> Any:
            started = time.perf_counter()
            response = attribute(**kwargs)
            self.seconds += time.perf_counter() - started
            self.calls += 1
            if name == "query":
                self.items_read += len(response.get("Items", []))
            elif name == "get_item" and response.get("Item"):
                self.items_read += 1
            return response

        return counted


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summarize_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "mean_ms": round(statistics.fmean(values), 2),
    }


SIZES = (100, 10_000)
BUDGET_TOKENS = 4_000
REPETITIONS = 30
TENANT = "bench"


def _message(seq: int) -> Message:
    role = "user" if seq % 2 == 1 else "assistant"
    return Message(role=role, content=[TextBlock(text=f"message {seq}: " + "lorem ipsum dolor sit amet " * 7)])


def _fill(store: DynamoTranscriptStore, session: SessionRef, count: int) -> None:
    messages = [_message(seq) for seq in range(1, count + 1)]
    for step, start in enumerate(range(0, count, MAX_MESSAGES_PER_APPEND)):
        store.append(session, AppendKey("fill", step), messages[start : start + MAX_MESSAGES_PER_APPEND])


def _request(session_id: str, step: int, threshold: int | None) -> Event[MemoryContextRequested]:
    data = MemoryContextRequested(
        session_id=session_id,
        step=step,
        max_context_tokens=BUDGET_TOKENS,
        compaction_threshold_tokens=threshold,
        system="You are a benchmark.",
    )
    return Event.create(data, tenant_id=TENANT, run_id=f"bench-{session_id}")


def _measure(store: DynamoTranscriptStore, counter: CountingClient, session_id: str, threshold: int | None) -> dict:
    latencies: list[float] = []
    own: list[float] = []
    items: list[int] = []
    calls: list[int] = []
    messages = 0
    for repetition in range(REPETITIONS):
        counter.reset()
        started = time.perf_counter()
        result = serve_context_request(_request(session_id, repetition, threshold), store, config=ContextConfig())
        latencies.append((time.perf_counter() - started) * 1000)
        own.append(latencies[-1] - counter.seconds * 1000)
        items.append(counter.items_read)
        calls.append(counter.calls)
        messages = len(result.ready.messages)
    return {
        **summarize_ms(latencies[2:]),  # the first two warm the connection pool
        "memory_own_p50_ms": round(statistics.median(own[2:]), 2),
        "items_read": max(items),
        "dynamodb_calls": max(calls),
        "window_messages": messages,
    }


def run(workdir: Path) -> dict[str, Any]:
    from agentwire_infra.local.emulator import start_emulator

    workdir.mkdir(parents=True, exist_ok=True)
    emulator = start_emulator(log_path=workdir / "emulator.log")
    try:
        counter = CountingClient(emulator.client("dynamodb"))
        table = create_memory_table(emulator.client("dynamodb"))
        store = DynamoTranscriptStore(counter, table)
        figures: dict[str, Any] = {"budget_tokens": BUDGET_TOKENS, "repetitions": REPETITIONS}
        # Both sessions live in the same table before anything is measured, so both measurements see the
        # same emulator (moto's Query walks the whole table, so its latency grows with the table, not with
        # the session: DynamoDB's does not); what differs is only the session's length.
        for size in SIZES:
            started = time.perf_counter()
            _fill(store, SessionRef(TENANT, f"s{size}"), size)
            figures[str(size)] = {"fill_s": round(time.perf_counter() - started, 1)}
        for size in SIZES:
            figures[str(size)]["assembly"] = _measure(store, counter, f"s{size}", None)
            figures[str(size)]["assembly_with_compaction_check"] = _measure(store, counter, f"s{size}", 20_000)
        short, long = figures[str(SIZES[0])]["assembly"], figures[str(SIZES[1])]["assembly"]
        figures["latency_ratio_p50"] = round(long["p50_ms"] / short["p50_ms"], 2)
        figures["memory_own_time_ratio_p50"] = round(long["memory_own_p50_ms"] / short["memory_own_p50_ms"], 2)
        figures["items_read_ratio"] = round(long["items_read"] / short["items_read"], 2)
        figures["target_met"] = figures["latency_ratio_p50"] <= 2 and figures["items_read_ratio"] <= 2
    finally:
        emulator.stop()
    print(f"{'messages':>10} {'p50 ms':>8} {'p95 ms':>8} {'own ms':>7} {'items read':>11} {'calls':>6} {'window':>7}")
    for size in SIZES:
        row = figures[str(size)]["assembly"]
        print(
            f"{size:>10} {row['p50_ms']:>8} {row['p95_ms']:>8} {row['memory_own_p50_ms']:>7} "
            f"{row['items_read']:>11} {row['dynamodb_calls']:>6} {row['window_messages']:>7}"
        )
    print(
        f"ratio 10,000/100: latency {figures['latency_ratio_p50']}x (memory's own time "
        f"{figures['memory_own_time_ratio_p50']}x), items read {figures['items_read_ratio']}x "
        f"(target <= 2x: {'met' if figures['target_met'] else 'NOT met'}); 'own ms' excludes time inside DynamoDB calls"
    )
    return figures
