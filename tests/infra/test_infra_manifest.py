"""Manifest <-> template: the templates hold exactly the names and patterns the manifests derive, and
the local runtime (`agentwire_infra.local.provision`, run here against moto in-process) creates the same."""

from __future__ import annotations

import json

import boto3
import pytest
from agentwire_contracts.manifest import bus_name, state_machine_name
from agentwire_contracts.names import ENV_EVENT_BUS_NAME, ENV_PAYLOAD_BUCKET, ENV_STATE_MACHINE_ARN
from agentwire_infra.cdk.settings import all_manifests
from moto import mock_aws

MANIFESTS = all_manifests()


def _prefix(synthesized) -> str:
    return synthesized.app.settings.prefix


def _expected_consumers(prefix: str) -> dict[str, dict]:
    expected = {}
    for manifest in MANIFESTS.values():
        for consumer in manifest.consumers:
            expected[manifest.queue_name(consumer, prefix)] = {
                "service": manifest.service,
                "dlq": manifest.dlq_name(consumer, prefix),
                "rules": {
                    manifest.rule_name(consumer, prefix, index): pattern
                    for index, pattern in enumerate(manifest.event_patterns(consumer))
                },
                "visibility": consumer.visibility_timeout_s,
                "max_receive_count": consumer.max_receive_count,
                "timeout": consumer.function_timeout_s,
                "memory": consumer.memory_mb,
                "batch_size": consumer.batch_size,
                "handler": consumer.handler,
                "reserved": consumer.reserved_concurrency,
            }
    return expected


def _by_logical_id(template):
    return template["Resources"]


@pytest.mark.parametrize("service", sorted(MANIFESTS))
def test_queues_rules_and_tables_are_exactly_the_manifests(synthesized, service):
    prefix = _prefix(synthesized)
    manifest = MANIFESTS[service]
    template = synthesized.template(service)
    resources = _by_logical_id(template)
    expected = {q: e for q, e in _expected_consumers(prefix).items() if e["service"] == service}

    queues = {r["Properties"]["QueueName"]: (lid, r) for lid, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    assert set(queues) == set(expected) | {e["dlq"] for e in expected.values()}

    rules = {r["Properties"]["Name"]: r for r in resources.values() if r["Type"] == "AWS::Events::Rule"}
    assert set(rules) == {name for e in expected.values() for name in e["rules"]}

    for queue_name, e in expected.items():
        _, queue = queues[queue_name]
        dlq_id, _ = queues[e["dlq"]]
        assert queue["Properties"]["VisibilityTimeout"] == e["visibility"]
        redrive = queue["Properties"]["RedrivePolicy"]
        assert redrive["maxReceiveCount"] == e["max_receive_count"]
        assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
        for rule_name, pattern in e["rules"].items():
            rule = rules[rule_name]
            assert rule["Properties"]["EventPattern"] == pattern
            (target,) = rule["Properties"]["Targets"]
            assert target["Arn"] == {"Fn::GetAtt": [queues[queue_name][0], "Arn"]}
            assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}

    functions = {r["Properties"]["FunctionName"]: r for r in resources.values() if r["Type"] == "AWS::Lambda::Function"}
    for queue_name, e in expected.items():
        props = functions[queue_name]["Properties"]
        assert props["Handler"] == e["handler"]
        assert props["Timeout"] == e["timeout"] and props["MemorySize"] == e["memory"]
        assert props.get("ReservedConcurrentExecutions") == e["reserved"]
    mappings = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert sorted(m["BatchSize"] for m in mappings) == sorted(e["batch_size"] for e in expected.values())

    tables = {
        r["Properties"]["TableName"]: r["Properties"] for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table"
    }
    assert set(tables) == {manifest.table_name(spec, prefix) for spec in manifest.tables}
    for spec in manifest.tables:
        props = tables[manifest.table_name(spec, prefix)]
        keys = {k["KeyType"]: k["AttributeName"] for k in props["KeySchema"]}
        assert keys == (
            {"HASH": spec.partition_key, "RANGE": spec.sort_key} if spec.sort_key else {"HASH": spec.partition_key}
        )
        if spec.ttl_attribute:
            assert props["TimeToLiveSpecification"] == {"AttributeName": spec.ttl_attribute, "Enabled": True}
        else:
            assert "TimeToLiveSpecification" not in props

    for name, function in functions.items():
        env = function["Properties"]["Environment"]["Variables"]
        for var, table_name in manifest.table_environment(prefix).items():
            assert env[var] == table_name, name
        assert ENV_EVENT_BUS_NAME in env
        assert (ENV_PAYLOAD_BUCKET in env) == manifest.uses_payload_bucket
        assert (ENV_STATE_MACHINE_ARN in env) == manifest.owns_state_machine


