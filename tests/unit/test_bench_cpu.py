"""The benchmark's CPU accounting: per-process CPU seconds from /proc, per run and role."""

from __future__ import annotations

import os
import time

from agentwire_infra.bench import cpu_per_run, process_cpu_s


def test_process_cpu_grows_with_work_and_not_with_sleep() -> None:
    before = process_cpu_s(os.getpid())
    assert before is not None and before > 0
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        sum(range(1000))
    busy = process_cpu_s(os.getpid())
    time.sleep(0.3)
    idle = process_cpu_s(os.getpid())
    assert busy is not None and idle is not None
    assert busy - before >= 0.2  # clock ticks are 10 ms
    assert idle - busy < 0.1


def test_a_process_that_is_gone_has_no_cpu_figure() -> None:
    assert process_cpu_s(2**22 + 12345) is None


def test_cpu_per_run_divides_what_each_role_used_during_the_runs() -> None:
    before = {"emulator": 10.0, "memory": 2.0}
    after = {"emulator": 40.0, "memory": 5.0, "client": 1.0}
    assert cpu_per_run(before, after, runs=60) == {"client": 0.0167, "emulator": 0.5, "memory": 0.05}
