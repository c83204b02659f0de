"""`beating`: the background beat a long step sends while it works (unit: threads, no network)."""

from __future__ import annotations

import threading

import pytest
from agentwire_contracts.heartbeat import beating


def test_beats_while_the_block_runs_and_never_after() -> None:
    beats: list[float] = []
    three = threading.Event()

    def beat(elapsed_s: float) -> None:
        beats.append(elapsed_s)
        if len(beats) == 3:
            three.set()

    with beating(beat, every_s=0.01):
        assert three.wait(5), "no three beats within 5 s"
    after = len(beats)
    threading.Event().wait(0.05)
    assert len(beats) == after  # the thread stopped with the block
    assert beats == sorted(beats) and beats[0] > 0


def test_a_beat_that_fails_does_not_stop_the_beating_or_the_work() -> None:
    calls: list[float] = []
    two = threading.Event()

    def beat(elapsed_s: float) -> None:
        calls.append(elapsed_s)
        if len(calls) == 2:
            two.set()
        raise ConnectionError("bus unreachable")

    with beating(beat, every_s=0.01):
        assert two.wait(5)
    assert len(calls) >= 2


def test_no_interval_means_no_beats_and_errors_in_the_block_propagate() -> None:
    beats: list[float] = []
    with pytest.raises(RuntimeError, match="the work failed"), beating(beats.append, every_s=0):
        raise RuntimeError("the work failed")
    assert beats == []