def test_bus_and_state_machine_names(synthesized):
    prefix = _prefix(synthesized)
    (bus,) = synthesized.resources("bus", "AWS::Events::EventBus").values()
    assert bus["Properties"]["Name"] == bus_name(prefix)
    (machine,) = synthesized.resources("orchestrator", "AWS::StepFunctions::StateMachine").values()
    assert machine["Properties"]["StateMachineName"] == state_machine_name(prefix)


@pytest.fixture(scope="module")
def local_topology():
    provision = pytest.importorskip("agentwire_infra.local.provision")

    class Clients:
        def client(self, service: str):
            return boto3.client(
                service, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
            )

    with mock_aws():
        topology = provision.provision(Clients())
        events = Clients().client("events")
        patterns = {
            name: json.loads(
                events.describe_rule(Name=name, EventBusName=q.rules_bus or topology.bus_name)["EventPattern"]
            )
            for q in topology.queues
            for name in q.rule_names
        }
    return topology, patterns


def test_local_runtime_provisions_the_same_topology(synthesized, local_topology):
    topology, patterns = local_topology
    prefix = _prefix(synthesized)
    assert topology.prefix == prefix
    expected = _expected_consumers(prefix)
    assert {q.queue_name for q in topology.queues} == set(expected)

    cdk_queues = {
        r["Properties"]["QueueName"]: r["Properties"] for r in synthesized.resources(type_="AWS::SQS::Queue").values()
    }
    cdk_rules = {
        r["Properties"]["Name"]: r["Properties"] for r in synthesized.resources(type_="AWS::Events::Rule").values()
    }
    cdk_tables = {
        r["Properties"]["TableName"]: r["Properties"]
        for r in synthesized.resources(type_="AWS::DynamoDB::Table").values()
    }
    for queue in topology.queues:
        assert queue.dlq_name in cdk_queues
        cdk_queue = cdk_queues[queue.queue_name]
        assert cdk_queue["VisibilityTimeout"] == queue.manifest_visibility_timeout_s
        assert cdk_queue["RedrivePolicy"]["maxReceiveCount"] == queue.max_receive_count
        for name in queue.rule_names:
            assert cdk_rules[name]["EventPattern"] == patterns[name]
            # The same bus too: agentwire's own (a reference to the bus stack's), or AWS's default bus.
            cdk_bus = cdk_rules[name].get("EventBusName")
            assert (cdk_bus == "default") == (queue.rules_bus == "default"), name
    watchdog = next(q for q in topology.queues if q.consumer == "watchdog")
    assert watchdog.rules_bus == "default" and patterns[watchdog.rule_name]["source"] == ["aws.states"]
    assert {t.table_name for t in topology.tables} == set(cdk_tables)
    for table in topology.tables:
        keys = {k["KeyType"]: k["AttributeName"] for k in cdk_tables[table.table_name]["KeySchema"]}
        assert keys.get("HASH") == table.partition_key and keys.get("RANGE") == table.sort_key
        assert cdk_tables[table.table_name].get("TimeToLiveSpecification", {}).get("AttributeName") == (
            table.ttl_attribute
        )
    assert topology.bus_name == bus_name(prefix)
    assert topology.state_machine_name == state_machine_name(prefix)
