"""Provision the whole topology on the emulator through boto3, from the five service manifests.

The CDK stacks are built from the same `ServiceManifest` objects, so local and AWS cannot drift: the
bus, one queue + DLQ + rule per consumer, each table, the payload bucket and the run state machine.
moto's CloudFormation cannot deploy the synthesized templates (rules on a custom bus fail, DESIGN §5),
which is why this goes through the service APIs directly.

The result is a `Topology`: a plain, JSON-serialisable description (names, URLs, ARNs) that the workers
read to find their queues and that the CDK tests compare with the synthesized templates.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from agentwire_contracts.manifest import (
    ConsumerSpec,
    ServiceManifest,
    TableSpec,
    bus_name,
    payload_bucket_name,
    state_machine_name,
)
from agentwire_contracts.names import (
    DEFAULT_PREFIX,
    ENV_EVENT_BUS_NAME,
    ENV_PAYLOAD_BUCKET,
    ENV_STATE_MACHINE_ARN,
)
from agentwire_contracts.services import SERVICES

#: The account moto answers for; only used to spell ARNs nobody dereferences (the state machine role).
EMULATOR_ACCOUNT_ID = "123456789012"
#: Step Functions wants a role; moto does not evaluate IAM, so the role need not exist.
STATE_MACHINE_ROLE_ARN = f"arn:aws:iam::{EMULATOR_ACCOUNT_ID}:role/agentwire-local-state-machine"
#: Messages in a DLQ are kept for the SQS maximum (14 days), as the CDK stacks do, so nothing is lost.
DLQ_RETENTION_S = 14 * 24 * 3600


def state_machine_arn(prefix: str, region: str) -> str:
    """The ARN the emulator gives the run state machine; known before it exists."""
    return f"arn:aws:states:{region}:{EMULATOR_ACCOUNT_ID}:stateMachine:{state_machine_name(prefix)}"


def planned_environment(manifest: ServiceManifest, prefix: str, region: str) -> dict[str, str]:
    """What a service's handlers read from the environment to find their resources.

    Every name is derived from the manifests, so workers can be started (and spend their seconds
    importing) while the emulator is still starting and being provisioned.
    """
    return {
        ENV_EVENT_BUS_NAME: bus_name(prefix),
        ENV_STATE_MACHINE_ARN: state_machine_arn(prefix, region),
        ENV_PAYLOAD_BUCKET: payload_bucket_name(prefix),
        **manifest.table_environment(prefix),
    }


def load_manifest(service: str) -> ServiceManifest:
    module = importlib.import_module(f"agentwire_{service}.manifest")
    manifest = module.MANIFEST
    if not isinstance(manifest, ServiceManifest):
        raise TypeError(f"agentwire_{service}.manifest.MANIFEST is not a ServiceManifest")
    return manifest


def load_manifests() -> tuple[ServiceManifest, ...]:
    return tuple(load_manifest(service) for service in SERVICES)


@dataclass(frozen=True)
class QueueTopology:
    """One consumer: its queue, DLQ and the rule that feeds it."""

    service: str
    consumer: str
    handler: str
    queue_name: str
    queue_url: str
    queue_arn: str
    dlq_name: str
    dlq_url: str
    dlq_arn: str
    #: The first of `rule_names` (most consumers have one rule).
    rule_name: str
    #: One rule per pattern of `manifest.event_patterns(consumer)`, in that order.
    rule_names: tuple[str, ...]
    event_patterns: tuple[dict[str, Any], ...]
    detail_types: tuple[str, ...]
    batch_size: int
    max_receive_count: int
    #: What the queue was created with: the manifest's, or the shorter local override.
    visibility_timeout_s: int
    #: What the manifest (and so the CDK stack) asks for.
    manifest_visibility_timeout_s: int
    function_timeout_s: int
    memory_mb: int
    #: The bus its rules are on when it is not agentwire's (AWS services' events: the default bus).
    rules_bus: str | None = None


@dataclass(frozen=True)
class TableTopology:
    service: str
    table: str
    table_name: str
    env_var: str
    partition_key: str
    sort_key: str | None
    ttl_attribute: str | None


@dataclass(frozen=True)
class Topology:
    prefix: str
    region: str
    bus_name: str
    bus_arn: str
    payload_bucket: str
    state_machine_name: str
    state_machine_arn: str
    queues: tuple[QueueTopology, ...] = ()
    tables: tuple[TableTopology, ...] = ()
    #: Dotted paths of HTTP handlers by service (only the gateway has one).
    http_handlers: dict[str, str] = field(default_factory=dict)

    def queue(self, service: str, consumer: str) -> QueueTopology:
        for queue in self.queues:
            if queue.service == service and queue.consumer == consumer:
                return queue
        raise KeyError(f"no queue for {service}/{consumer}")

    def queues_of(self, service: str) -> tuple[QueueTopology, ...]:
        return tuple(queue for queue in self.queues if queue.service == service)

    def table(self, service: str, table: str) -> TableTopology:
        for spec in self.tables:
            if spec.service == service and spec.table == table:
                return spec
        raise KeyError(f"no table {service}/{table}")

    def service_environment(self, service: str) -> dict[str, str]:
        """What a service's handlers read from the environment to find their resources."""
        env = {
            ENV_EVENT_BUS_NAME: self.bus_name,
            ENV_STATE_MACHINE_ARN: self.state_machine_arn,
            ENV_PAYLOAD_BUCKET: self.payload_bucket,
        }
        env.update({spec.env_var: spec.table_name for spec in self.tables if spec.service == service})
        return env

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Topology:
        queues = tuple(
            QueueTopology(**{**queue, "detail_types": tuple(queue["detail_types"])}) for queue in raw["queues"]
        )
        tables = tuple(TableTopology(**table) for table in raw["tables"])
        return cls(**{**raw, "queues": queues, "tables": tables})

    @classmethod
    def from_json(cls, text: str) -> Topology:
        return cls.from_dict(json.loads(text))


