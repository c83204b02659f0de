"""At most once for calls that change the world: a record that a call's tool began to run.

Powertools idempotency stores one result per call, but when the worker running a call dies mid-way no
result is stored, and once that attempt's in-progress claim lapses a redelivery would run the tool
again. That is fine for `read_only` and `idempotent` tools and wrong for `compensatable` and
`irreversible` ones: the first attempt may have acted. So, right before such a tool runs, the service
marks the attempt (a conditional write, once per call key). A later delivery that finds the mark and no
stored result answers `Tools.OutcomeUnknown` (not retried automatically) instead of acting again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol


class AttemptLog(Protocol):
    def begin(self, tenant_id: str, run_id: str, tool_call_id: str) -> bool:
        """Mark that this call's tool is about to run; False when an earlier attempt already began it."""
        ...


class AttemptLogUnavailable(Exception):
    """The attempt log could not be reached: the tool must not run unmarked (nothing ran)."""


class EarlierAttemptUnknown(Exception):
    """An earlier attempt of this call began to run a tool that is not safe to repeat and left no result."""


@dataclass
class InMemoryAttemptLog:
    begun: set[tuple[str, str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, tenant_id: str, run_id: str, tool_call_id: str) -> bool:
        with self._lock:
            key = (tenant_id, run_id, tool_call_id)
            if key in self.begun:
                return False
            self.begun.add(key)
            return True
