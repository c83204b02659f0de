"""A local worker's stdout and stderr keep every line whole, as Lambda's log lines are.

CI once failed on a gateway log line holding two EMF blobs (`{..}{..}`): an HTTP request and a projector
batch printed their metrics at the same moment, and `print` writes its text and its newline separately.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path

from agentwire_infra.local.lambda_runtime import LineAtomicOutput

THREADS = 8
LINES_PER_THREAD = 400


def test_concurrent_prints_and_log_records_each_land_as_one_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "worker.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    lock = threading.Lock()
    stdout, stderr = LineAtomicOutput(fd, lock), LineAtomicOutput(fd, lock)
    logger = logging.getLogger("test.line_atomic")
    handler = logging.StreamHandler(stderr)
    logger.addHandler(handler)
    logger.propagate = False
    start = threading.Barrier(THREADS)
    # Switch threads as often as the interpreter can: a plain buffered stream then splits lines every run.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    def write(thread: int) -> None:
        start.wait()
        for line in range(LINES_PER_THREAD):
            # A metrics blob long enough to span several writes of a buffered stream.
            blob = {"_aws": {"CloudWatchMetrics": []}, "thread": thread, "line": line, "pad": "x" * 300}
            if line % 2:
                print(json.dumps(blob), file=stdout)
            else:
                logger.warning(json.dumps(blob))

    threads = [threading.Thread(target=write, args=(index,)) for index in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch_interval)
        logger.removeHandler(handler)
        os.close(fd)

    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == THREADS * LINES_PER_THREAD
    assert {(record["thread"], record["line"]) for record in records} == {
        (thread, line) for thread in range(THREADS) for line in range(LINES_PER_THREAD)
    }


def test_a_half_line_waits_for_its_newline_and_flush_writes_only_the_callers_own(tmp_path: Path) -> None:
    path = tmp_path / "worker.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    out = LineAtomicOutput(fd, threading.Lock())
    try:
        out.write('{"a": ')
        other = threading.Thread(target=lambda: (out.write("from another thread"), out.flush()))
        other.start()
        other.join()
        assert path.read_text() == "from another thread"
        out.write("1}\nnext")
        assert path.read_text() == 'from another thread{"a": 1}\n'
        out.flush()
        assert path.read_text().endswith("next")
        assert out.fileno() == fd and not out.isatty() and out.encoding == "utf-8"
    finally:
        os.close(fd)