class ClientFactory(Protocol):
    """Anything that hands out boto3 clients: an `Emulator`, or `Clients` below."""

    def client(self, service: str) -> Any: ...


@dataclass(frozen=True)
class Clients:
    """Pre-built clients (tests may pass their own)."""

    by_service: dict[str, Any]

    def client(self, service: str) -> Any:
        return self.by_service[service]


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def provision(
    emulator_or_clients: ClientFactory,
    prefix: str = DEFAULT_PREFIX,
    *,
    local_visibility_timeout_s: int | None = None,
    manifests: tuple[ServiceManifest, ...] | None = None,
) -> Topology:
    """Create everything the manifests describe; safe to call again on the same emulator.

    `local_visibility_timeout_s` replaces each queue's visibility timeout (AWS guidance: 6x the function
    timeout, so up to 30 minutes for the llm) with a shorter one. Locally a message a handler reports in
    `batchItemFailures` should come back within seconds, so a developer sees the retry and the DLQ
    redrive happen while watching, and tests of the poison path finish in seconds. The workers extend
    the visibility of messages whose handler is still running, so a short timeout never causes a second
    delivery of a message that is merely slow.
    """
    manifests = manifests or load_manifests()
    events = emulator_or_clients.client("events")
    sqs = emulator_or_clients.client("sqs")
    dynamodb = emulator_or_clients.client("dynamodb")
    s3 = emulator_or_clients.client("s3")
    stepfunctions = emulator_or_clients.client("stepfunctions")
    region = str(events.meta.region_name)

    bus = bus_name(prefix)
    bus_arn = _create_bus(events, bus)
    queues: list[QueueTopology] = []
    tables: list[TableTopology] = []
    http_handlers: dict[str, str] = {}
    for manifest in manifests:
        for consumer in manifest.consumers:
            queues.append(
                _create_consumer_queue(sqs, events, manifest, consumer, prefix, bus, local_visibility_timeout_s)
            )
        for table in manifest.tables:
            tables.append(_create_table(dynamodb, manifest, table, prefix))
        if manifest.http is not None:
            http_handlers[manifest.service] = manifest.http.handler

    bucket = payload_bucket_name(prefix)
    _create_bucket(s3, bucket, region)
    machine_name = state_machine_name(prefix)
    machine_arn = _create_state_machine(stepfunctions, machine_name, bus)
    return Topology(
        prefix=prefix,
        region=region,
        bus_name=bus,
        bus_arn=bus_arn,
        payload_bucket=bucket,
        state_machine_name=machine_name,
        state_machine_arn=machine_arn,
        queues=tuple(queues),
        tables=tuple(tables),
        http_handlers=http_handlers,
    )


