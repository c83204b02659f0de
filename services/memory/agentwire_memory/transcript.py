"""The transcript's pure domain: sequenced entries, token estimates and the context window.

No I/O here: the adapters read and write entries, this module decides what the model sees.

The window is built newest-first (`WindowBuilder`), so a store can feed it pages of a descending query
and stop as soon as the builder is done: the cost of assembling a context depends on the budget, never
on the length of the session.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from agentwire_contracts.content import ContentBlock, Message, TextBlock, ToolResultBlock, ToolUseBlock
from agentwire_contracts.remote_tools import FACTS_HEADING
from agentwire_contracts.tokens import BYTES_PER_TOKEN, estimate_message_tokens

#: One TransactWriteItems holds at most 100 items: the head and the append marker take two.
MAX_MESSAGES_PER_APPEND = 98
#: The inline cap of the byte-based trimming used when no payload bucket is configured.
DEFAULT_MAX_CONTEXT_BYTES = 128 * 1024

#: The shortest text a block is cut down to when the newest turn alone exceeds the budget.
MIN_TRUNCATED_CHARS = 64
TRUNCATION_MARK = "\n[… {n} characters left out to fit the context window]"


@dataclass(frozen=True)
class SessionRef:
    """A session as the store keys it: always under its tenant."""

    tenant_id: str
    session_id: str


@dataclass(frozen=True)
class AppendKey:
    """What makes an append idempotent: one append per (run, step)."""

    run_id: str
    step: int


@dataclass(frozen=True)
class TranscriptEntry:
    """One message of the transcript with its sequence number (1, 2, 3... per session).

    `tokens` is the estimate recorded at append time; `cum_tokens` the running total through this seq
    (what lets the store know how much lies beyond the window without reading it)."""

    seq: int
    message: Message
    tokens: int | None = None
    cum_tokens: int | None = None


@dataclass(frozen=True)
class AppendOutcome:
    """What an append left in the transcript.

    `duplicate` is true when this (run, step) had already been appended: nothing new was written and
    `entries`/`message_count` are those of the first append, so the answer is the same.
    """

    entries: tuple[TranscriptEntry, ...]
    message_count: int
    duplicate: bool = False
    #: False when a redelivery with this key carried different messages than the first one.
    same_messages: bool = True
    #: Head races lost (and retried) before the write went through.
    conflicts: int = 0


def fingerprint(messages: Sequence[Message]) -> str:
    """A digest of the appended messages, kept on the marker to notice a key reused for other content."""
    canonical = json.dumps([m.model_dump(mode="json") for m in messages], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- token estimates -------------------------------------------------------------------------------


#: A message's estimate, as every service makes it (the calibration is in `agentwire_contracts.tokens`).
estimate_tokens = estimate_message_tokens


def message_bytes(message: Message) -> int:
    """The JSON size of a message as it travels in events and in the run's state."""
    return len(message.model_dump_json().encode())


def tokens_of(entry: TranscriptEntry, estimate: Callable[[Message], int]) -> int:
    return entry.tokens if entry.tokens is not None and estimate is estimate_tokens else estimate(entry.message)


# -- the window ------------------------------------------------------------------------------------


def is_clean_start(message: Message) -> bool:
    """A context may begin here: a user turn with text and no tool_result whose tool_use came before."""
    return (
        message.role == "user"
        and any(isinstance(block, TextBlock) for block in message.content)
        and not any(isinstance(block, ToolResultBlock) for block in message.content)
    )


