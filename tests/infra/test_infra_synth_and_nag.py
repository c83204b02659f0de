"""The app synthesizes without credentials, environment-agnostic, and cdk-nag finds nothing unacknowledged."""

from __future__ import annotations

import re

import pytest
from agentwire_contracts.services import SERVICES
from agentwire_infra.cdk.settings import all_manifests
from aws_cdk import App, Stack
from aws_cdk import aws_sqs as sqs

NAG_PACKS = ("AwsSolutions", "Serverless")

#: Every acknowledgment the app may carry. A new one must be added here on purpose (review it!).
ALLOWED_ACKNOWLEDGMENTS = {
    "AwsSolutions-IAM5[Resource::*]",  # X-Ray (functions), log delivery + X-Ray (state machine)
    "AwsSolutions-L1",
    "Serverless-LambdaLatestVersion",  # python3.12 pinned with the bundles
    "Serverless-LambdaDLQ",
    "Serverless-LambdaAsyncFailureDestination",  # never invoked asynchronously
    "Serverless-LambdaEventSourceMappingDestination",  # SQS ESMs have no failure destination; queue DLQ
    "Serverless-SQSRedrivePolicy",  # on DLQs only
    "AwsSolutions-S1",  # on the access-log bucket only
    "AwsSolutions-APIG4",  # auth in the gateway function (on the $default route only)
    "AwsSolutions-SF1",
    "Serverless-StepFunctionStateMachineAllLogsToCloudWatch",  # ERROR level on purpose
    "AwsSolutions-SMG4",  # the llm's third-party provider keys: issued by the provider, no rotation function
    # The llm invokes the model a run names (aliases, fallbacks, cross-region inference profiles).
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/*]",
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:inference-profile/*]",
}
ALLOWED_PATTERNS = (
    re.compile(
        r"^AwsSolutions-IAM5\[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
        r"execution:[a-z0-9-]+-run:\*\]$"
    ),
    re.compile(r"^AwsSolutions-IAM5\[Resource::arn:<AWS::Partition>:s3:::<SsmParameterValue[A-Za-z0-9]+>/\*\]$"),
)


def test_synthesis_succeeds_without_credentials(synthesized):
    assert synthesized.error is None, synthesized.report


def test_one_stack_for_the_bus_and_one_per_service(synthesized):
    prefix = synthesized.app.settings.prefix
    assert set(synthesized.templates) == {f"{prefix}-bus", *(f"{prefix}-{s}" for s in SERVICES)}
    assert set(all_manifests()) == set(SERVICES)


def test_stacks_are_environment_agnostic(synthesized):
    for stack in synthesized.app.stacks():
        assert stack.environment == "aws://unknown-account/unknown-region"


def test_no_unacknowledged_cdk_nag_findings(synthesized):
    findings = [
        (report["pluginName"], violation["ruleName"], construct["constructPath"])
        for report in synthesized.report["pluginReports"]
        for violation in report.get("violations", [])
        for construct in violation["violatingConstructs"]
    ]
    assert findings == []


SCRATCH = "agentwire-nag-scratch"


def _add_non_compliant_queue(app: App) -> None:
    # No DLQ, no redrive policy, no SSL enforcement: both packs have a rule against it.
    sqs.Queue(Stack(app, SCRATCH), "BareQueue")


@pytest.fixture(scope="module")
def with_scratch_stack(tmp_path_factory: pytest.TempPathFactory, synthesizer):
    """The real app (packs attached by agentwire_infra.cdk.app.build) plus a throwaway non-compliant stack."""
    return synthesizer(tmp_path_factory.mktemp("cdk.out.nag-scratch"), extend=_add_non_compliant_queue)


def test_both_nag_packs_ran(with_scratch_stack):
    # Each pack reports the throwaway queue under its own name and rule ids: both are attached and run.
    assert with_scratch_stack.error is not None, "a non-compliant construct must fail synthesis"
    found = {
        (report["pluginName"], violation["ruleName"])
        for report in with_scratch_stack.report["pluginReports"]
        for violation in report.get("violations", [])
        for construct in violation["violatingConstructs"]
        if construct["constructPath"].startswith(f"{SCRATCH}/BareQueue")
    }
    assert {
        ("AwsSolutions", "AwsSolutions-SQS3"),  # no DLQ
        ("AwsSolutions", "AwsSolutions-SQS4"),  # SSL not required
        ("Serverless", "Serverless-SQSRedrivePolicy"),
    } <= found
    assert {plugin for plugin, _ in found} == set(NAG_PACKS)


def test_the_scratch_findings_are_the_only_ones(with_scratch_stack):
    # The packs run over the whole app, and the real stacks still pass them.
    paths = {
        construct["constructPath"]
        for report in with_scratch_stack.report["pluginReports"]
        for violation in report.get("violations", [])
        for construct in violation["violatingConstructs"]
    }
    assert paths and all(path.startswith(f"{SCRATCH}/") for path in paths), paths


def test_the_packs_acknowledgments_are_in_the_templates(synthesized):
    # AwsSolutionsChecks writes the acknowledgment audit trail into the templates.
    assert acknowledgments(synthesized), "no cdk_nag metadata: were the packs registered?"


def acknowledgments(synthesized) -> list[tuple[str, str, str]]:
    found = []
    for path, resource in synthesized.resources().items():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            found.append((path, rule["id"], rule.get("reason", "")))
    return found


def test_every_acknowledgment_is_known_and_reasoned(synthesized):
    for path, rule_id, reason in acknowledgments(synthesized):
        assert rule_id in ALLOWED_ACKNOWLEDGMENTS or any(p.match(rule_id) for p in ALLOWED_PATTERNS), (path, rule_id)
        assert len(reason) >= 40, (path, rule_id, reason)


def test_acknowledgments_are_resource_level(synthesized):
    # Nothing is acknowledged for a whole stack: every entry sits on a resource's metadata.
    for stack in synthesized.app.stacks():
        assert "cdk_nag" not in synthesized.templates[stack.stack_name].get("Metadata", {})
    narrow = {
        "Serverless-SQSRedrivePolicy": "AWS::SQS::Queue",
        "AwsSolutions-S1": "AWS::S3::Bucket",
        "AwsSolutions-IAM5[Resource::*]": "AWS::IAM::Policy",
        "AwsSolutions-APIG4": "AWS::ApiGatewayV2::Route",
        "Serverless-LambdaEventSourceMappingDestination": "AWS::Lambda::EventSourceMapping",
        "AwsSolutions-L1": "AWS::Lambda::Function",
        "AwsSolutions-SF1": "AWS::StepFunctions::StateMachine",
    }
    resources = synthesized.resources()
    for path, rule_id, _ in acknowledgments(synthesized):
        if rule_id in narrow:
            assert resources[path]["Type"] == narrow[rule_id], (path, rule_id)


def test_sqs_redrive_acknowledged_only_on_dead_letter_queues(synthesized):
    dlq_names = {
        manifest.dlq_name(consumer, synthesized.app.settings.prefix)
        for manifest in all_manifests().values()
        for consumer in manifest.consumers
    }
    resources = synthesized.resources()
    for path, rule_id, _ in acknowledgments(synthesized):
        if rule_id == "Serverless-SQSRedrivePolicy":
            assert resources[path]["Properties"]["QueueName"] in dlq_names


def test_iam_star_acknowledged_only_where_the_star_is_xray_or_log_delivery(synthesized):
    resources = synthesized.resources()
    for path, rule_id, _ in acknowledgments(synthesized):
        if rule_id != "AwsSolutions-IAM5[Resource::*]":
            continue
        for statement in resources[path]["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Resource"] == "*":
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert all(a.startswith(("xray:", "logs:")) for a in actions), (path, actions)
