"""Dashboards and alarms in the synthesized templates: one dashboard per service and one for the system,
every alarm notifying the encrypted alarm topic, metric names from the catalogue."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentwire_contracts.services import SERVICES
from agentwire_contracts.telemetry import METRICS
from agentwire_infra.cdk.observability import function_names
from agentwire_infra.cdk.settings import all_manifests

SYSTEM_ALARMS = ("run-failure-ratio", "executions-failed", "run-latency-p90", "hourly-cost", "dlq-messages")


def _body(dashboard: dict[str, Any]) -> str:
    """The dashboard body with CloudFormation tokens left as JSON (names are literal strings in it)."""
    return json.dumps(dashboard["Properties"]["DashboardBody"])


def _dashboards(synthesized: Any, component: str) -> dict[str, dict[str, Any]]:
    return {
        resource["Properties"]["DashboardName"]: resource
        for resource in synthesized.resources(component, "AWS::CloudWatch::Dashboard").values()
    }


def test_the_alarm_topic_is_encrypted_ssl_only_and_shared_through_ssm(synthesized):
    prefix = synthesized.app.settings.prefix
    topics = synthesized.resources("bus", "AWS::SNS::Topic")
    [(topic_path, topic)] = topics.items()
    assert topic["Properties"]["TopicName"] == f"{prefix}-alarms"
    key_id = topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = synthesized.resources("bus", "AWS::KMS::Key")[f"{prefix}-bus/{key_id}"]
    assert key["Properties"]["EnableKeyRotation"] is True
    key_statements = key["Properties"]["KeyPolicy"]["Statement"]
    assert any("cloudwatch.amazonaws.com" in json.dumps(s.get("Principal")) for s in key_statements)
    policies = synthesized.resources("bus", "AWS::SNS::TopicPolicy")
    statements = [s for policy in policies.values() for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    assert any(
        s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for s in statements
    )
    assert any(
        "cloudwatch.amazonaws.com" in json.dumps(s.get("Principal")) and s["Action"] == "sns:Publish"
        for s in statements
    )
    parameters = synthesized.resources("bus", "AWS::SSM::Parameter").values()
    assert any(p["Properties"]["Name"] == f"/{prefix}/alarms/topic-arn" for p in parameters)


def test_the_system_dashboard_shows_runs_latency_cost_errors_and_every_dlq(synthesized):
    prefix = synthesized.app.settings.prefix
    dashboards = _dashboards(synthesized, "bus")
    body = _body(dashboards[f"{prefix}-system"])
    for title in ("Runs", "Run latency", "Tokens and cost", "Errors", "DLQ depth", "System alarms"):
        assert f'\\"title\\":\\"{title}' in body, title
    for name in (
        "RunsRequested",
        "RunsStarted",
        "RunsCompleted",
        "RunsFailed",
        "RunDuration",
        "CompletionLatency",
        "CostMicroUSD",
        "InputTokens",
        "OutputTokens",
        "ExecutionsFailed",
        "ExecutionTime",
    ):
        assert name in body, name
    for manifest in all_manifests().values():
        for consumer in manifest.consumers:
            assert manifest.dlq_name(consumer, prefix) in body
        for function in function_names(manifest, prefix):
            assert function in body, function


def test_system_alarms_notify_the_topic(synthesized):
    prefix = synthesized.app.settings.prefix
    alarms = {a["Properties"]["AlarmName"]: a for a in synthesized.resources("bus", "AWS::CloudWatch::Alarm").values()}
    topic_id = next(iter(synthesized.resources("bus", "AWS::SNS::Topic"))).split("/")[1]
    for name in SYSTEM_ALARMS:
        alarm = alarms[f"{prefix}-{name}"]["Properties"]
        assert alarm["AlarmActions"] == [{"Ref": topic_id}], name
        assert alarm["OKActions"] == [{"Ref": topic_id}], name
        assert alarm["TreatMissingData"] == "notBreaching"
        assert len(alarm["AlarmDescription"]) > 20
    dlq_total = alarms[f"{prefix}-dlq-messages"]["Properties"]
    dlq_count = sum(len(manifest.consumers) for manifest in all_manifests().values())
    assert len([m for m in dlq_total["Metrics"] if "MetricStat" in m]) == dlq_count
    assert dlq_total["Threshold"] == 0


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_its_dashboard(synthesized, service):
    prefix = synthesized.app.settings.prefix
    manifest = all_manifests()[service]
    dashboards = _dashboards(synthesized, service)
    assert list(dashboards) == [f"{prefix}-{service}"]
    body = _body(dashboards[f"{prefix}-{service}"])
    for function in function_names(manifest, prefix):
        assert function in body, function
    for consumer in manifest.consumers:
        assert manifest.queue_name(consumer, prefix) in body
        assert manifest.dlq_name(consumer, prefix) in body
    for metric in METRICS:
        if metric.emitted_by == service:
            assert f'MetricName=\\\\\\"{metric.name}\\\\\\"' in body or f'\\"{metric.name}\\"' in body, metric.name


@pytest.mark.parametrize("service", SERVICES)
def test_every_alarm_of_a_service_notifies_the_topic_from_ssm(synthesized, service):
    alarms = synthesized.resources(service, "AWS::CloudWatch::Alarm")
    manifest = all_manifests()[service]
    # Errors and throttles per function, depth per DLQ, backlog per queue.
    functions = len(function_names(manifest, synthesized.app.settings.prefix))
    assert len(alarms) == 2 * functions + 2 * len(manifest.consumers)
    for path, alarm in alarms.items():
        actions = alarm["Properties"].get("AlarmActions", [])
        assert len(actions) == 1, path
        assert "SsmParameterValue" in json.dumps(actions) and "alarmstopicarn" in json.dumps(actions), path
        assert alarm["Properties"]["OKActions"] == actions


def test_every_consumer_queue_has_a_backlog_alarm(synthesized):
    prefix = synthesized.app.settings.prefix
    alarms = synthesized.resources(type_="AWS::CloudWatch::Alarm").values()
    backlog = {
        a["Properties"]["AlarmName"]
        for a in alarms
        if a["Properties"].get("MetricName") == "ApproximateAgeOfOldestMessage"
    }
    expected = {
        f"{manifest.queue_name(consumer, prefix)}-backlog"
        for manifest in all_manifests().values()
        for consumer in manifest.consumers
    }
    assert backlog == expected
