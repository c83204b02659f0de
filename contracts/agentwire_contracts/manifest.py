"""Service manifests: the single description of a service's queues, subscriptions and tables.

The local runtime provisions from these, and the CDK stacks are built from the same objects, so the
two cannot drift. Physical names are derived here and nowhere else.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from agentwire_contracts.names import DEFAULT_PREFIX, AwsEvent, DetailType


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TableSpec(Frozen):
    """A DynamoDB table (string keys `pk`/`sk`, on-demand, point-in-time recovery on AWS)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    #: Environment variable through which the service's settings learn the physical table name.
    env_var: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    partition_key: str = "pk"
    sort_key: str | None = "sk"
    ttl_attribute: str | None = None


class AwsEventsSpec(Frozen):
    """Events an AWS service puts on the account's default bus, matched by source, detail-type and a
    detail pattern (e.g. Step Functions' execution status changes)."""

    source: str = Field(pattern=r"^aws\.[a-z0-9.-]+$")
    detail_types: tuple[str, ...] = Field(min_length=1)
    detail: dict[str, Any] | None = None


class ConsumerSpec(Frozen):
    """One Lambda function behind one SQS queue, fed by an EventBridge rule on the listed detail-types."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    #: Dotted path of the Lambda handler, e.g. `agentwire_llm.handler.lambda_handler`.
    handler: str
    #: Contract detail-types on agentwire's bus; empty only for a consumer of `aws_events`.
    detail_types: tuple[str, ...] = ()
    #: Instead of agentwire's events: AWS events from the account's default bus.
    aws_events: AwsEventsSpec | None = None
    batch_size: int = Field(default=10, ge=1, le=10)
    function_timeout_s: int = Field(default=30, ge=1, le=900)
    memory_mb: int = Field(default=512, ge=128, le=10240)
    #: Deliveries before a message moves to the DLQ.
    max_receive_count: int = Field(default=3, ge=1, le=1000)
    #: Caps concurrent executions where that protects a downstream (e.g. a provider's rate limit).
    reserved_concurrency: int | None = Field(default=None, ge=1)
    #: Tool routing: a service that offers tools receives only the invocations of `tool_names`; the
    #: tools service receives every invocation except `excluded_tool_names` (those served elsewhere).
    tool_names: tuple[str, ...] = ()
    excluded_tool_names: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_kind_of_events(self) -> ConsumerSpec:
        if bool(self.detail_types) == bool(self.aws_events):
            raise ValueError("a consumer takes either agentwire detail_types or aws_events (exactly one)")
        return self

    @property
    def event_bus(self) -> str | None:
        """The bus its rules are on: None for agentwire's own, else the account's default bus."""
        return AwsEvent.DEFAULT_BUS if self.aws_events else None

    @model_validator(mode="after")
    def _tool_routing_needs_invocations(self) -> ConsumerSpec:
        routed = bool(self.tool_names or self.excluded_tool_names)
        if routed and DetailType.TOOL_INVOCATION_REQUESTED not in self.detail_types:
            raise ValueError("tool routing applies to tool.invocation.requested only")
        if self.tool_names and self.excluded_tool_names:
            raise ValueError("give tool_names or excluded_tool_names, not both")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def visibility_timeout_s(self) -> int:
        """AWS's guidance for SQS event sources: at least six times the function timeout."""
        return 6 * self.function_timeout_s


class HttpSpec(Frozen):
    """The HTTP API of a service (only the gateway has one)."""

    handler: str
    function_timeout_s: int = Field(default=29, ge=1, le=29)
    memory_mb: int = Field(default=1024, ge=128, le=10240)


class ServiceManifest(Frozen):
    service: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    source: str
    consumers: tuple[ConsumerSpec, ...] = ()
    tables: tuple[TableSpec, ...] = ()
    http: HttpSpec | None = None
    #: Detail-types this service publishes (its IAM grant is PutEvents on the bus only).
    publishes: tuple[str, ...] = ()
    #: The orchestrator owns the state machine; only it may start, stop and resume executions.
    owns_state_machine: bool = False
    #: Reads/writes claim-checked payloads in the shared payload bucket.
    uses_payload_bucket: bool = False

    def queue_name(self, consumer: ConsumerSpec, prefix: str = DEFAULT_PREFIX) -> str:
        return f"{prefix}-{self.service}-{consumer.name}"

    def dlq_name(self, consumer: ConsumerSpec, prefix: str = DEFAULT_PREFIX) -> str:
        return f"{self.queue_name(consumer, prefix)}-dlq"

    def rule_name(self, consumer: ConsumerSpec, prefix: str = DEFAULT_PREFIX, index: int = 0) -> str:
        base = f"{self.queue_name(consumer, prefix)}-rule"
        return base if index == 0 else f"{base}-{index}"

    def event_patterns(self, consumer: ConsumerSpec) -> list[dict[str, Any]]:
        """One EventBridge pattern per rule of the consumer (rule `index` i gets pattern i).

        Routing is on detail-type, so any producer may publish a contract event; tool invocations may
        further be routed on `detail.data.tool_call.name`, so a service can offer tools of its own."""
        if consumer.aws_events is not None:
            aws: dict[str, Any] = {
                "source": [consumer.aws_events.source],
                "detail-type": list(consumer.aws_events.detail_types),
            }
            if consumer.aws_events.detail:
                aws["detail"] = consumer.aws_events.detail
            return [aws]
        invocation = DetailType.TOOL_INVOCATION_REQUESTED
        routed = bool(consumer.tool_names or consumer.excluded_tool_names)
        plain = sorted(dt for dt in consumer.detail_types if not (routed and dt == invocation))
        patterns: list[dict[str, Any]] = []
        if plain:
            patterns.append({"detail-type": plain})
        if routed:
            names: list[Any] = (
                sorted(consumer.tool_names)
                if consumer.tool_names
                else [{"anything-but": sorted(consumer.excluded_tool_names)}]
            )
            patterns.append({"detail-type": [invocation], "detail": {"data": {"tool_call": {"name": names}}}})
        return patterns

    def table_name(self, table: TableSpec, prefix: str = DEFAULT_PREFIX) -> str:
        return f"{prefix}-{self.service}-{table.name}"

    def event_pattern(self, consumer: ConsumerSpec) -> dict[str, Any]:
        """The pattern of a consumer with a single rule (see `event_patterns` for the general case)."""
        patterns = self.event_patterns(consumer)
        if len(patterns) != 1:
            raise ValueError(f"{self.service}/{consumer.name} has {len(patterns)} rules; use event_patterns()")
        return patterns[0]

    def consumer(self, name: str) -> ConsumerSpec:
        for consumer in self.consumers:
            if consumer.name == name:
                return consumer
        raise KeyError(f"{self.service} has no consumer {name!r}")

    def table(self, name: str) -> TableSpec:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"{self.service} has no table {name!r}")

    def table_environment(self, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
        return {table.env_var: self.table_name(table, prefix) for table in self.tables}


STATE_MACHINE_NAME_SUFFIX = "run"


def state_machine_name(prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}-{STATE_MACHINE_NAME_SUFFIX}"


def payload_bucket_name(prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}-payloads"


def bus_name(prefix: str = DEFAULT_PREFIX) -> str:
    return prefix
