"""The one publish helper: batches of 10, size checks, trace header forwarding, typed failures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agentwire_contracts.envelope import Event

#: EventBridge's limit for one entry (and one PutEvents call) is 256 KB; Step Functions' state limit
#: is the same, so events stay well below it and large payloads travel by claim check.
MAX_ENTRY_BYTES = 256 * 1024
MAX_ENTRIES_PER_CALL = 10


class EventsClient(Protocol):
    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]: ...


class PublishError(RuntimeError):
    """Some entries were not accepted by EventBridge (FailedEntryCount > 0)."""

    code = "Bus.PublishFailed"

    def __init__(self, failed: list[dict[str, Any]]):
        self.failed = failed
        reasons = ", ".join(f"{f.get('detail_type')}: {f.get('ErrorCode')} {f.get('ErrorMessage')}" for f in failed)
        super().__init__(f"{len(failed)} event(s) not published: {reasons}")


class EventTooLarge(ValueError):
    code = "Bus.EventTooLarge"


@dataclass(frozen=True)
class EventPublisher:
    """Publishes contract events to the bus. The adapter every service's handler uses."""

    client: EventsClient
    bus_name: str

    def entry(self, event: Event[Any]) -> dict[str, Any]:
        detail = event.detail_json()
        entry: dict[str, Any] = {
            "EventBusName": self.bus_name,
            "Source": event.source,
            "DetailType": event.detail_type,
            "Detail": detail,
        }
        if event.metadata.trace_header:
            entry["TraceHeader"] = event.metadata.trace_header
        size = len(event.source) + len(event.detail_type) + len(detail.encode())
        if size > MAX_ENTRY_BYTES:
            raise EventTooLarge(f"{event.detail_type} is {size} bytes (limit {MAX_ENTRY_BYTES}); use the payload store")
        return entry

    def publish(self, events: Sequence[Event[Any]]) -> None:
        """Publish in batches of 10; raise `PublishError` naming every entry that failed."""
        entries = [self.entry(event) for event in events]
        failed: list[dict[str, Any]] = []
        for start in range(0, len(entries), MAX_ENTRIES_PER_CALL):
            batch = entries[start : start + MAX_ENTRIES_PER_CALL]
            response = self.client.put_events(Entries=batch)
            if response.get("FailedEntryCount", 0):
                for sent, result in zip(batch, response.get("Entries", []), strict=False):
                    if result.get("ErrorCode"):
                        failed.append({"detail_type": sent["DetailType"], **result})
        if failed:
            raise PublishError(failed)

    def publish_one(self, event: Event[Any]) -> None:
        self.publish([event])


def detail_size(detail: dict[str, Any]) -> int:
    return len(json.dumps(detail, separators=(",", ":")).encode())
