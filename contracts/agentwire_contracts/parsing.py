"""The consumer side: turn an EventBridge event (as delivered in an SQS body) into a typed event."""

from __future__ import annotations

import json
from typing import Any, TypeVar, cast

from pydantic import ValidationError

from agentwire_contracts.envelope import Event, EventData
from agentwire_contracts.events import REGISTRY

D = TypeVar("D", bound=EventData)


class UnknownDetailType(ValueError):
    """No contract is registered for this detail-type."""


class InvalidEvent(ValueError):
    """The event does not match its contract; `code` is stable for failure events and DLQ reasons."""

    code = "Contract.InvalidEvent"


def parse_detail(detail_type: str, detail: dict[str, Any]) -> Event[Any]:
    """Parse a `detail` as the model registered for its detail-type (tolerant: extra fields ignored)."""
    model = REGISTRY.get(detail_type)
    if model is None:
        raise UnknownDetailType(detail_type)
    try:
        return Event[model].model_validate(detail, extra="ignore")  # type: ignore[valid-type]
    except ValidationError as exc:
        raise InvalidEvent(f"{detail_type}: {exc.error_count()} validation errors: {exc}") from exc


def parse_eventbridge(body: str | dict[str, Any]) -> Event[Any]:
    """Parse a whole EventBridge event (the SQS message body EventBridge delivers)."""
    try:
        envelope = json.loads(body) if isinstance(body, str) else body
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"body is not JSON: {exc}") from exc
    if not isinstance(envelope, dict) or "detail-type" not in envelope or "detail" not in envelope:
        raise InvalidEvent("body is not an EventBridge event (no detail-type/detail)")
    detail = envelope["detail"]
    if not isinstance(detail, dict):
        raise InvalidEvent("detail is not an object")
    return parse_detail(str(envelope["detail-type"]), detail)


def parse_as(model: type[D], body: str | dict[str, Any]) -> Event[D]:
    """Parse and require one specific detail-type."""
    event = parse_eventbridge(body)
    if not isinstance(event.data, model):
        raise InvalidEvent(f"expected {model.detail_type}, got {event.detail_type}")
    return cast(Event[D], event)
