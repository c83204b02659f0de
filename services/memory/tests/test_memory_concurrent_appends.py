"""Many writers on one session: no lost, no duplicated, contiguous sequence numbers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from agentwire_contracts.content import Message, TextBlock
from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.transcript import AppendKey, AppendOutcome, SessionRef
from moto.core.botocore_stubber import BotocoreStubber

TABLE = "agentwire-memory-main"
SESSION = SessionRef(tenant_id="acme", session_id="busy")
WRITERS = 20


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make each in-process moto request atomic, as each DynamoDB API call is on AWS.

    moto's backend has no locking (its TransactWriteItems even restores a deep copy of the whole table
    on cancellation), so threads could corrupt it by themselves. The writers still run concurrently:
    they read the head, build and send their transactions interleaved; only the server side is serialized.
    """
    lock = threading.Lock()
    original = BotocoreStubber.process_request

    def process_request(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return original(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", process_request)


@pytest.fixture
def writers_ready(dynamodb: Any, atomic_moto: None) -> Iterator[None]:
    yield


def test_concurrent_appends_lose_nothing_duplicate_nothing_and_stay_contiguous(writers_ready: None) -> None:
    start = threading.Barrier(WRITERS)

    def writer(index: int) -> AppendOutcome:
        # Each writer is its own "Lambda": its own session and client.
        client = boto3.session.Session().client("dynamodb", region_name="us-east-1")
        store = DynamoTranscriptStore(client, TABLE, max_attempts=60, base_delay_s=0.001, max_delay_s=0.02)
        message = Message(role="user", content=[TextBlock(text=f"writer {index}")])
        start.wait()
        return store.append(SESSION, AppendKey(f"run-{index}", 0), [message])

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        outcomes = list(pool.map(writer, range(WRITERS)))

    reader = DynamoTranscriptStore(boto3.client("dynamodb", region_name="us-east-1"), TABLE)
    transcript = reader.read(SESSION)
    written = sorted(entry.message.text() for entry in transcript)
    assert written == sorted(f"writer {index}" for index in range(WRITERS))  # 0 lost, 0 duplicated
    assert [entry.seq for entry in transcript] == list(range(1, WRITERS + 1))  # contiguous 1..N
    assert reader.message_count(SESSION) == WRITERS
    # What each writer was told matches what is stored under that seq.
    by_seq = {entry.seq: entry.message.text() for entry in transcript}
    for index, outcome in enumerate(outcomes):
        (entry,) = outcome.entries
        assert by_seq[entry.seq] == f"writer {index}"
    # The writers really did race: most had to re-read the head at least once.
    assert sum(outcome.conflicts for outcome in outcomes) > 0
