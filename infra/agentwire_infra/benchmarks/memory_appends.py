"""50 concurrent appends to one session on the emulator: 0 lost, 0 duplicated, order preserved.

50 writers (threads, each with its own boto3 client, as 50 Lambda invocations would have) append 1-3
messages each to the same session at the same moment; then every append is delivered a second time (an
SQS redelivery). The emulator applies DynamoDB calls one at a time as DynamoDB does, but the writers
really race: each reads the head, builds its conditional transaction and retries when another got in first.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from agentwire_contracts.content import Message, TextBlock
from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.transcript import AppendKey, AppendOutcome, SessionRef

from agentwire_infra.benchmarks.memory_context import create_memory_table, summarize_ms

NAME = "memory_appends"
DESCRIPTION = "50 concurrent appends to one session: lost, duplicated, order (target 0, 0, preserved)"

WRITERS = 50
SESSION = SessionRef("bench", "concurrent")


def _messages(writer: int) -> list[Message]:
    return [
        Message(role="user" if n % 2 == 0 else "assistant", content=[TextBlock(text=f"w{writer}-m{n}")])
        for n in range(1 + writer % 3)
    ]


def _race(emulator: Any, table: str, *, round_: int) -> tuple[list[AppendOutcome], list[float], list[BaseException]]:
    barrier = threading.Barrier(WRITERS)
    outcomes: list[AppendOutcome | None] = [None] * WRITERS
    latencies: list[float] = [0.0] * WRITERS
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        store = DynamoTranscriptStore(emulator.client("dynamodb"), table, max_attempts=100, max_delay_s=0.2)
        barrier.wait()
        started = time.perf_counter()
        try:
            outcomes[index] = store.append(SESSION, AppendKey(f"run-{index}", 1), _messages(index))
        except BaseException as exc:
            errors.append(exc)
        latencies[index] = (time.perf_counter() - started) * 1000

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [o for o in outcomes if o is not None], latencies, errors


def run(workdir: Path) -> dict[str, Any]:
    from agentwire_infra.local.emulator import start_emulator

    workdir.mkdir(parents=True, exist_ok=True)
    emulator = start_emulator(log_path=workdir / "emulator.log")
    try:
        table = create_memory_table(emulator.client("dynamodb"))
        started = time.perf_counter()
        first, latencies, errors = _race(emulator, table, round_=1)
        elapsed_s = time.perf_counter() - started
        redelivered, _, redelivery_errors = _race(emulator, table, round_=2)
        transcript = DynamoTranscriptStore(emulator.client("dynamodb"), table).read(SESSION)
    finally:
        emulator.stop()

    expected = {f"w{w}-m{n}" for w in range(WRITERS) for n in range(1 + w % 3)}
    texts = [entry.message.text() for entry in transcript]
    lost = len(expected - set(texts))
    duplicated = len(texts) - len(set(texts))
    gapless = [entry.seq for entry in transcript] == list(range(1, len(transcript) + 1))
    # Each writer's messages are contiguous and in its own order; redeliveries got the first answer.
    by_writer: dict[str, list[int]] = {}
    for entry in transcript:
        by_writer.setdefault(entry.message.text().split("-")[0], []).append(entry.seq)
    contiguous = all(seqs == list(range(seqs[0], seqs[0] + len(seqs))) for seqs in by_writer.values())
    in_order = all(
        [entry.message.text() for entry in transcript if entry.message.text().startswith(f"w{w}-")]
        == [f"w{w}-m{n}" for n in range(1 + w % 3)]
        for w in range(WRITERS)
    )
    same_answers = sorted((o.entries[0].seq, o.message_count) for o in first) == sorted(
        (o.entries[0].seq, o.message_count) for o in redelivered
    )
    figures = {
        "writers": WRITERS,
        "messages_expected": len(expected),
        "messages_stored": len(texts),
        "lost": lost,
        "duplicated": duplicated,
        "order_preserved": gapless and contiguous and in_order,
        "redeliveries_answered_the_same": same_answers and all(o.duplicate for o in redelivered),
        "errors": len(errors) + len(redelivery_errors),
        "head_races_lost": sum(o.conflicts for o in first),
        "elapsed_s": round(elapsed_s, 2),
        "append": summarize_ms(latencies),
    }
    print(
        f"{WRITERS} writers, {len(expected)} messages: lost {lost}, duplicated {duplicated}, "
        f"order preserved {figures['order_preserved']}, "
        f"redeliveries same {figures['redeliveries_answered_the_same']}, "
        f"head races lost {figures['head_races_lost']}, {figures['elapsed_s']} s "
        f"(append p50 {figures['append']['p50_ms']} ms, p95 {figures['append']['p95_ms']} ms)"
    )
    return figures