def _create_bus(events: Any, name: str) -> str:
    try:
        return str(events.create_event_bus(Name=name)["EventBusArn"])
    except events.exceptions.ResourceAlreadyExistsException:
        return str(events.describe_event_bus(Name=name)["Arn"])


def _create_consumer_queue(
    sqs: Any,
    events: Any,
    manifest: ServiceManifest,
    consumer: ConsumerSpec,
    prefix: str,
    bus: str,
    local_visibility_timeout_s: int | None,
) -> QueueTopology:
    dlq_name = manifest.dlq_name(consumer, prefix)
    dlq_url = sqs.create_queue(QueueName=dlq_name, Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)})[
        "QueueUrl"
    ]
    dlq_arn = _queue_arn(sqs, dlq_url)

    visibility = local_visibility_timeout_s or consumer.visibility_timeout_s
    queue_name = manifest.queue_name(consumer, prefix)
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(consumer.max_receive_count)}
    queue_url = sqs.create_queue(
        QueueName=queue_name,
        Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)

    patterns = manifest.event_patterns(consumer)
    rule_names = tuple(manifest.rule_name(consumer, prefix, index) for index in range(len(patterns)))
    rule_arns = [
        events.put_rule(
            Name=rule_name,
            EventBusName=consumer.event_bus or bus,
            EventPattern=json.dumps(pattern),
            State="ENABLED",
            Description=f"{', '.join(pattern['detail-type'])} -> {queue_name}",
        )["RuleArn"]
        for rule_name, pattern in zip(rule_names, patterns, strict=True)
    ]
    # The same grant the CDK stack gives: only this consumer's rules may send to this queue.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    for rule_name in rule_names:
        events.put_targets(
            Rule=rule_name, EventBusName=consumer.event_bus or bus, Targets=[{"Id": "queue", "Arn": queue_arn}]
        )
    return QueueTopology(
        service=manifest.service,
        consumer=consumer.name,
        handler=consumer.handler,
        queue_name=queue_name,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_name=dlq_name,
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        rule_name=rule_names[0],
        rule_names=rule_names,
        event_patterns=tuple(patterns),
        detail_types=tuple(sorted(consumer.detail_types)),
        batch_size=consumer.batch_size,
        max_receive_count=consumer.max_receive_count,
        visibility_timeout_s=visibility,
        manifest_visibility_timeout_s=consumer.visibility_timeout_s,
        function_timeout_s=consumer.function_timeout_s,
        memory_mb=consumer.memory_mb,
        rules_bus=consumer.event_bus,
    )


def _queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    return str(attributes["QueueArn"])


def _create_table(dynamodb: Any, manifest: ServiceManifest, table: TableSpec, prefix: str) -> TableTopology:
    name = manifest.table_name(table, prefix)
    key_schema = [{"AttributeName": table.partition_key, "KeyType": "HASH"}]
    attributes = [{"AttributeName": table.partition_key, "AttributeType": "S"}]
    if table.sort_key:
        key_schema.append({"AttributeName": table.sort_key, "KeyType": "RANGE"})
        attributes.append({"AttributeName": table.sort_key, "AttributeType": "S"})
    with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):
        dynamodb.create_table(
            TableName=name,
            KeySchema=key_schema,
            AttributeDefinitions=attributes,
            BillingMode="PAY_PER_REQUEST",
        )
    if table.ttl_attribute:
        try:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
        except Exception as exc:  # already enabled on a re-run
            if _error_code(exc) != "ValidationException":
                raise
    return TableTopology(
        service=manifest.service,
        table=table.name,
        table_name=name,
        env_var=table.env_var,
        partition_key=table.partition_key,
        sort_key=table.sort_key,
        ttl_attribute=table.ttl_attribute,
    )


def _create_bucket(s3: Any, name: str, region: str) -> None:
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        s3.create_bucket(**kwargs)


def _create_state_machine(stepfunctions: Any, name: str, bus: str) -> str:
    from agentwire_orchestrator.asl import render

    definition = render(bus)
    for page in stepfunctions.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                arn = str(machine["stateMachineArn"])
                stepfunctions.update_state_machine(stateMachineArn=arn, definition=definition)
                return arn
    response = stepfunctions.create_state_machine(
        name=name, definition=definition, roleArn=STATE_MACHINE_ROLE_ARN, type="STANDARD"
    )
    return str(response["stateMachineArn"])