@dataclass
class WindowBuilder:
    """Chooses the context window from entries offered newest first.

    The window is the longest suffix of the transcript that starts at a clean user text turn and fits
    `budget` tokens. Starting only at clean turns means it never opens with an orphaned tool_result and
    never separates a tool_use from its tool_result (a result always follows its call, so both fall on
    the same side of any clean start). `offer` returns False once more entries cannot change the answer:
    the budget is exceeded and a clean start has been seen.
    """

    budget: int | None
    estimate: Callable[[Message], int] = estimate_tokens
    _seen: list[TranscriptEntry] = field(default_factory=list)
    _tokens: list[int] = field(default_factory=list)
    _total: int = 0
    _chosen: int = 0
    _chosen_tokens: int = 0
    #: Length (in `_seen`) of the newest clean suffix, whether it fits or not.
    _newest_turn: int = 0
    done: bool = False

    def offer(self, entry: TranscriptEntry) -> bool:
        if self.done:
            return False
        tokens = tokens_of(entry, self.estimate)
        self._seen.append(entry)
        self._tokens.append(tokens)
        self._total += tokens
        clean = is_clean_start(entry.message)
        if clean and not self._newest_turn:
            self._newest_turn = len(self._seen)
        if self.budget is not None and self._total > self.budget:
            # Nothing older can fit any more; keep reading only to find the newest turn's start.
            if self._newest_turn:
                self.done = True
            return not self.done
        if clean:
            self._chosen = len(self._seen)
            self._chosen_tokens = self._total
        return True

    def offer_all(self, entries: Iterable[TranscriptEntry]) -> None:
        for entry in entries:
            if not self.offer(entry):
                return

    @property
    def window(self) -> list[TranscriptEntry]:
        """The chosen window, oldest first (empty when not even the newest turn fits)."""
        return list(reversed(self._seen[: self._chosen]))

    @property
    def window_tokens(self) -> int:
        return self._chosen_tokens

    @property
    def newest_turn(self) -> list[TranscriptEntry]:
        """The newest clean suffix, oldest first, even when it does not fit the budget."""
        return list(reversed(self._seen[: self._newest_turn]))

    @property
    def entries_seen(self) -> int:
        return len(self._seen)


def assemble_context(
    entries: Sequence[TranscriptEntry],
    budget: int | None = None,
    *,
    estimate: Callable[[Message], int] = estimate_tokens,
) -> list[TranscriptEntry]:
    """The context window of `entries` (any order): the newest clean turns that fit `budget` tokens.

    Empty when no clean start exists, or when not even the newest turn fits (see `shrink_turn`)."""
    builder = WindowBuilder(budget, estimate)
    builder.offer_all(sorted(entries, key=lambda entry: entry.seq, reverse=True))
    return builder.window


def total_tokens(entries: Iterable[TranscriptEntry], estimate: Callable[[Message], int] = estimate_tokens) -> int:
    return sum(tokens_of(entry, estimate) for entry in entries)


def _truncate_block(block: ContentBlock, keep: int) -> ContentBlock:
    if isinstance(block, TextBlock) and len(block.text) > keep:
        cut = len(block.text) - keep
        return TextBlock(text=block.text[:keep] + TRUNCATION_MARK.format(n=cut))
    if isinstance(block, ToolResultBlock) and len(block.content) > keep:
        cut = len(block.content) - keep
        return block.model_copy(update={"content": block.content[:keep] + TRUNCATION_MARK.format(n=cut)})
    return block


def shrink_turn(
    turn: Sequence[TranscriptEntry],
    budget: int,
    *,
    estimate: Callable[[Message], int] = estimate_tokens,
) -> list[TranscriptEntry] | None:
    """The newest turn cut down to `budget` tokens by shortening its largest texts and tool results.

    Every message and block stays (so tool pairs and the clean start are kept); only the copy sent to
    the model is shortened, never the transcript. None when even the shortest form does not fit."""
    current = [TranscriptEntry(seq=entry.seq, message=entry.message) for entry in turn]
    for _ in range(64):
        over = total_tokens(current, estimate) - budget
        if over <= 0:
            return current
        # The largest shortenable block, and how many characters to cut from it (with a margin).
        candidates = [
            (len(block.text if isinstance(block, TextBlock) else block.content), index, position)
            for index, entry in enumerate(current)
            for position, block in enumerate(entry.message.content)
            if isinstance(block, TextBlock | ToolResultBlock)
        ]
        candidates = [c for c in candidates if c[0] > MIN_TRUNCATED_CHARS]
        if not candidates:
            return None
        length, index, position = max(candidates)
        keep = max(MIN_TRUNCATED_CHARS, length - math.ceil((over + 16) * BYTES_PER_TOKEN))
        entry = current[index]
        content = list(entry.message.content)
        content[position] = _truncate_block(content[position], keep)
        current[index] = TranscriptEntry(seq=entry.seq, message=Message(role=entry.message.role, content=content))
    return None


# -- system prompt, facts, summary -----------------------------------------------------------------

SUMMARY_HEADING = "Summary of the earlier conversation (older turns are not shown):"
#: At most this many characters of facts go into one system prompt (newest facts win).
MAX_FACTS_CHARS = 8_000


