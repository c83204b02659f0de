"""Only read-only calls run in parallel: a call that changes the world holds its run's lease while it runs.

The lease is per (tenant, run); it expires on its own (a crashed holder cannot block the run forever).
The executor waits a bounded time for it, then answers `Tools.Busy` (retryable: nothing ran).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class RunLease(Protocol):
    def acquire(self, tenant_id: str, run_id: str, holder: str, ttl_s: float) -> bool:
        """True when `holder` now holds the run's lease (re-acquiring one's own lease succeeds)."""
        ...

    def release(self, tenant_id: str, run_id: str, holder: str) -> None: ...


class LeaseUnavailable(Exception):
    """The lease store could not be reached."""


@dataclass
class InMemoryRunLease:
    clock: Callable[[], float] = time.monotonic
    _held: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self, tenant_id: str, run_id: str, holder: str, ttl_s: float) -> bool:
        with self._lock:
            now = self.clock()
            current = self._held.get((tenant_id, run_id))
            if current is not None and current[0] != holder and current[1] > now:
                return False
            self._held[(tenant_id, run_id)] = (holder, now + ttl_s)
            return True

    def release(self, tenant_id: str, run_id: str, holder: str) -> None:
        with self._lock:
            current = self._held.get((tenant_id, run_id))
            if current is not None and current[0] == holder:
                del self._held[(tenant_id, run_id)]


def wait_for_lease(
    lease: RunLease,
    tenant_id: str,
    run_id: str,
    holder: str,
    *,
    ttl_s: float,
    wait_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Poll for the lease with backoff (50 ms doubling to 1 s) for at most `wait_s`."""
    deadline = clock() + max(wait_s, 0)
    delay = 0.05
    while True:
        if lease.acquire(tenant_id, run_id, holder, ttl_s):
            return True
        remaining = deadline - clock()
        if remaining <= 0:
            return False
        sleep(min(delay, remaining))
        delay = min(delay * 2, 1.0)
