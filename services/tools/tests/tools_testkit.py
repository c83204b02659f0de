"""Fakes and builders shared by the tools service's tests (imported as `tools_testkit`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from agentwire_contracts.content import ToolCall
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.tool import ApprovalProof, ToolCatalogRequested, ToolInvocationRequested
from agentwire_contracts.testing import LambdaContextStub
from pydantic import BaseModel

TENANT = "tenant-a"
RUN_ID = "run-0001"
SESSION_ID = "session-1"
TASK_TOKEN = "task-token-abc"


@dataclass
class InMemoryCallOnce:
    """A `CallOnce` fake: remembers outcomes by key in a dict."""

    outcomes: dict[Any, Any] = field(default_factory=dict)

    def __call__(self, key: Any, record: Any, call: Callable[[], Any]) -> Any:
        if key not in self.outcomes:
            self.outcomes[key] = call()
        return self.outcomes[key]


def invocation_request(
    name: str,
    tool_input: dict[str, Any],
    *,
    call_id: str = "toolu_01",
    run_id: str = RUN_ID,
    step: int = 1,
    approval: ApprovalProof | None = None,
) -> Event[ToolInvocationRequested]:
    return Event.create(
        ToolInvocationRequested(
            session_id=SESSION_ID,
            step=step,
            tool_call=ToolCall(id=call_id, name=name, input=tool_input),
            approval=approval,
        ),
        tenant_id=TENANT,
        run_id=run_id,
        causation_id="run-request-event",
        task_token=TASK_TOKEN,
    )


def catalog_request(names: list[str]) -> Event[ToolCatalogRequested]:
    return Event.create(
        ToolCatalogRequested(session_id=SESSION_ID, tool_names=names),
        tenant_id=TENANT,
        run_id=RUN_ID,
        causation_id="run-request-event",
        task_token=TASK_TOKEN,
    )


class EchoInput(BaseModel):
    text: str


class SlowInput(BaseModel):
    seconds: float = 5.0


#: Lambda's context for the tools' function (`remaining_ms=` fixes the time left).
FakeLambdaContext = partial(LambdaContextStub, "agentwire-tools-invocations")


def permissive_service(registry: Any, call_once: Any = None, **kwargs: Any) -> Any:
    """A `ToolsService` whose policy permits every call: for tests that are not about authorization."""
    from agentwire_tools.authorization import CedarAuthorizer
    from agentwire_tools.service import ToolsService, run_every_time

    return ToolsService(
        registry,
        call_once or run_every_time,
        authorizer=CedarAuthorizer("permit (principal, action, resource);"),
        **kwargs,
    )
