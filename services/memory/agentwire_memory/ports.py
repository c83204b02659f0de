"""The small interfaces the memory logic needs; adapters implement them and are injected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentwire_contracts.content import Message, PayloadRef
from agentwire_contracts.envelope import Event

from agentwire_memory.transcript import (
    AppendKey,
    AppendOutcome,
    Fact,
    SessionRef,
    TranscriptEntry,
    WindowBuilder,
)


class StoreUnavailable(Exception):
    """The store is throttled or unreachable right now: trying again later may succeed."""


class SessionGone(Exception):
    """The session was deleted (its tombstone stands): nothing may be written to it or read from it."""


@dataclass(frozen=True)
class SessionHead:
    message_count: int
    #: Estimated tokens of the whole transcript (the last message's running total).
    token_count: int = 0


@dataclass(frozen=True)
class StoredSummary:
    """A compaction summary of the transcript through `through_seq` (kept beside the full transcript)."""

    text: str
    through_seq: int
    #: The transcript's running token total at through_seq: what the summary stands in for.
    through_cum_tokens: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    cost_microusd: int = 0
    run_id: str = ""
    step: int = 0
    created_at: int = 0


@dataclass(frozen=True)
class StateItem:
    key: str
    value_json: str
    version: int
    #: `run_id#step` of the last write (what makes a redelivered write idempotent).
    writer: str = ""


@dataclass(frozen=True)
class StateWrite:
    applied: bool
    version: int


class TranscriptStore(Protocol):
    def append(
        self, session: SessionRef, key: AppendKey, messages: Sequence[Message], *, retention_s: int | None = None
    ) -> AppendOutcome:
        """Durably append `messages` once per `key`; a repeated key writes nothing and returns the first."""
        ...

    def read(self, session: SessionRef, *, up_to_seq: int | None = None) -> list[TranscriptEntry]:
        """The whole transcript in sequence order (strongly consistent), optionally only up to `up_to_seq`."""
        ...

    def read_window(
        self, session: SessionRef, builder: WindowBuilder, *, up_to_seq: int, after_seq: int = 0, page_size: int = 50
    ) -> int:
        """Offer `builder` the messages after_seq < seq <= up_to_seq newest first until it is done."""
        ...

    def read_range(
        self, session: SessionRef, first_seq: int, last_seq: int, *, limit: int
    ) -> list[TranscriptEntry]: ...

    def cum_tokens_at(self, session: SessionRef, seq: int) -> int: ...

    def message_count(self, session: SessionRef) -> int: ...

    def head(self, session: SessionRef) -> SessionHead:
        """The session's head (a missing one is rebuilt from the last message); `SessionGone` when the
        session was deleted."""
        ...

    def is_deleted(self, session: SessionRef) -> bool:
        """True when the session's tombstone stands (it was deleted and must not come back)."""
        ...

    def latest_summary(self, session: SessionRef) -> StoredSummary | None: ...

    def list_summaries(self, session: SessionRef) -> list[StoredSummary]: ...

    def put_summary(self, session: SessionRef, summary: StoredSummary, *, retention_s: int | None = None) -> bool: ...

    def get_state(self, session: SessionRef) -> list[StateItem]: ...

    def write_state(
        self,
        session: SessionRef,
        key: str,
        value_json: str | None,
        *,
        expected_version: int | None,
        writer: str,
        retention_s: int | None = None,
    ) -> StateWrite: ...

    def get_tool_result(self, session: SessionRef, run_id: str, call_id: str) -> str | None: ...

    def put_tool_result(self, session: SessionRef, run_id: str, call_id: str, result_json: str) -> str: ...

    def put_run_failure(
        self, session: SessionRef, run_id: str, failure_json: str, *, retention_s: int | None = None
    ) -> bool:
        """Record that a run of the session failed (once per run, kept as long as the transcript); True when
        it was new."""
        ...

    def list_run_failures(self, session: SessionRef) -> list[dict[str, Any]]: ...

    def put_tool_output(
        self,
        session: SessionRef,
        tool_use_id: str,
        run_id: str,
        output_json: str,
        *,
        retention_s: int | None = None,
    ) -> bool:
        """Record the claim check of a tool call's full output (once per call of a run, kept as long as the
        transcript); True when it was new."""
        ...

    def list_tool_outputs(self, session: SessionRef) -> list[dict[str, Any]]:
        """Every recorded tool output reference of the session (the JSON `put_tool_output` was given)."""
        ...

    def list_facts(self, tenant_id: str, user_id: str, *, limit: int = 500) -> list[Fact]: ...

    def put_fact(self, tenant_id: str, user_id: str, fact: Fact, *, session_id: str, run_id: str) -> bool: ...

    def delete_facts(self, tenant_id: str, user_id: str, fact_ids: Sequence[str]) -> int: ...

    def get_retention_days(self, tenant_id: str) -> int | None: ...

    def delete_session(self, session: SessionRef, *, retention_s: int | None = None) -> int:
        """Put the session's tombstone (kept `retention_s`, else the store's default retention), then delete
        every other item of the session; returns how many were deleted."""
        ...


class PayloadStorePort(Protocol):
    """What memory needs of `agentwire_contracts.payload.PayloadStore`."""

    def put_json(self, value: Any, *, tenant_id: str, session_id: str, kind: str = "payload") -> PayloadRef: ...

    def get_json(self, ref: PayloadRef) -> Any:
        """The referenced JSON value (size and sha256 verified); `PayloadNotFound` when it is gone."""
        ...

    def delete_session(self, tenant_id: str, session_id: str) -> int: ...


class Publisher(Protocol):
    """What the logic needs of `agentwire_contracts.publish.EventPublisher`."""

    def publish(self, events: Sequence[Event[Any]]) -> None: ...
