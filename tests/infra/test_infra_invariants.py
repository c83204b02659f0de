"""Invariants over every synthesized template."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from agentwire_contracts.content import Message, TextBlock
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.run import RunCancelRequested, RunRequested
from agentwire_infra.cdk.settings import all_manifests
from agentwire_orchestrator import asl
from agentwire_orchestrator.agents import builtin_catalog
from agentwire_orchestrator.ports import ExecutionInfo, Started
from agentwire_orchestrator.run_input import StepTimeouts
from agentwire_orchestrator.starter import Starter, StartOutcome


def _consumer_count() -> int:
    return sum(len(manifest.consumers) for manifest in all_manifests().values())


def _function_count() -> int:
    """One function per consumer, plus one per HTTP API."""
    return _consumer_count() + sum(1 for manifest in all_manifests().values() if manifest.http is not None)


def _table_count() -> int:
    return sum(len(manifest.tables) for manifest in all_manifests().values())


def _ref_id(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
        if "Ref" in value:
            return str(value["Ref"])
    return None


def _walk(value: Any):
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def test_every_queue_has_a_redrive_policy_or_is_a_dlq(synthesized):
    for stack, template in synthesized.templates.items():
        queues = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::SQS::Queue"}
        dlqs = {
            _ref_id(q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
            for q in queues.values()
            if "RedrivePolicy" in q["Properties"]
        }
        for logical_id, queue in queues.items():
            assert "RedrivePolicy" in queue["Properties"] or logical_id in dlqs, (stack, logical_id)


def test_queue_visibility_is_at_least_six_times_the_consumer_timeout(synthesized):
    checked = 0
    for stack, template in synthesized.templates.items():
        resources = template["Resources"]
        for mapping in (r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"):
            queue = resources[_ref_id(mapping["Properties"]["EventSourceArn"])]
            function = resources[_ref_id(mapping["Properties"]["FunctionName"])]
            assert queue["Properties"]["VisibilityTimeout"] >= 6 * function["Properties"]["Timeout"], stack
            assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
            checked += 1
    assert checked == _consumer_count()


def test_every_eventbridge_target_has_retry_policy_and_dead_letter_config(synthesized):
    rules = synthesized.resources(type_="AWS::Events::Rule")
    assert rules
    for path, rule in rules.items():
        for target in rule["Properties"]["Targets"]:
            assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0, path
            assert "MaximumEventAgeInSeconds" in target["RetryPolicy"], path
            assert "Arn" in target["DeadLetterConfig"], path


def test_every_wait_for_task_token_state_has_a_timeout(synthesized):
    machines = synthesized.resources("orchestrator", "AWS::StepFunctions::StateMachine")
    assert len(machines) == 1
    (machine,) = machines.values()
    definition = json.loads(machine["Properties"]["DefinitionString"])
    waiting = {
        n: s for n, s in asl.states(definition).items() if str(s.get("Resource", "")).endswith(".waitForTaskToken")
    }
    assert waiting
    for name, state in waiting.items():
        # A fixed timeout, or one the run's input sets (per-agent step timeouts), never none. That the
        # input really sets it is test_every_timeout_path_resolves_in_every_run_the_starter_starts.
        fixed = isinstance(state.get("TimeoutSeconds"), int) and state["TimeoutSeconds"] > 0
        assert fixed or "TimeoutSecondsPath" in state, name


# -- the timeouts a run reads from its input -----------------------------------------------------------
#
# JSONPath on a missing key is a runtime error in Step Functions (States.Runtime): a TimeoutSecondsPath
# the execution input lacks fails the run at that step. So every *SecondsPath must name a field the
# starter always puts in the input, and the states before the step must carry that field through.

#: The paths Step Functions reads a number from at run time (beside the waiting steps' timeouts).
NUMBER_PATHS = ("TimeoutSecondsPath", "HeartbeatSecondsPath", "MaxConcurrencyPath")
DOTTED = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass
class _Scope:
    """The states that share one state data: the top level, or a Map's item processor (whose data is
    built by the Map's ItemSelector from the Map's input, in the parent scope)."""

    states: dict[str, dict[str, Any]]
    map_state: dict[str, Any] | None = None
    parent: _Scope | None = None


def _scopes(states: dict[str, dict[str, Any]], map_state: Any = None, parent: Any = None) -> Iterator[_Scope]:
    scope = _Scope(states, map_state, parent)
    yield scope
    for state in states.values():
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from _scopes(processor["States"], state, scope)
        assert not state.get("Branches"), "Parallel branches: extend this test to follow their data"


def _writes_over(path: str, top: str) -> bool:
    return path == "$" or path == f"$.{top}" or path.startswith(f"$.{top}.")


def _assert_carried_through(scope: _Scope, top: str) -> None:
    """Every state of the scope that hands its data on keeps `$.<top>` as it was."""
    for name, state in scope.states.items():
        where = (name, top)
        if "Next" in state or state["Type"] == "Choice":
            assert state.get("OutputPath", "$") == "$", where
            if state["Type"] in ("Choice", "Wait"):
                assert state.get("InputPath", "$") == "$", where
            elif "ResultPath" in state:
                assert state["ResultPath"] is None or not _writes_over(state["ResultPath"], top), where
            else:
                # No ResultPath: the result replaces the data, unless it is a Pass that passes its input.
                assert state["Type"] == "Pass" and not {"Parameters", "Result", "InputPath"} & set(state), where
        for catcher in state.get("Catch", []):
            result_path = catcher.get("ResultPath", "$")  # by default the error replaces the data
            assert result_path is None or not _writes_over(result_path, top), (name, catcher)


def _resolve(scope: _Scope, path: str, execution_input: dict[str, Any]) -> Any:
    """The value `path` reads in `scope`, following what the ASL does to the data on the way there."""
    assert DOTTED.match(path), f"{path}: only plain dotted paths are followed here"
    top, *rest = path[2:].split(".")
    _assert_carried_through(scope, top)
    if scope.map_state is None:
        node: Any = execution_input
        for key in [top, *rest]:
            assert isinstance(node, dict) and key in node, f"{path}: the execution input has no {key!r}"
            node = node[key]
        return node
    # An item's data is what the Map's ItemSelector builds: `<top>.$` copies a path of the Map's input.
    selector = scope.map_state.get("ItemSelector") or scope.map_state.get("Parameters") or {}
    source = selector.get(f"{top}.$")
    assert isinstance(source, str) and DOTTED.match(source), f"{path}: the Map's ItemSelector does not copy {top!r}"
    assert scope.parent is not None
    return _resolve(scope.parent, ".".join([source, *rest]), execution_input)


class _RecordingStepFunctions:
    """The starter's Step Functions port, keeping what it starts."""

    def __init__(self) -> None:
        self.inputs: dict[str, str] = {}

    def start_execution(self, *, name: str, input: str) -> Started:
        existed = name in self.inputs
        self.inputs.setdefault(name, input)
        return Started(
            execution_arn=f"arn:aws:states:us-east-1:123456789012:execution:agentwire-run:{name}",
            already_existed=existed,
        )

    def describe_execution(self, *, name: str) -> ExecutionInfo | None:
        return None

    def stop_execution(self, *, name: str, cause: str) -> None:  # pragma: no cover - never stopped here
        raise AssertionError("unexpected stop")

    def send_task_success(self, *, task_token: str, output: str) -> None:  # pragma: no cover
        raise AssertionError("unexpected")

    def send_task_failure(self, *, task_token: str, error: str, cause: str) -> None:  # pragma: no cover
        raise AssertionError("unexpected")

    def send_task_heartbeat(self, *, task_token: str) -> None:  # pragma: no cover
        raise AssertionError("unexpected")


