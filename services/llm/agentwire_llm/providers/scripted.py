"""The scripted provider: replays a JSON list of Anthropic-shaped responses, in order, across all runs.

End-to-end tests and benchmarks drive the whole system with it deterministically, including the retry
and failure paths (an entry may be an Anthropic error body). The position in the script is shared by
every worker process through a `ScriptCursor` (an atomic counter in the llm state table), and a
redelivered request replays its recorded answer through idempotency instead of consuming an entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agentwire_llm import errors
from agentwire_llm.model import Completion, CompletionRequest
from agentwire_llm.providers.anthropic_format import completion_from_body, error_from_body, is_error_body


class ScriptCursor(Protocol):
    """Hands out script positions 0, 1, 2, ... exactly once each, however many processes ask."""

    def next_index(self) -> int: ...


class InMemoryScriptCursor:
    """A cursor for one process (tests, a single local worker)."""

    def __init__(self) -> None:
        self._next = 0

    def next_index(self) -> int:
        index, self._next = self._next, self._next + 1
        return index


@dataclass(frozen=True)
class Script:
    entries: tuple[dict[str, Any], ...]
    #: Where it came from, for messages only.
    origin: str
    #: Identifies the script's content, so each distinct script gets a cursor of its own.
    fingerprint: str

    @classmethod
    def from_entries(cls, entries: Sequence[dict[str, Any]], origin: str = "<inline>") -> Script:
        text = json.dumps(list(entries), sort_keys=True, separators=(",", ":"))
        return cls._validated(entries, origin, hashlib.sha256(text.encode()).hexdigest()[:16])

    @classmethod
    def load(cls, path: Path) -> Script:
        try:
            raw = path.read_bytes()
            entries = json.loads(raw)
        except (OSError, ValueError) as exc:
            raise errors.llm_error(errors.SCRIPT_INVALID, f"cannot read the script {path}: {exc}") from exc
        if not isinstance(entries, list):
            raise errors.llm_error(errors.SCRIPT_INVALID, f"the script {path} is not a JSON list")
        return cls._validated(entries, str(path), hashlib.sha256(raw).hexdigest()[:16])

    @classmethod
    def _validated(cls, entries: Sequence[Any], origin: str, fingerprint: str) -> Script:
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict) or entry.get("type") not in ("message", "error"):
                raise errors.llm_error(
                    errors.SCRIPT_INVALID,
                    f"entry {index} of the script {origin} is neither a message nor an error body",
                )
        return cls(entries=tuple(entries), origin=origin, fingerprint=fingerprint)


class ScriptedProvider:
    def __init__(self, script: Script, cursor: ScriptCursor) -> None:
        self._script = script
        self._cursor = cursor

    @property
    def name(self) -> str:
        return "scripted"

    def complete(self, request: CompletionRequest) -> Completion:
        index = self._cursor.next_index()
        total = len(self._script.entries)
        if index >= total:
            raise errors.llm_error(
                errors.SCRIPT_EXHAUSTED,
                f"the script {self._script.origin} has {total} entries and all are used; "
                f"this call asked for entry index {index} (call number {index + 1})",
            )
        entry = self._script.entries[index]
        if is_error_body(entry):
            # Not part of Anthropic's body (it is a header there); lets a script exercise retry_after_s.
            retry_after = entry.get("retry_after_s")
            raise error_from_body(entry, retry_after_s=float(retry_after) if retry_after is not None else None)
        return completion_from_body(entry, provider=self.name, requested_model=request.model)


# -- building scripts (tests and benchmarks write the entries this provider replays) ------------------


def script_message(*content: dict[str, Any], stop: str = "end_turn") -> dict[str, Any]:
    """One scripted model answer: an Anthropic Messages API response body with these content blocks."""
    return {
        "type": "message", "id": "msg_x", "role": "assistant", "model": "claude-sonnet-4-5", "content": list(content),
        "stop_reason": stop, "stop_sequence": None, "usage": {"input_tokens": 20, "output_tokens": 6},
    }  # fmt: skip


def script_text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def script_tool_use(call_id: str, name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def script_error(kind: str, message: str) -> dict[str, Any]:
    """One scripted failure: an Anthropic error body (`overloaded_error`, `invalid_request_error`, …)."""
    return {"type": "error", "error": {"type": kind, "message": message}}
