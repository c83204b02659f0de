"""CDK assertion tests per stack (aws_cdk.assertions on the synthesized templates)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from agentwire_contracts import manifest as names
from agentwire_contracts.names import ENV_STATE_MACHINE_ARN
from agentwire_infra.cdk.bus_stack import registry_content, schema_files
from agentwire_infra.local.provision import _create_state_machine
from agentwire_orchestrator import asl
from aws_cdk.assertions import Match, Template


@pytest.fixture(scope="module")
def templates(synthesized):
    return {name.split("-", 1)[1]: Template.from_json(t) for name, t in synthesized.templates.items()}


def test_bus_stack(templates):
    bus = templates["bus"]
    bus.resource_count_is("AWS::Events::EventBus", 1)
    bus.has_resource_properties(
        "AWS::Events::Archive",
        {
            "RetentionDays": 30,
            "EventPattern": {"source": [{"prefix": "agentwire."}]},
        },
    )
    bus.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": Match.object_like({}),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "payloads/"}),
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [Match.object_like({"Id": "expire-payloads", "ExpirationInDays": 30, "Status": "Enabled"})]
                )
            },
        },
    )
    bus.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )
    bus.resource_count_is("AWS::EventSchemas::Registry", 1)
    bus.resource_count_is("AWS::EventSchemas::Schema", len(schema_files()))
    for path in schema_files():
        bus.has_resource_properties(
            "AWS::EventSchemas::Schema",
            {
                "SchemaName": path.stem,
                "Type": "JSONSchemaDraft4",
                "Content": registry_content(path),
            },
        )
    for name in ("/agentwire/bus/name", "/agentwire/bus/arn", "/agentwire/payload-bucket/name"):
        bus.has_resource_properties("AWS::SSM::Parameter", {"Name": name, "Type": "String"})


def test_service_stacks_read_the_bus_from_ssm(synthesized):
    for service in ("gateway", "orchestrator", "llm", "tools", "memory"):
        defaults = {p.get("Default") for p in synthesized.template(service)["Parameters"].values()}
        assert {"/agentwire/bus/arn", "/agentwire/bus/name"} <= defaults, service


def test_gateway_http_api(templates):
    gateway = templates["gateway"]
    gateway.has_resource_properties("AWS::ApiGatewayV2::Api", {"ProtocolType": "HTTP", "Name": "agentwire-gateway"})
    gateway.has_resource_properties("AWS::ApiGatewayV2::Route", {"RouteKey": "$default"})
    gateway.has_resource_properties(
        "AWS::ApiGatewayV2::Integration", {"IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0"}
    )
    gateway.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AutoDeploy": True,
            "DefaultRouteSettings": {"ThrottlingBurstLimit": 200, "ThrottlingRateLimit": 100},
            "AccessLogSettings": {"DestinationArn": Match.any_value(), "Format": Match.string_like_regexp("requestId")},
        },
    )
    api = next(iter(gateway.find_resources("AWS::ApiGatewayV2::Api").values()))
    assert "CorsConfiguration" not in api["Properties"]
    gateway.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": "agentwire-gateway-http",
            "Handler": "agentwire_gateway.handler.http_handler",
            "Timeout": 29,
            "MemorySize": 1024,
        },
    )
    gateway.has_resource_properties("AWS::Lambda::Permission", {"Principal": "apigateway.amazonaws.com"})


def _policy_statements(template: Template) -> list[dict]:
    return [
        s
        for p in template.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_orchestrator_state_machine(templates, synthesized):
    orchestrator = templates["orchestrator"]
    orchestrator.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineName": "agentwire-run",
            "StateMachineType": "STANDARD",
            "DefinitionSubstitutions": {"EventBusName": {"Ref": Match.string_like_regexp("SsmParameterValue")}},
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"Level": "ERROR", "IncludeExecutionData": False}),
        },
    )
    (machine,) = orchestrator.find_resources("AWS::StepFunctions::StateMachine").values()
    assert "${EventBusName}" in machine["Properties"]["DefinitionString"]
    json.loads(machine["Properties"]["DefinitionString"])  # the one ASL file, verbatim
    starter_env = [
        f["Properties"]["Environment"]["Variables"]
        for f in orchestrator.find_resources("AWS::Lambda::Function").values()
    ]
    assert all(
        env[ENV_STATE_MACHINE_ARN]
        == {"Ref": next(iter(orchestrator.find_resources("AWS::StepFunctions::StateMachine")))}
        for env in starter_env
    )


class _RecordingStepFunctions:
    """The part of a boto3 Step Functions client the local provisioner calls; keeps the definition."""

    def __init__(self) -> None:
        self.definitions: list[str] = []

    def get_paginator(self, _operation: str) -> Any:
        class Paginator:
            def paginate(self) -> list[dict[str, Any]]:
                return [{"stateMachines": []}]

        return Paginator()

    def create_state_machine(self, *, definition: str, **_kwargs: Any) -> dict[str, str]:
        self.definitions.append(definition)
        return {"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:agentwire-run"}


def local_definition(bus: str) -> dict[str, Any]:
    """The definition the local runtime (`agentwire up`) hands Step Functions."""
    client = _RecordingStepFunctions()
    _create_state_machine(client, "agentwire-run", bus)
    (definition,) = client.definitions
    parsed: dict[str, Any] = json.loads(definition)
    return parsed


def deployed_definition(machine: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """The synthesized definition after CloudFormation's DefinitionSubstitutions (each `${key}` replaced),
    with `values` standing in for the substitutions' deploy-time intrinsics."""
    props = machine["Properties"]
    assert isinstance(props["DefinitionString"], str), "the definition must be the file's text, not a join"
    assert set(props.get("DefinitionSubstitutions", {})) == set(values)
    text = props["DefinitionString"]
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    assert not re.search(r"\$\{[A-Za-z0-9_]+\}", text), "a substitution nobody supplies"
    parsed: dict[str, Any] = json.loads(text)
    return parsed