class _Publisher:
    def __init__(self) -> None:
        self.events: list[Event[Any]] = []

    def publish_one(self, event: Event[Any]) -> None:
        self.events.append(event)


def _run_requested(run_id: str, agent: str) -> Event[RunRequested]:
    return Event.create(
        RunRequested(session_id="s-1", input=Message(role="user", content=[TextBlock(text="hi")]), agent=agent),
        tenant_id="t-1",
        run_id=run_id,
    )


def _starter_inputs(timeouts: StepTimeouts) -> dict[str, dict[str, Any]]:
    """The execution input the real starter builds for a run of every built-in agent."""
    sfn, publisher = _RecordingStepFunctions(), _Publisher()
    starter = Starter(stepfunctions=sfn, publisher=publisher, agents=builtin_catalog(), timeouts=timeouts)
    for agent in builtin_catalog().names():
        assert starter.start(_run_requested(f"run-{agent}", agent)).outcome is StartOutcome.STARTED
    assert publisher.events == []
    return {name: json.loads(body) for name, body in sfn.inputs.items()}


def _synthesized_definition(synthesized) -> dict[str, Any]:
    (machine,) = synthesized.resources("orchestrator", "AWS::StepFunctions::StateMachine").values()
    definition: dict[str, Any] = json.loads(machine["Properties"]["DefinitionString"])
    return definition


