"""What AWS Lambda hands a function, rebuilt locally: the context object and the SQS batch event.

The handlers are the deployed Lambda entry points, unchanged; these shapes are the contract between
them and the runtime, so they follow Lambda's documented SQS event format field for field — built by
`agentwire_contracts.testing`, the same code the services' tests hand their handlers.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentwire_contracts.testing import LambdaContextStub, sqs_batch_event_from_messages

from agentwire_infra.local.provision import EMULATOR_ACCOUNT_ID

Handler = Callable[[dict[str, Any], Any], Any]


def import_handler(dotted_path: str) -> Handler:
    """`agentwire_llm.handler.lambda_handler` → the function."""
    module_name, _, function_name = dotted_path.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {dotted_path!r} is not a dotted path module.function")
    handler = getattr(importlib.import_module(module_name), function_name)
    if not callable(handler):
        raise TypeError(f"{dotted_path} is not callable")
    return handler  # type: ignore[no-any-return]


@dataclass
class LambdaContext(LambdaContextStub):
    """Lambda's context object for a local invocation (the emulator's account)."""

    account_id: str = EMULATOR_ACCOUNT_ID


def sqs_event(messages: Sequence[Mapping[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    """`ReceiveMessage` results → Lambda's SQS event (the same builder the services' tests use)."""
    return sqs_batch_event_from_messages(messages, source_arn=queue_arn, region=region)


class LineAtomicOutput(io.TextIOBase):
    """A sandbox's stdout or stderr where every line reaches the file whole, as Lambda's log lines do.

    Lambda runs one invocation per sandbox, so a line a handler prints is one CloudWatch log event. A
    local worker serves several consumers and HTTP requests on threads of one process, and `print`
    writes its text and its newline in two calls: two threads printing EMF at once left
    `{..}{..}\\n\\n` in the log, which no log reader can parse. Each thread's text is held until its
    line is complete, then the line goes to the file descriptor in one `write` under a lock shared by
    stdout and stderr (they share one log file, so a buffered stream must not flush half a line
    between them either).
    """

    #: A thread that never ends its line still reaches the file once it has written this much.
    MAX_PENDING_CHARS = 64 * 1024

    def __init__(self, fd: int, lock: threading.Lock) -> None:
        super().__init__()
        self._fd = fd
        self._lock = lock
        self._pending = threading.local()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        pending = getattr(self._pending, "text", "") + text
        complete, newline, rest = pending.rpartition("\n")
        if newline:
            self._write_through(complete + newline)
            pending = rest
        if len(pending) >= self.MAX_PENDING_CHARS:
            self._write_through(pending)
            pending = ""
        self._pending.text = pending
        return len(text)

    def flush(self) -> None:
        # Only this thread's text: another thread's half line stays with it until its newline.
        pending = getattr(self._pending, "text", "")
        if pending:
            self._pending.text = ""
            self._write_through(pending)

    def _write_through(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        with self._lock:
            while data:
                data = data[os.write(self._fd, data) :]


def use_line_atomic_output() -> None:
    """Replace this process's stdout and stderr with line-atomic ones (a local worker calls it first)."""
    lock = threading.Lock()
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        stream.flush()
        setattr(sys, name, LineAtomicOutput(stream.fileno(), lock))


def failed_message_ids(response: Any, message_ids: Sequence[str]) -> set[str]:
    """The messages to leave on the queue, read from a handler's answer as Lambda reads it.

    With ReportBatchItemFailures, Lambda deletes everything but the listed ids; an answer it cannot
    understand (not a dict, an id that is missing, empty or not in the batch) fails the whole batch.
    `None` (a handler that returns nothing) means success.
    """
    if response is None:
        return set()
    if not isinstance(response, Mapping):
        return set(message_ids)
    failures = response.get("batchItemFailures") or []
    if not isinstance(failures, list):
        return set(message_ids)
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not identifier or identifier not in message_ids:
            return set(message_ids)
        failed.add(identifier)
    return failed
