"""Property tests (hypothesis): no trimming of any generated transcript ever splits a tool_use from its
tool_result, opens on an orphaned tool_result, or exceeds the budget — for the pure window, for the
shortened newest turn, and for the window the DynamoDB store reads newest-first page by page."""

from __future__ import annotations

from typing import Any

import boto3
from agentwire_contracts.content import Message, TextBlock, ToolResultBlock, ToolUseBlock
from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.transcript import (
    AppendKey,
    SessionRef,
    TranscriptEntry,
    WindowBuilder,
    assemble_context,
    is_clean_start,
    shrink_turn,
    total_tokens,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from .conftest import TABLE_NAME, create_table

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=300)


@st.composite
def turn(draw: st.DrawFn, index: int) -> list[Message]:
    """A user turn, 0-3 tool rounds (each: assistant tool_use blocks, then user tool_results), an answer."""
    messages = [Message(role="user", content=[TextBlock(text=draw(text))])]
    for round_ in range(draw(st.integers(0, 3))):
        ids = [f"t{index}-{round_}-{n}" for n in range(draw(st.integers(1, 3)))]
        preamble = [TextBlock(text=draw(text))] if draw(st.booleans()) else []
        messages.append(
            Message(
                role="assistant",
                content=[*preamble, *[ToolUseBlock(id=i, name="tool", input={"q": draw(text)}) for i in ids]],
            )
        )
        results: list[Any] = [
            ToolResultBlock(tool_use_id=i, content=draw(text), is_error=draw(st.booleans())) for i in ids
        ]
        if draw(st.integers(0, 5)) == 0:
            results.append(TextBlock(text=draw(text)))  # a user turn mixing results and text: not a clean start
        messages.append(Message(role="user", content=results))
    if draw(st.booleans()):
        messages.append(Message(role="assistant", content=[TextBlock(text=draw(text))]))
    return messages


@st.composite
def transcript(draw: st.DrawFn) -> list[TranscriptEntry]:
    messages = [m for index in range(draw(st.integers(0, 12))) for m in draw(turn(index))]
    # A head cut by TTL (or a summary floor) may leave the transcript opening mid-turn.
    cut = draw(st.integers(0, min(3, len(messages))))
    return [TranscriptEntry(seq=seq, message=m) for seq, m in enumerate(messages, start=1)][cut:]


def assert_valid_window(window: list[TranscriptEntry], entries: list[TranscriptEntry], budget: int) -> None:
    assert total_tokens(window) <= budget
    if not window:
        return
    assert is_clean_start(window[0].message), "the window opens on a clean user text turn"
    # A suffix: contiguous and ending at the newest message.
    assert [e.seq for e in window] == [e.seq for e in entries[-len(window) :]]
    uses = {b.id for e in window for b in e.message.content if isinstance(b, ToolUseBlock)}
    results = {b.tool_use_id for e in window for b in e.message.content if isinstance(b, ToolResultBlock)}
    assert uses == results, "every tool_use has its tool_result in the window, and no result is orphaned"


@settings(max_examples=400, deadline=None)
@given(entries=transcript(), budget=st.integers(1, 6000))
def test_no_window_splits_a_tool_pair_or_exceeds_the_budget(entries: list[TranscriptEntry], budget: int) -> None:
    window = assemble_context(entries, budget)
    assert_valid_window(window, entries, budget)
    clean = [i for i, e in enumerate(entries) if is_clean_start(e.message)]
    if not window:
        # Empty only when nothing can start a window, or the newest turn alone does not fit.
        assert not clean or total_tokens(entries[clean[-1] :]) > budget
    else:
        # The longest such suffix: the next older clean start would not fit.
        start = next(i for i, e in enumerate(entries) if e.seq == window[0].seq)
        older = [i for i in clean if i < start]
        assert not older or total_tokens(entries[older[-1] :]) > budget


@settings(max_examples=200, deadline=None)
@given(entries=transcript(), budget=st.integers(1, 3000))
def test_a_shortened_newest_turn_keeps_its_pairs_and_fits(entries: list[TranscriptEntry], budget: int) -> None:
    builder = WindowBuilder(budget)
    builder.offer_all(reversed(entries))
    if builder.window or not builder.newest_turn:
        return
    shrunk = shrink_turn(builder.newest_turn, budget)
    if shrunk is None:
        return
    assert_valid_window(shrunk, builder.newest_turn, budget)
    assert [e.seq for e in shrunk] == [e.seq for e in builder.newest_turn]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=transcript(), budget=st.integers(50, 4000), page=st.integers(1, 9))
def test_the_store_reads_the_same_window_page_by_page(entries: list[TranscriptEntry], budget: int, page: int) -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client)
        store = DynamoTranscriptStore(client, TABLE_NAME, sleep=lambda _: None)
        session = SessionRef("acme", "prop")
        messages = [e.message for e in entries]
        for start in range(0, len(messages), 7):
            store.append(session, AppendKey("run", start), messages[start : start + 7])
        stored = store.read(session)
        builder = WindowBuilder(budget)
        read = store.read_window(session, builder, up_to_seq=len(messages), page_size=page)
        window = builder.window
        assert [e.message for e in window] == [e.message for e in assemble_context(stored, budget)]
        assert_valid_window(window, stored, budget)
        assert read <= len(messages)
