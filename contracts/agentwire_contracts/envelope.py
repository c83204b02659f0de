"""The event envelope: every EventBridge `detail` is `{"metadata": {...}, "data": {...}}`.

Producers build events strictly (`Event.create`: unknown fields and coercions are rejected) so they
cannot emit garbage; consumers parse tolerantly (`parse_event`: unknown fields are ignored) so a
producer may add optional fields without breaking anyone.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_serializer

from agentwire_contracts.content import ContractModel


def utc_now() -> datetime:
    return datetime.now(UTC)


class Metadata(ContractModel):
    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=128)
    occurred_at: datetime = Field(default_factory=utc_now)
    schema_version: str = Field(pattern=r"^\d+\.\d+$")
    tenant_id: str = Field(min_length=1, max_length=128)
    run_id: str | None = Field(default=None, max_length=128)
    causation_id: str | None = Field(default=None, max_length=128)
    trace_header: str | None = Field(default=None, max_length=1024)
    #: W3C trace context (`00-<trace id>-<span id>-<flags>`), so OpenTelemetry spans of every service
    #: join one trace; `trace_header` carries the X-Ray form of the same trace.
    traceparent: str | None = Field(default=None, max_length=256)
    task_token: str | None = Field(default=None, max_length=8192)

    @field_serializer("occurred_at")
    def _rfc3339(self, value: datetime) -> str:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventData(ContractModel):
    """Base of every event's `data`. Subclasses set the class variables below."""

    detail_type: ClassVar[str]
    source: ClassVar[str]
    schema_version: ClassVar[str] = "1.0"
    #: Short text for the published schema and docs.
    description: ClassVar[str] = ""


D = TypeVar("D", bound=EventData)


class ContractViolation(ValueError):
    """A producer tried to build an event that does not match its contract."""


class Event(BaseModel, Generic[D]):
    """One event: metadata plus the typed data of its detail-type."""

    model_config = ConfigDict(extra="forbid")

    metadata: Metadata
    data: D
    #: The producing service when it is not the detail-type's usual producer (e.g. memory answering a
    #: tool invocation for the tools it offers). Not part of the detail: it travels as EventBridge `source`.
    _source: str | None = PrivateAttr(default=None)

    @property
    def detail_type(self) -> str:
        return self.data.detail_type

    @property
    def source(self) -> str:
        return self._source or self.data.source

    def detail(self) -> dict[str, Any]:
        """The JSON-ready `detail` of this event."""
        return self.model_dump(mode="json")

    def detail_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def create(
        cls,
        data: D,
        *,
        tenant_id: str,
        run_id: str | None = None,
        causation_id: str | None = None,
        trace_header: str | None = None,
        task_token: str | None = None,
        traceparent: str | None = None,
        source: str | None = None,
    ) -> Event[D]:
        """Build an event as a producer: the data must validate strictly against its model."""
        strict_check(type(data), data.model_dump(mode="python"))
        metadata = Metadata(
            schema_version=data.schema_version,
            tenant_id=tenant_id,
            run_id=run_id,
            causation_id=causation_id,
            trace_header=trace_header,
            task_token=task_token,
            traceparent=traceparent,
        )
        event = Event[type(data)](metadata=metadata, data=data)  # type: ignore[misc,operator]
        event._source = source
        return event  # type: ignore[no-any-return]

    def answer(
        self,
        data: EventData,
        *,
        source: str | None = None,
        traceparent: str | None = None,
        trace_header: str | None = None,
    ) -> Event[Any]:
        """The event that answers this one: same tenant, run and task token; caused by it. The trace
        context is this event's unless the caller continues it from its own span (`telemetry.answer`)."""
        return Event.create(
            data,
            tenant_id=self.metadata.tenant_id,
            run_id=self.metadata.run_id,
            causation_id=self.metadata.event_id,
            trace_header=trace_header or self.metadata.trace_header,
            task_token=self.metadata.task_token,
            traceparent=traceparent or self.metadata.traceparent,
            source=source,
        )


def strict_check(model: type[EventData], values: dict[str, Any]) -> None:
    """Reject unknown fields and type coercions: the producer side of the contract."""
    unknown = set(values) - set(model.model_fields)
    if unknown:
        raise ContractViolation(f"{model.__name__}: unknown fields {sorted(unknown)}")
    try:
        model.model_validate(values, strict=True)
    except ValidationError as exc:
        raise ContractViolation(f"{model.__name__}: {exc}") from exc


def typed_event(model: type[D]) -> type[Event[D]]:
    return Event[model]  # type: ignore[valid-type]