@pytest.mark.parametrize(
    "timeouts",
    [StepTimeouts(), StepTimeouts(catalog_s=1, memory_s=1, model_s=1, tool_s=2, tool_heartbeat_s=600)],
    ids=["default", "smallest"],
)
def test_every_timeout_path_resolves_in_every_run_the_starter_starts(synthesized, timeouts):
    definition = _synthesized_definition(synthesized)
    inputs = _starter_inputs(timeouts)
    assert inputs
    resolved: dict[str, set[str]] = {}
    for scope in _scopes(definition["States"]):
        for name, state in scope.states.items():
            for key in NUMBER_PATHS:
                if key not in state:
                    continue
                for run, execution_input in inputs.items():
                    value = _resolve(scope, state[key], execution_input)
                    assert type(value) is int and value >= 1, (run, name, key, value)
                    resolved.setdefault(name, set()).add(key)
            if not str(state.get("Resource", "")).endswith(".waitForTaskToken"):
                continue
            for run, execution_input in inputs.items():
                timeout = state.get("TimeoutSeconds") or _resolve(scope, state["TimeoutSecondsPath"], execution_input)
                heartbeat = state.get("HeartbeatSeconds")
                if "HeartbeatSecondsPath" in state:
                    heartbeat = _resolve(scope, state["HeartbeatSecondsPath"], execution_input)
                # Step Functions rejects a heartbeat that is not below the timeout.
                assert heartbeat is None or heartbeat < timeout, (run, name, heartbeat, timeout)
    # Not vacuous: waiting steps at the top level and inside the tool-call Map read paths, a heartbeat too.
    waiting_in_map = [n for s in _scopes(definition["States"]) if s.map_state for n in s.states if n in resolved]
    assert waiting_in_map, resolved
    assert any("HeartbeatSecondsPath" in keys for keys in resolved.values()), resolved


def test_a_tombstone_never_reaches_a_waiting_step(synthesized):
    """A run cancelled before it started starts an execution with only `cancelled` in its input (no
    `run`): the first state must end it before any step reads `$.run`."""
    sfn, publisher = _RecordingStepFunctions(), _Publisher()
    starter = Starter(stepfunctions=sfn, publisher=publisher, agents=builtin_catalog())
    starter.cancel(Event.create(RunCancelRequested(session_id="s-1"), tenant_id="t-1", run_id="run-1"))
    tombstone = json.loads(sfn.inputs["run-1"])
    assert "run" not in tombstone
    definition = _synthesized_definition(synthesized)
    first = definition["States"][definition["StartAt"]]
    assert first["Type"] == "Choice"
    (top_key,) = tombstone
    [rule] = [r for r in first["Choices"] if r.get("Variable") == f"$.{top_key}" and r.get("IsPresent") is True]
    assert first["Choices"].index(rule) == 0  # checked before anything else
    assert definition["States"][rule["Next"]]["Type"] in ("Succeed", "Fail")


def test_every_function_is_arm64_traced_with_explicit_timeout_and_memory(synthesized):
    functions = synthesized.resources(type_="AWS::Lambda::Function")
    assert len(functions) == _function_count()
    for path, function in functions.items():
        props = function["Properties"]
        assert props["TracingConfig"] == {"Mode": "Active"}, path
        assert props["Architectures"] == ["arm64"], path
        assert isinstance(props["Timeout"], int) and isinstance(props["MemorySize"], int), path
        assert props["Runtime"] == "python3.12", path
        assert props["LoggingConfig"]["LogFormat"] == "JSON", path