#: What decides how a run moves: transitions, error handling and how long each step may wait.
STRUCTURE_KEYS = (
    "Type",
    "Next",
    "End",
    "Default",
    "Choices",
    "Retry",
    "Catch",
    "TimeoutSeconds",
    "TimeoutSecondsPath",
    "HeartbeatSeconds",
    "HeartbeatSecondsPath",
    "Resource",
    "ItemsPath",
    "MaxConcurrencyPath",
)


def structure(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: {key: state[key] for key in STRUCTURE_KEYS if key in state}
        for name, state in asl.states(definition).items()
    }


def test_the_deployed_state_machine_is_the_local_one(synthesized):
    """One ASL file: what CloudFormation creates equals what `agentwire up` creates, state for state."""
    (machine,) = synthesized.resources("orchestrator", "AWS::StepFunctions::StateMachine").values()
    bus = names.bus_name(synthesized.app.settings.prefix)
    deployed = deployed_definition(machine, {asl.BUS_SUBSTITUTION: bus})
    local = local_definition(bus)
    assert deployed["StartAt"] == local["StartAt"]
    assert structure(deployed) == structure(local)
    assert deployed == local  # and every other field (parameters, paths, result selectors) too
    # Not vacuous: the definition has the waiting steps, their error handling and their timeouts.
    waiting = [s for s in structure(deployed).values() if str(s.get("Resource", "")).endswith(".waitForTaskToken")]
    assert waiting and any("Catch" in s for s in waiting) and any("Retry" in s for s in waiting)
    assert bus in json.dumps(deployed) and "${" not in json.dumps(deployed)