@dataclass(frozen=True)
class Fact:
    fact_id: str
    text: str
    created_at: int = 0


def fact_id_of(text: str) -> str:
    """Facts are keyed by their normalized text, so remembering the same fact twice stores it once."""
    return hashlib.sha256(normalize_fact(text).encode()).hexdigest()[:32]


def normalize_fact(text: str) -> str:
    return " ".join(text.split()).casefold()


def matching_facts(facts: Sequence[Fact], query: str) -> list[Fact]:
    """The facts `forget(query)` removes: the same fact, else facts containing the query (or contained in it)."""
    wanted = normalize_fact(query)
    exact = [fact for fact in facts if normalize_fact(fact.text) == wanted]
    if exact:
        return exact
    return [fact for fact in facts if wanted in normalize_fact(fact.text) or normalize_fact(fact.text) in wanted]


def facts_for_prompt(facts: Sequence[Fact], max_chars: int = MAX_FACTS_CHARS) -> list[Fact]:
    """The newest facts that fit `max_chars`, oldest first."""
    chosen: list[Fact] = []
    used = 0
    for fact in sorted(facts, key=lambda f: (f.created_at, f.fact_id), reverse=True):
        used += len(fact.text) + 3
        if used > max_chars:
            break
        chosen.append(fact)
    return list(reversed(chosen))


def assemble_system(agent_system: str, facts: Sequence[Fact], summary_text: str | None) -> str:
    """What the model gets as its system prompt: the agent's, the user's facts, the latest summary."""
    parts = [agent_system.strip()] if agent_system.strip() else []
    if facts:
        # One line per fact, whatever it holds: a fact with line breaks cannot end the list and start a
        # paragraph of its own that reads like the agent's instructions.
        parts.append(FACTS_HEADING + "\n" + "\n".join(f"- {' '.join(fact.text.split())}" for fact in facts))
    if summary_text:
        parts.append(SUMMARY_HEADING + "\n" + summary_text.strip())
    return "\n\n".join(parts)


# -- compaction ------------------------------------------------------------------------------------

COMPACTION_SYSTEM = (
    "You maintain the running summary of a conversation between a user and an AI assistant. Write a "
    "concise summary that keeps every fact, decision, open question, tool result and user preference the "
    "assistant will need later. Write only the summary, in the conversation's language."
)
#: Rendered characters of older turns sent in one compaction request (it travels inline in events).
MAX_COMPACTION_CHARS = 60_000
#: Characters of one content block in the rendered transcript.
MAX_RENDERED_BLOCK_CHARS = 4_000


def _clip(text: str, limit: int = MAX_RENDERED_BLOCK_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + f" […{len(text) - limit} more characters]"


def render_for_summary(entries: Sequence[TranscriptEntry]) -> str:
    """Older turns as plain text: the summarizing model call needs no tool definitions this way."""
    lines: list[str] = []
    for entry in entries:
        for block in entry.message.content:
            if isinstance(block, TextBlock):
                lines.append(f"[{entry.message.role}] {_clip(block.text)}")
            elif isinstance(block, ToolUseBlock):
                arguments = json.dumps(block.input, ensure_ascii=False, sort_keys=True)
                lines.append(f"[assistant called tool {block.name}] {_clip(arguments)}")
            else:
                status = "error" if block.is_error else "result"
                lines.append(f"[tool {status}] {_clip(block.content)}")
    return "\n".join(lines)


def compaction_chunk(
    entries: Sequence[TranscriptEntry], max_chars: int = MAX_COMPACTION_CHARS
) -> list[TranscriptEntry]:
    """The oldest entries (ascending input) whose rendering fits `max_chars` (at least one)."""
    chunk: list[TranscriptEntry] = []
    used = 0
    for entry in entries:
        size = len(render_for_summary([entry])) + 1
        if chunk and used + size > max_chars:
            break
        chunk.append(entry)
        used += size
    return chunk


def compaction_prompt(previous_summary: str | None, chunk: Sequence[TranscriptEntry]) -> Message:
    parts = []
    if previous_summary:
        parts.append(f"The summary so far:\n<summary>\n{previous_summary}\n</summary>\n")
    parts.append(
        "Conversation turns to fold into the summary:\n<turns>\n" + render_for_summary(chunk) + "\n</turns>\n\n"
        "Write the updated summary of everything above."
    )
    return Message(role="user", content=[TextBlock(text="\n".join(parts))])