def test_no_iam_wildcard_action_and_resource_star_only_for_unscopable_actions(synthesized):
    for path, policy in synthesized.resources(type_="AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), (path, actions)
            if statement["Resource"] == "*" or "*" in (
                statement["Resource"] if isinstance(statement["Resource"], list) else []
            ):
                # X-Ray and CloudWatch Logs delivery have no resource-level permissions (acknowledged).
                assert all(a.startswith(("xray:", "logs:")) for a in actions), (path, actions)
                acknowledged = [
                    r["id"] for r in policy.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
                ]
                assert "AwsSolutions-IAM5[Resource::*]" in acknowledged, path


def _policy_documents(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every permission document a resource carries: identity policies and resource policies alike."""
    kind, props = resource["Type"], resource.get("Properties", {})
    if kind in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy",
                "AWS::S3::BucketPolicy", "AWS::Events::EventBusPolicy", "AWS::Logs::ResourcePolicy"}:  # fmt: skip
        document = props.get("PolicyDocument") or props.get("Statement")
        yield json.loads(document) if isinstance(document, str) else document
    elif kind == "AWS::KMS::Key":
        yield props["KeyPolicy"]
    elif kind == "AWS::IAM::Role":
        for policy in props.get("Policies") or []:
            yield policy["PolicyDocument"]


#: Allowed wildcard grants outside identity policies, each with its reason.
KEY_POLICY_REASON = (
    "a KMS key policy's Resource '*' is the key itself; kms:* to the account root is AWS's default key "
    "policy, without which the key could become unmanageable (IAM policies then decide who uses it)"
)


def test_no_wildcard_grant_in_any_policy_document_without_a_reason(synthesized):
    """Beyond IAM policies: key, topic, queue, bucket, bus and log policies and inline role policies."""
    checked: set[str] = set()
    for path, resource in synthesized.resources().items():
        for document in _policy_documents(resource):
            statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
            for statement in statements:
                if statement.get("Effect") == "Deny":  # a guard (e.g. deny plain HTTP) narrows, never grants
                    continue
                checked.add(resource["Type"])
                actions = statement.get("Action", [])
                actions = actions if isinstance(actions, list) else [actions]
                resources = statement.get("Resource", [])
                resources = resources if isinstance(resources, list) else [resources]
                assert "*" not in actions, (path, statement)
                service_wide = [a for a in actions if a.endswith(":*")]
                if resource["Type"] == "AWS::KMS::Key":
                    assert KEY_POLICY_REASON and resources == ["*"], (path, statement)
                    if service_wide:
                        root = statement["Principal"]["AWS"]["Fn::Join"][1][-1]
                        assert service_wide == ["kms:*"] and root == ":root", (path, statement)
                    continue
                assert not service_wide, (path, statement)
                if resource["Type"] != "AWS::IAM::Policy":  # identity policies: see the test above
                    assert "*" not in resources, (path, statement)
    kinds = {
        "AWS::IAM::Policy", "AWS::KMS::Key", "AWS::SQS::QueuePolicy", "AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy"
    }  # fmt: skip
    assert kinds <= checked, kinds - checked


def test_no_cross_stack_exports_or_imports(synthesized):
    for stack, template in synthesized.templates.items():
        for output in template.get("Outputs", {}).values():
            assert "Export" not in output, stack
        for node in _walk(template):
            assert not (isinstance(node, dict) and "Fn::ImportValue" in node), stack


def test_queues_are_encrypted_and_deny_plain_http(synthesized):
    queues = synthesized.resources(type_="AWS::SQS::Queue")
    policies = synthesized.resources(type_="AWS::SQS::QueuePolicy")
    for path, queue in queues.items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, path
    secured = set()
    for policy in policies.values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if (
                statement["Effect"] == "Deny"
                and statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            ):
                secured.update(_ref_id(q) for q in policy["Properties"]["Queues"])
    assert {p.split("/")[1] for p in queues} <= secured


def test_tables_have_pitr_on_demand_and_encryption(synthesized):
    tables = synthesized.resources(type_="AWS::DynamoDB::Table")
    assert len(tables) == _table_count()
    for path, table in tables.items():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", path
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, path
        assert props["SSESpecification"]["SSEEnabled"] is True, path
        assert table["DeletionPolicy"] == "Retain", path


#: Tables kept without expiry, each for a reason a reviewer would accept.
KEPT_WITHOUT_TTL = {
    ("tools", "audit"): "the audit trail of every authorization decision: kept, so it can prove who called what",
}


def test_every_table_expires_its_items_unless_it_is_kept_for_a_reason(synthesized):
    expected = {
        (service, table.name): table.ttl_attribute
        for service, manifest in all_manifests().items()
        for table in manifest.tables
    }
    assert set(KEPT_WITHOUT_TTL) <= set(expected)
    for (service, table), attribute in expected.items():
        assert (attribute is None) == ((service, table) in KEPT_WITHOUT_TTL), (service, table)
    ttls = sorted(
        resource["Properties"]["TimeToLiveSpecification"]["AttributeName"]
        for resource in synthesized.resources(type_="AWS::DynamoDB::Table").values()
        if resource["Properties"].get("TimeToLiveSpecification", {}).get("Enabled")
    )
    assert ttls == sorted(attribute for attribute in expected.values() if attribute)


def test_every_dlq_and_function_is_alarmed(synthesized):
    alarms = synthesized.resources(type_="AWS::CloudWatch::Alarm")
    dlq_alarms = [
        a for a in alarms.values() if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
    ]
    assert len(dlq_alarms) == _consumer_count()
    for alarm in dlq_alarms:
        assert alarm["Properties"]["Threshold"] == 0
        assert alarm["Properties"]["ComparisonOperator"] == "GreaterThanThreshold"
    by_metric = {
        m: sum(1 for a in alarms.values() if a["Properties"].get("MetricName") == m) for m in ("Errors", "Throttles")
    }
    assert by_metric == {"Errors": _function_count(), "Throttles": _function_count()}


def test_a_reserved_function_is_never_invoked_by_its_queue_past_its_reservation(synthesized):
    """Lambda's SQS pollers would otherwise invoke past the reservation: each throttled batch goes back hidden
    for the whole visibility timeout and counts as a receive towards the DLQ."""
    functions = synthesized.resources(type_="AWS::Lambda::Function")
    reserved = {
        key: resource["Properties"]["ReservedConcurrentExecutions"]
        for key, resource in functions.items()
        if "ReservedConcurrentExecutions" in resource["Properties"]
    }
    assert reserved, "some function has reserved concurrency (llm's protects the providers' limits)"
    checked = 0
    for key, mapping in synthesized.resources(type_="AWS::Lambda::EventSourceMapping").items():
        stack = key.split("/")[0]
        function_key = f"{stack}/{mapping['Properties']['FunctionName']['Ref']}"
        maximum = mapping["Properties"].get("ScalingConfig", {}).get("MaximumConcurrency")
        if function_key in reserved:
            assert maximum is not None and 2 <= maximum <= reserved[function_key], key
            checked += 1
        else:
            assert maximum is None, key
    assert checked == len(reserved)


def test_first_deploy_order_is_declared_without_coupling_the_stacks(synthesized):
    """`cdk deploy --all` follows the documented first-deployment order: the bus, the workers, the
    orchestrator, the gateway. Only the assembly orders them: no template imports another's export."""
    app = synthesized.app
    manifest = json.loads((synthesized.out / "manifest.json").read_text())
    depends = {name: set(artifact.get("dependencies", [])) for name, artifact in manifest["artifacts"].items()}
    bus = app.bus.artifact_id
    for service, stack in app.services.items():
        assert bus in depends[stack.artifact_id], service
    orchestrator = app.services["orchestrator"].artifact_id
    assert {app.services[s].artifact_id for s in ("memory", "tools", "llm")} <= depends[orchestrator]
    assert orchestrator in depends[app.services["gateway"].artifact_id]
    assert not depends[bus] & {stack.artifact_id for stack in app.services.values()}