def test_orchestrator_iam_is_least_privilege(synthesized):
    template = synthesized.template("orchestrator")
    resources = template["Resources"]
    machine_id = next(k for k, v in resources.items() if v["Type"] == "AWS::StepFunctions::StateMachine")
    by_role: dict[str, list[dict]] = {}
    for policy in (v for v in resources.values() if v["Type"] == "AWS::IAM::Policy"):
        for role in policy["Properties"]["Roles"]:
            by_role.setdefault(role["Ref"], []).extend(policy["Properties"]["PolicyDocument"]["Statement"])
    states = {
        role: [s for s in st if any(a.startswith("states:") for a in _actions(s))] for role, st in by_role.items()
    }
    starter = next(r for r in states if r.startswith("Consumerstarter"))
    resume = next(r for r in states if r.startswith("Consumerresume"))
    assert {a for s in states[starter] for a in _actions(s)} == {
        "states:StartExecution",
        "states:StopExecution",
        "states:DescribeExecution",
        "states:GetExecutionHistory",
    }
    start = next(s for s in states[starter] if "states:StartExecution" in _actions(s))
    assert start["Resource"] == {"Ref": machine_id}
    stop = next(s for s in states[starter] if "states:StopExecution" in _actions(s))
    assert stop["Resource"]["Fn::Join"][1][-1] == ":execution:agentwire-run:*"
    (answer,) = states[resume]
    assert set(_actions(answer)) == {"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"}
    assert answer["Resource"] == {"Ref": machine_id}
    # The watchdog only reads why an execution of this machine ended.
    watchdog = next(r for r in states if r.startswith("Consumerwatchdog"))
    (read,) = states[watchdog]
    assert set(_actions(read)) == {"states:DescribeExecution", "states:GetExecutionHistory"}
    assert read["Resource"]["Fn::Join"][1][-1] == ":execution:agentwire-run:*"
    machine_role = next(r for r in by_role if r.startswith("StateMachineRole"))
    assert not states[machine_role]
    (put,) = [s for s in by_role[machine_role] if "events:PutEvents" in _actions(s)]
    assert put["Resource"]["Ref"].startswith("SsmParameterValueagentwirebusarn")
    # Only the orchestrator's stack mentions Step Functions at all.
    for service in ("gateway", "llm", "tools", "memory"):
        assert "states:" not in json.dumps(synthesized.template(service)), service


@pytest.mark.parametrize("service", ["gateway", "orchestrator", "llm", "tools", "memory"])
def test_put_events_only_on_the_bus(synthesized, service):
    template = Template.from_json(synthesized.template(service))
    puts = [s for s in _policy_statements(template) if "events:PutEvents" in _actions(s)]
    assert puts
    for statement in puts:
        assert _actions(statement) == ["events:PutEvents"]
        assert statement["Resource"]["Ref"].startswith("SsmParameterValueagentwirebusarn")


def test_llm_reserved_concurrency_and_long_visibility(templates):
    llm = templates["llm"]
    llm.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": "agentwire-llm-completions",
            "ReservedConcurrentExecutions": 50,
            "Timeout": 300,
            "MemorySize": 1024,
            "Architectures": ["arm64"],
        },
    )
    llm.has_resource_properties(
        "AWS::SQS::Queue", {"QueueName": "agentwire-llm-completions", "VisibilityTimeout": 1800}
    )
    llm.has_resource_properties(
        "AWS::Lambda::EventSourceMapping", {"BatchSize": 1, "FunctionResponseTypes": ["ReportBatchItemFailures"]}
    )
    llm.resource_count_is("AWS::DynamoDB::Table", 2)


def test_tools_table_and_grants(templates):
    tools = templates["tools"]
    tools.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "agentwire-tools-idempotency",
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
        },
    )
    statements = _policy_statements(tools)
    dynamo = [s for s in statements if any(a.startswith("dynamodb:") for a in _actions(s))]
    assert dynamo and all(not any(a.endswith("*") for a in _actions(s)) for s in dynamo)


def test_memory_payload_bucket_access(templates):
    memory = templates["memory"]
    memory.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "AGENTWIRE_PAYLOAD_BUCKET": {
                            "Ref": Match.string_like_regexp("SsmParameterValueagentwirepayloadbucketname")
                        },
                        "MEMORY_TABLE_NAME": "agentwire-memory-main",
                    }
                )
            },
        },
    )
    s3 = [s for s in _policy_statements(memory) if any(a.startswith("s3:") for a in _actions(s))]
    # One grant per function of the service (each has its own role), object-level actions only.
    functions = memory.find_resources("AWS::Lambda::Function")
    assert len(s3) == len(functions) >= 1
    for statement in s3:
        assert set(_actions(statement)) == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
