"""What a running tool may know about its call: who asked, and the call's idempotency key.

Set by the executor for the duration of one call (in the tool's worker thread too) and read by a tool
with `current_call()`. A tool that acts on the world uses `idempotency_key` so that running the same
call twice (a redelivery after a crash mid-way) changes nothing more the second time.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class CallContext:
    tenant_id: str
    run_id: str
    tool_call_id: str
    session_id: str = ""
    agent: str = ""
    user_id: str | None = None

    @property
    def idempotency_key(self) -> str:
        """(tenant, run_id, tool_call_id): the same for every delivery and retry of this call."""
        return f"{self.tenant_id}/{self.run_id}/{self.tool_call_id}"


class NoCurrentCall(LookupError):
    """`current_call()` outside a tool call."""


_CURRENT: ContextVar[CallContext | None] = ContextVar("agentwire_tool_call", default=None)


def current_call() -> CallContext:
    call = _CURRENT.get()
    if call is None:
        raise NoCurrentCall("no tool call is running in this context")
    return call


def set_current_call(call: CallContext | None) -> object:
    """Returns a token for `reset_current_call`."""
    return _CURRENT.set(call)


def reset_current_call(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]
