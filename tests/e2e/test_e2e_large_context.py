"""A session whose context exceeds 256 KB (EventBridge's and Step Functions' limit) end to end: memory
answers with a claim check (`messages_ref`), the state machine passes the reference on, and the llm
service resolves it from the payload bucket. The model only knows the user's name if it saw the oldest
turn of a context that could never have travelled inline."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentwire_contracts.payload import session_prefix
from agentwire_infra.local.client import GatewayClient
from agentwire_infra.local.stack import LocalStack

pytestmark = pytest.mark.e2e

TURN_CHARS = 30_000  # under the gateway's per-message cap
FILLER_TURNS = 9


def filler(turn: int) -> str:
    words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
    text = " ".join(f"{words[(turn * 7 + i) % len(words)]}{i % 97}" for i in range(TURN_CHARS // 9))
    return text[:TURN_CHARS]


def test_a_context_over_256_kb_runs_end_to_end(api: GatewayClient, local_stack: LocalStack, aws: Any) -> None:
    assert local_stack.topology is not None
    session_id = api.create_session()
    first = api.ask(
        session_id, "Hi! My name is Ada. Please keep these notes: " + filler(0)[: TURN_CHARS - 60], timeout_s=120
    )
    assert first["status"] == "completed", first
    for turn in range(1, FILLER_TURNS + 1):
        run = api.ask(session_id, f"More notes, part {turn}: " + filler(turn)[: TURN_CHARS - 40], timeout_s=120)
        assert run["status"] == "completed", run

    transcript = api.messages(session_id)
    assert len(json.dumps(transcript).encode()) > 256 * 1024

    final = api.ask(session_id, "What's my name?", timeout_s=120)
    assert final["status"] == "completed", final
    assert "Ada" in final["output"], final["output"]

    # The context went by claim check: memory's payloads of this session are in the bucket, and the
    # largest one holds more than 256 KB of messages.
    tenant = local_stack.settings.dev_tenant or "acme"
    listed = aws("s3").list_objects_v2(
        Bucket=local_stack.topology.payload_bucket, Prefix=session_prefix(tenant, session_id) + "context/"
    )
    sizes = [item["Size"] for item in listed.get("Contents", [])]
    assert sizes and max(sizes) > 256 * 1024, sizes
