"""The services together on the embedded emulator: provisioning, the SQS semantics of the workers
(redelivery, DLQ redrive), and idempotency across a duplicate publish or a redelivery."""

from __future__ import annotations

import json
import uuid
from typing import Any

from agentwire_contracts.content import Message, TextBlock
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.memory import MemoryContextRequested
from agentwire_contracts.events.run import RunRequested
from agentwire_contracts.manifest import bus_name, state_machine_name
from agentwire_contracts.names import DetailType
from agentwire_contracts.publish import EventPublisher
from agentwire_infra.local.client import GatewayClient, wait_until
from agentwire_infra.local.provision import load_manifests
from agentwire_infra.local.stack import LocalStack


def publisher(local_stack: LocalStack, aws: Any) -> EventPublisher:
    assert local_stack.topology is not None
    return EventPublisher(client=aws("events"), bus_name=local_stack.topology.bus_name)


def queue_depth(aws: Any, queue_url: str) -> int:
    attributes = aws("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def executions_named(aws: Any, state_machine_arn: str, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in aws("stepfunctions").get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        found.extend(execution for execution in page["executions"] if execution["name"] == name)
    return found


def test_provisioned_topology_matches_the_manifests(local_stack: LocalStack, aws: Any) -> None:
    topology = local_stack.topology
    assert topology is not None
    assert topology.bus_name == bus_name(topology.prefix)
    aws("events").describe_event_bus(Name=topology.bus_name)
    manifests = load_manifests()
    expected_queues = {(m.service, c.name) for m in manifests for c in m.consumers}
    assert {(q.service, q.consumer) for q in topology.queues} == expected_queues

    for manifest in manifests:
        for consumer in manifest.consumers:
            queue = topology.queue(manifest.service, consumer.name)
            assert queue.queue_name == manifest.queue_name(consumer, topology.prefix)
            attributes = aws("sqs").get_queue_attributes(QueueUrl=queue.queue_url, AttributeNames=["All"])["Attributes"]
            redrive = json.loads(attributes["RedrivePolicy"])
            assert redrive["deadLetterTargetArn"] == queue.dlq_arn
            assert int(redrive["maxReceiveCount"]) == consumer.max_receive_count
            assert int(attributes["VisibilityTimeout"]) == queue.visibility_timeout_s
            assert queue.manifest_visibility_timeout_s == consumer.visibility_timeout_s

            patterns = manifest.event_patterns(consumer)
            assert len(queue.rule_names) == len(patterns)
            # AWS services' events (the watchdog's) come on the account's default bus, agentwire's on its own.
            rules_bus = consumer.event_bus or topology.bus_name
            assert queue.rules_bus == consumer.event_bus
            for rule_name, pattern in zip(queue.rule_names, patterns, strict=True):
                rule = aws("events").describe_rule(Name=rule_name, EventBusName=rules_bus)
                assert json.loads(rule["EventPattern"]) == pattern
                targets = aws("events").list_targets_by_rule(Rule=rule_name, EventBusName=rules_bus)
                assert [target["Arn"] for target in targets["Targets"]] == [queue.queue_arn]

        for table in manifest.tables:
            described = aws("dynamodb").describe_table(TableName=manifest.table_name(table, topology.prefix))["Table"]
            keys = {key["KeyType"]: key["AttributeName"] for key in described["KeySchema"]}
            assert keys["HASH"] == table.partition_key
            assert keys.get("RANGE") == table.sort_key
            if table.ttl_attribute:
                ttl = aws("dynamodb").describe_time_to_live(TableName=described["TableName"])
                assert ttl["TimeToLiveDescription"]["AttributeName"] == table.ttl_attribute

    machine = aws("stepfunctions").describe_state_machine(stateMachineArn=topology.state_machine_arn)
    assert machine["name"] == state_machine_name(topology.prefix)
    assert machine["type"] == "STANDARD"
    assert f'"EventBusName": "{topology.bus_name}"' in machine["definition"]
    aws("s3").head_bucket(Bucket=topology.payload_bucket)


def test_a_run_completes_through_every_service(api: GatewayClient) -> None:
    session_id = api.create_session()
    run = api.ask(session_id, "What is 1234 * 5678?")
    assert run["status"] == "completed", run
    assert "7006652" in (run["output"] or "")
    services = {step["service"] for step in run["steps"]}
    assert {"agentwire.memory", "agentwire.llm", "agentwire.tools"} <= services, run["steps"]
    assert run["usage"]["input_tokens"] > 0 and run["usage"]["output_tokens"] > 0


def test_a_poison_message_ends_in_the_dlq_after_max_receive_count(local_stack: LocalStack, aws: Any) -> None:
    assert local_stack.topology is not None
    queue = local_stack.topology.queue("tools", "invocations")
    marker = f"poison-{uuid.uuid4()}"
    aws("sqs").send_message(QueueUrl=queue.queue_url, MessageBody=f"{{not json {marker}")

    def in_dlq() -> dict[str, Any] | None:
        response = aws("sqs").receive_message(
            QueueUrl=queue.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
        )
        for message in response.get("Messages", []):
            if marker in message["Body"]:
                return dict(message)
        return None

    # Each failed delivery waits out the visibility timeout before the next one.
    budget = queue.max_receive_count * queue.visibility_timeout_s + 20
    message = wait_until(in_dlq, timeout_s=budget, what="the poison message in the DLQ")
    assert int(message["Attributes"]["ApproximateReceiveCount"]) >= queue.max_receive_count


def test_a_duplicate_run_requested_starts_exactly_one_execution(
    local_stack: LocalStack, aws: Any, api: GatewayClient, capture_events: Any
) -> None:
    assert local_stack.topology is not None
    session_id = api.create_session()
    run_id = f"run_{uuid.uuid4().hex}"
    event = Event.create(
        RunRequested(
            session_id=session_id, input=Message(role="user", content=[TextBlock(text="Hi! My name is Ada.")])
        ),
        tenant_id=local_stack.settings.dev_tenant or "acme",
        run_id=run_id,
    )
    bus = publisher(local_stack, aws)
    machine = local_stack.topology.state_machine_arn
    starter = local_stack.topology.queue("orchestrator", "starter")
    with capture_events([DetailType.RUN_STARTED, DetailType.RUN_FAILED, DetailType.RUN_COMPLETED]) as events_of:
        bus.publish_one(event)
        bus.publish_one(event)

        def succeeded() -> list[dict[str, Any]] | None:
            executions = executions_named(aws, machine, run_id)
            return executions if any(e["status"] == "SUCCEEDED" for e in executions) else None

        wait_until(succeeded, timeout_s=60, what=f"execution {run_id} succeeded")
        wait_until(lambda: queue_depth(aws, starter.queue_url) == 0, timeout_s=30, what="the starter queue drained")
        events_of(run_id, count=2)  # started, then completed
        published = [e["detail-type"] for e in events_of(run_id, count=2)]  # one more receive: any late extra
    assert len(executions_named(aws, machine, run_id)) == 1
    # The duplicate was acknowledged, not failed: nothing but one start and one completion, nothing in the DLQ.
    assert sorted(published) == sorted([DetailType.RUN_STARTED, DetailType.RUN_COMPLETED])
    dead = aws("sqs").receive_message(QueueUrl=starter.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert not [m for m in dead.get("Messages", []) if run_id in m["Body"]]


def test_a_redelivered_memory_append_is_written_once(local_stack: LocalStack, aws: Any, api: GatewayClient) -> None:
    assert local_stack.topology is not None
    session_id = api.create_session()
    marker = f"remember {uuid.uuid4().hex}"
    event = Event.create(
        MemoryContextRequested(
            session_id=session_id,
            step=0,
            append=[Message(role="user", content=[TextBlock(text=marker)])],
            include_context=False,
        ),
        tenant_id=local_stack.settings.dev_tenant or "acme",
        run_id=f"run_{uuid.uuid4().hex}",
    )
    bus = publisher(local_stack, aws)
    bus.publish_one(event)
    bus.publish_one(event)

    def transcript_has_marker() -> list[dict[str, Any]] | None:
        messages = api.messages(session_id)
        return messages if any(marker in json.dumps(m) for m in messages) else None

    wait_until(transcript_has_marker, timeout_s=30, what="the append in the gateway's transcript view")
    # Both deliveries have been handled (and both projections) once the queues are empty.
    for service, consumer in (("memory", "context"), ("gateway", "projector")):
        queue = local_stack.topology.queue(service, consumer)
        wait_until(lambda q=queue: queue_depth(aws, q.queue_url) == 0, timeout_s=30, what=f"{queue.queue_name} drained")
    messages = api.messages(session_id)
    assert sum(marker in json.dumps(message) for message in messages) == 1, messages
