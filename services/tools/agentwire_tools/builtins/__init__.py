"""The tools every deployment offers."""

from __future__ import annotations

from typing import Any

from agentwire_tools.builtins.calculator import CALCULATOR
from agentwire_tools.builtins.clock import current_time_tool
from agentwire_tools.builtins.http_fetch import HttpFetcher, HttpFetchPolicy, http_fetch_tool
from agentwire_tools.builtins.notify import InMemoryNotificationStore, NotificationStore, send_notification_tool
from agentwire_tools.registry import Tool


def builtin_tools(
    *, notifications: NotificationStore | None = None, fetcher: HttpFetcher | None = None
) -> list[Tool[Any]]:
    """`calculator`, `current_time`, `http_fetch` (nothing allowed without an allowlist) and
    `send_notification` (in memory unless a store is given)."""
    return [
        CALCULATOR,
        current_time_tool(),
        http_fetch_tool(fetcher or HttpFetcher(HttpFetchPolicy())),
        send_notification_tool(notifications or InMemoryNotificationStore()),
    ]
