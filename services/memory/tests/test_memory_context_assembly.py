"""assemble_context: clean starts, budgets, and tool_use/tool_result pairs kept together."""

from __future__ import annotations

from agentwire_contracts.content import Message, TextBlock, ToolResultBlock, ToolUseBlock
from agentwire_memory.transcript import (
    TranscriptEntry,
    WindowBuilder,
    assemble_context,
    estimate_tokens,
    is_clean_start,
    shrink_turn,
    total_tokens,
)


def user(text: str) -> Message:
    return Message(role="user", content=[TextBlock(text=text)])


def assistant(text: str) -> Message:
    return Message(role="assistant", content=[TextBlock(text=text)])


def tool_call(call_id: str) -> Message:
    return Message(
        role="assistant",
        content=[TextBlock(text="let me check"), ToolUseBlock(id=call_id, name="calculator", input={"x": 1})],
    )


def tool_result(call_id: str) -> Message:
    return Message(role="user", content=[ToolResultBlock(tool_use_id=call_id, content="42")])


def entries(*messages: Message) -> list[TranscriptEntry]:
    return [TranscriptEntry(seq=index, message=message) for index, message in enumerate(messages, start=1)]


def seqs(window: list[TranscriptEntry]) -> list[int]:
    return [entry.seq for entry in window]


def one_token(_: Message) -> int:
    return 1


def test_whole_transcript_in_order_without_budget() -> None:
    transcript = entries(user("hi"), tool_call("t1"), tool_result("t1"), assistant("done"), user("again"))

    assert seqs(assemble_context(list(reversed(transcript)))) == [1, 2, 3, 4, 5]


def test_leading_orphaned_tool_result_is_dropped_until_a_user_text_turn() -> None:
    # The head of the transcript was cut (e.g. expired): it now opens with a tool_result and its answer.
    transcript = [
        TranscriptEntry(seq=7, message=tool_result("t0")),
        TranscriptEntry(seq=8, message=assistant("the result was 42")),
        TranscriptEntry(seq=9, message=user("thanks, and 6*7?")),
        TranscriptEntry(seq=10, message=tool_call("t1")),
        TranscriptEntry(seq=11, message=tool_result("t1")),
    ]

    window = assemble_context(transcript)

    assert seqs(window) == [9, 10, 11]
    assert window[0].message.role == "user" and window[0].message.text() == "thanks, and 6*7?"


def test_a_user_turn_mixing_text_and_tool_result_is_not_a_clean_start() -> None:
    mixed = Message(role="user", content=[ToolResultBlock(tool_use_id="t0", content="1"), TextBlock(text="hm")])

    assert not is_clean_start(mixed)
    assert not is_clean_start(assistant("hello"))
    assert is_clean_start(user("hello"))
    assert seqs(assemble_context(entries(mixed, assistant("ok"), user("next")))) == [3]


def test_no_clean_start_gives_an_empty_window() -> None:
    assert assemble_context(entries(tool_result("t1"), assistant("x"))) == []
    assert assemble_context([]) == []


def test_budget_keeps_the_newest_turns_that_fit() -> None:
    transcript = entries(user("a"), assistant("b"), user("c"), assistant("d"), user("e"))

    assert seqs(assemble_context(transcript, 3, estimate=one_token)) == [3, 4, 5]
    assert seqs(assemble_context(transcript, 4, estimate=one_token)) == [3, 4, 5]
    assert seqs(assemble_context(transcript, 5, estimate=one_token)) == [1, 2, 3, 4, 5]


def test_budget_never_splits_a_tool_use_from_its_tool_result() -> None:
    transcript = entries(user("q1"), tool_call("t1"), tool_result("t1"), assistant("a1"), user("q2"))

    # 4 tokens would fit [tool_call, tool_result, a1, q2], but that would open on an assistant tool_use
    # whose context is gone; the window must start at a clean user turn instead.
    window = assemble_context(transcript, 4, estimate=one_token)

    assert seqs(window) == [5]
    for entry in window:
        assert not any(isinstance(block, ToolResultBlock) for block in entry.message.content)


def test_budget_smaller_than_the_newest_turn_gives_no_window_but_names_that_turn() -> None:
    transcript = entries(user("q1"), assistant("a1"), user("q2"), tool_call("t1"), tool_result("t1"))

    assert assemble_context(transcript, 1, estimate=one_token) == []
    builder = WindowBuilder(1, one_token)
    builder.offer_all(reversed(transcript))
    assert seqs(builder.newest_turn) == [3, 4, 5]
    # It stopped at the newest turn's start: the older messages were never needed.
    assert builder.entries_seen == 3


def test_the_builder_stops_reading_once_the_budget_is_spent() -> None:
    transcript = entries(*[user(f"m{i}") if i % 2 == 0 else assistant(f"m{i}") for i in range(1000)])
    builder = WindowBuilder(10, one_token)
    builder.offer_all(reversed(transcript))
    assert seqs(builder.window) == list(range(991, 1001))  # starts at a user turn (odd seqs here)
    assert builder.entries_seen == 11


def test_shrink_turn_cuts_the_largest_blocks_and_keeps_every_block() -> None:
    big = "word " * 4000
    turn = entries(
        user("what does the file say?"),
        tool_call("t1"),
        Message(role="user", content=[ToolResultBlock(tool_use_id="t1", content=big)]),
    )
    shrunk = shrink_turn(turn, 500)
    assert shrunk is not None
    assert total_tokens(shrunk) <= 500
    assert [len(e.message.content) for e in shrunk] == [len(e.message.content) for e in turn]
    result = shrunk[2].message.content[0]
    assert isinstance(result, ToolResultBlock) and result.tool_use_id == "t1" and "left out" in result.content
    assert shrink_turn(turn, 5) is None


def test_token_estimate_is_calibrated_and_records_every_block() -> None:
    assert estimate_tokens(user("x" * 350)) == 4 + 3 + 100
    assert estimate_tokens(user("日本語" * 10)) > estimate_tokens(user("abc" * 10))
    with_tool = Message(role="assistant", content=[ToolUseBlock(id="t", name="calc", input={"q": "y" * 70})])
    assert estimate_tokens(with_tool) > 20
