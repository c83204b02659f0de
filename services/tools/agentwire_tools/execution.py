"""Running one tool call: validate the input, run under a deadline, cap the output, time it.

Everything that can go wrong *with the call* (unknown tool, invalid input, a timeout, a tool that
raises) becomes an error *result* the model reads and can act on. Only `ToolUnavailable` (the tool's
own infrastructure is down) escapes, as `CallUnavailable`, for the caller to answer `Tools.Unavailable`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from agentwire_contracts import telemetry
from agentwire_contracts.content import PayloadRef
from pydantic import BaseModel, ValidationError

from agentwire_tools.context import CallContext, reset_current_call, set_current_call
from agentwire_tools.registry import SideEffect, Tool, ToolError, ToolRegistry, ToolUnavailable, UnknownTool
from agentwire_tools.untrusted import fence, new_nonce

logger = logging.getLogger(__name__)

#: Even a nearly spent invocation gives a tool this long, rather than failing it without a try.
MIN_TIME_LIMIT_S = 0.05
#: Validation messages list at most this many problems; the model fixes a few at a time anyway.
MAX_REPORTED_VALIDATION_ERRORS = 5


class Outcome(StrEnum):
    """How a call ended; the metrics dimension and log field."""

    OK = "ok"
    UNKNOWN_TOOL = "unknown_tool"
    #: Refused before it ran: by policy, for want of an approval, or for an unknown agent.
    DENIED = "denied"
    INVALID_INPUT = "invalid_input"
    TOOL_ERROR = "tool_error"
    TIMEOUT = "timeout"
    CRASHED = "crashed"


class ToolOutcome(BaseModel):
    """The result of one call, as stored for idempotent replay and answered to the run."""

    tool_name: str
    content: str
    is_error: bool
    outcome: Outcome
    duration_ms: float
    truncated: bool = False
    #: The whole output when `content` was truncated; the service moves it to the payload store and
    #: keeps only `result_ref` (so idempotency records stay small).
    full_content: str | None = None
    #: Claim check of the whole output (see `ToolsService.claim_check`).
    result_ref: PayloadRef | None = None
    #: True when this outcome was replayed from the idempotency store (a redelivered request).
    replayed: bool = False


class CallUnavailable(Exception):
    """The tool could not run because something it depends on is down. Worth retrying later only when
    the tool is safe to repeat (`side_effect.retryable`): an irreversible action may have half-happened."""

    def __init__(self, message: str, side_effect: SideEffect) -> None:
        super().__init__(message)
        self.side_effect = side_effect


def execute(
    registry: ToolRegistry,
    name: str,
    raw_input: dict[str, Any],
    *,
    time_left_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    call: CallContext | None = None,
) -> ToolOutcome:
    """Run one call. `time_left_s` is what the invocation can still spend (the Lambda's remaining
    time less a reserve for answering); the tool's own timeout applies when it is shorter. `call` is
    what the tool sees as `current_call()` (its idempotency key among others)."""
    started = clock()

    def finish(
        content: str, outcome: Outcome, *, cap: int | None = None, untrusted_from: Tool[Any] | None = None
    ) -> ToolOutcome:
        truncated, full_content = False, None
        if cap is not None and len(content) > cap:
            content, truncated, full_content = truncate(content, cap), True, content
        if untrusted_from is not None and untrusted_from.untrusted_output:
            content = fence(untrusted_from.name, content, new_nonce())
        return ToolOutcome(
            tool_name=name,
            content=content,
            is_error=outcome is not Outcome.OK,
            outcome=outcome,
            duration_ms=round((clock() - started) * 1000, 3),
            truncated=truncated,
            full_content=full_content,
        )

    try:
        tool = registry.get(name)
    except UnknownTool as exc:
        return finish(
            f"Unknown tool {name!r}. Available tools: {', '.join(exc.available) or 'none'}.",
            Outcome.UNKNOWN_TOOL,
        )
    try:
        validated = tool.input_model.model_validate(raw_input)
    except ValidationError as exc:
        return finish(describe_validation_error(tool, exc), Outcome.INVALID_INPUT, cap=tool.max_output_chars)
    limit_s = tool.timeout_s if time_left_s is None else max(min(tool.timeout_s, time_left_s), MIN_TIME_LIMIT_S)
    try:
        content = render(run_with_deadline(tool, validated, limit_s, call))
    except ToolError as exc:
        # A tool's error message may quote what it read (a page, an API's error body): untrusted too.
        message = str(exc) or f"Tool {name} failed."
        return finish(message, Outcome.TOOL_ERROR, cap=tool.max_output_chars, untrusted_from=tool)
    except ToolUnavailable as exc:
        raise CallUnavailable(f"tool {name} is unavailable: {exc}", tool.side_effect) from exc
    except DeadlineExceeded:
        return finish(timeout_message(tool, limit_s), Outcome.TIMEOUT)
    except Exception as exc:
        # A bug in the tool (or a result that cannot be rendered): the model learns the call failed and
        # why in one line; operators get the traceback, without the content it may quote (`crash_report`).
        logger.error("tool %s crashed\n%s", name, crash_report(exc))
        return finish(f"Tool {name} failed: {type(exc).__name__}: {exc}", Outcome.CRASHED, cap=tool.max_output_chars)
    return finish(content, Outcome.OK, cap=tool.max_output_chars, untrusted_from=tool)


class DeadlineExceeded(Exception):
    pass


#: Stands in for an exception's message in the log while content recording is off.
MESSAGE_WITHHELD = "<message withheld: content recording is off>"


def crash_report(exc: BaseException) -> str:
    """A crashed tool's traceback for the log: every frame and exception type of the chain, but the messages
    only under the content rule of spans (recording on, then redacted). A message often quotes the input or
    output (`KeyError: 'alice@example.com'`, `ValueError: invalid literal for int(): 'hunter2'`); the frames
    show source lines, never values."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    recording = telemetry.content_recording_enabled()
    parts = []
    for error in reversed(chain):  # the first cause first, as Python prints it
        kind = type(error)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        message = MESSAGE_WITHHELD
        if recording:
            message = telemetry.truncate(telemetry.redact(str(error)), telemetry.MAX_CONTENT_CHARS)
        frames = "".join(traceback.format_tb(error.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{name}: {message}")
    return "\n\nwhich led to\n\n".join(parts)


def timeout_message(tool: Tool[Any], limit_s: float) -> str:
    message = f"Tool {tool.name} did not finish within its time limit of {limit_s:g} s."
    if tool.side_effect is SideEffect.READ_ONLY:
        return message + " Try a smaller request or a different approach."
    # The worker thread cannot be killed: an action that timed out may still take effect.
    return message + " The action may still complete in the background; check its effect before retrying it."


def run_with_deadline(tool: Tool[Any], validated: BaseModel, limit_s: float, call: CallContext | None = None) -> object:
    """Run the tool in a daemon thread and stop waiting at its deadline.

    Python cannot kill a thread: a timed-out tool keeps running in the background until it returns
    (or the Lambda sandbox is frozen), but the call is answered on time and the thread cannot hold
    the process open.
    """
    box: dict[str, Any] = {}
    token = set_current_call(call)
    try:
        context = contextvars.copy_context()
    finally:
        reset_current_call(token)

    def target() -> None:
        try:
            box["value"] = context.run(tool.run, validated)
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"tool-{tool.name}", daemon=True)
    worker.start()
    worker.join(limit_s)
    if worker.is_alive():
        raise DeadlineExceeded(tool.name)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def render(value: object) -> str:
    """The tool's return value as `tool_result` text: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def truncate(content: str, cap: int) -> str:
    note = f"\n[output truncated: {len(content)} characters, limit {cap}]"
    return content[: max(cap - len(note), 0)] + note


def describe_validation_error(tool: Tool[Any], error: ValidationError) -> str:
    problems = []
    for detail in error.errors(include_url=False, include_input=False)[:MAX_REPORTED_VALIDATION_ERRORS]:
        where = ".".join(str(part) for part in detail["loc"]) or "input"
        problems.append(f"{where}: {detail['msg']}")
    more = error.error_count() - len(problems)
    if more > 0:
        problems.append(f"... and {more} more")
    expected = json.dumps(tool.spec.input_schema.get("properties", {}), separators=(",", ":"))
    return f"Invalid input for tool {tool.name}: " + "; ".join(problems) + f". Expected properties: {expected}"
