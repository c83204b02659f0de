"""`send_notification`: the demo's irreversible tool. It records a notification to an operations channel
in the service's state table (the outbox a real deployment would deliver from).

Irreversible, so a call needs a human approval (the run asks for one and sends its proof); it honours
its call's idempotency key, so a redelivered or retried call never sends a second notification.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from agentwire_tools.context import current_call
from agentwire_tools.registry import SideEffect, Tool, ToolUnavailable


class NotifyInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="The channel to notify, e.g. 'ops' or 'oncall'."
    )
    message: str = Field(min_length=1, max_length=500, description="The notification text (at most 500 characters).")
    severity: Literal["info", "warning", "critical"] = "info"


class Notification(BaseModel):
    notification_id: str
    tenant_id: str
    run_id: str
    tool_call_id: str
    channel: str
    message: str
    severity: Literal["info", "warning", "critical"]
    sent_at: str


class NotificationStoreUnavailable(Exception):
    pass


class NotificationStore(Protocol):
    def send_once(self, notification: Notification) -> Notification:
        """Record the notification unless one with the same (tenant, run, call) exists; return the stored one."""
        ...


class InMemoryNotificationStore:
    def __init__(self) -> None:
        self.notifications: dict[tuple[str, str, str], Notification] = {}
        self._lock = threading.Lock()

    def send_once(self, notification: Notification) -> Notification:
        key = (notification.tenant_id, notification.run_id, notification.tool_call_id)
        with self._lock:
            return self.notifications.setdefault(key, notification)


def send_notification_tool(store: NotificationStore) -> Tool[NotifyInput]:
    def run(call: NotifyInput) -> dict[str, str]:
        context = current_call()
        notification = Notification(
            notification_id="ntf_" + hashlib.sha256(context.idempotency_key.encode()).hexdigest()[:20],
            tenant_id=context.tenant_id,
            run_id=context.run_id,
            tool_call_id=context.tool_call_id,
            channel=call.channel,
            message=call.message,
            severity=call.severity,
            sent_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        try:
            stored = store.send_once(notification)
        except NotificationStoreUnavailable as exc:
            raise ToolUnavailable(f"notification outbox: {exc}") from exc
        return {"status": "sent", "notification_id": stored.notification_id, "channel": stored.channel}

    return Tool(
        name="send_notification",
        description=(
            "Send a notification to an operations channel ('ops' or 'oncall'). This cannot be undone: "
            "a human approves each notification before it is sent."
        ),
        input_model=NotifyInput,
        run=run,
        timeout_s=10.0,
        max_output_chars=1_000,
        side_effect=SideEffect.IRREVERSIBLE,
        untrusted_output=False,
    )
