"""Beats while a long step runs, so the run's `HeartbeatSeconds` tells a live worker from a dead one.

A worker that answers a task-token request and may run for long (a tool call) wraps the work in
`beating(beat, every_s)`: `beat` (which publishes a `*.heartbeat` event carrying the request's task
token) is called every `every_s` seconds from a background thread until the work returns. The
orchestrator's resume consumer turns each beat into `SendTaskHeartbeat`. A worker that crashed, hung or
never received the request stops beating, and the step fails with `States.HeartbeatTimeout` after the
run's heartbeat interval instead of waiting for the step's whole timeout.

The first beat comes after `every_s`, not at once: most calls end sooner and cost no beat at all. A beat
that cannot be published is logged and skipped; it never fails the work it accompanies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def beating(beat: Callable[[float], None], every_s: float) -> Iterator[None]:
    """Call `beat(elapsed_s)` every `every_s` seconds while the block runs (`every_s <= 0`: never)."""
    if every_s <= 0:
        yield
        return
    stop = threading.Event()
    started = time.monotonic()

    def run() -> None:
        while not stop.wait(every_s):
            try:
                beat(time.monotonic() - started)
            except Exception:
                log.exception("a heartbeat could not be sent; the next one will be tried")

    thread = threading.Thread(target=run, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
