"""The llm's provider credentials (Secrets Manager keys, Bedrock invocation), the payload-bucket grants of
every service that uses it, and the gateway's optional JWT authorizer."""

from __future__ import annotations

from typing import Any

import pytest
from agentwire_contracts.services import SERVICES
from agentwire_infra.cdk.settings import load_manifest

pytestmark = pytest.mark.infra

#: What the `configured` fixture (tests/infra/conftest.py) synthesizes with.
ISSUER = "https://login.example.com/"
ANTHROPIC_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:team/anthropic-AbCdEf"
Synthesized = Any


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == type_}


def statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def function_environment(template: dict[str, Any]) -> dict[str, Any]:
    (function,) = resources(template, "AWS::Lambda::Function").values()
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


def test_llm_reads_a_secret_per_key_provider_from_its_environment(synthesized: Synthesized) -> None:
    llm = synthesized.template("llm")
    secrets = resources(llm, "AWS::SecretsManager::Secret")
    assert {s["Properties"]["Name"] for s in secrets.values()} == {
        "agentwire/llm/anthropic-api-key",
        "agentwire/llm/openai-api-key",
    }
    assert all(s["DeletionPolicy"] == "Retain" for s in secrets.values())
    environment = function_environment(llm)
    refs = {environment["ANTHROPIC_API_KEY_SECRET_ARN"]["Ref"], environment["OPENAI_API_KEY_SECRET_ARN"]["Ref"]}
    assert refs == set(secrets)
    granted = {
        statement["Resource"]["Ref"]
        for statement in statements(llm)
        if "secretsmanager:GetSecretValue" in actions(statement)
    }
    assert granted == set(secrets)


def test_llm_may_invoke_bedrock_models_and_nothing_else_of_bedrock(synthesized: Synthesized) -> None:
    bedrock = [s for s in statements(synthesized.template("llm")) if any(a.startswith("bedrock:") for a in actions(s))]
    assert len(bedrock) == 1
    assert sorted(actions(bedrock[0])) == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    resources_ = [str(part) for arn in bedrock[0]["Resource"] for part in arn["Fn::Join"][1]]
    joined = "".join(resources_)
    assert ":bedrock:*::foundation-model/*" in joined and ":inference-profile/*" in joined
    assert "*" not in [arn for arn in bedrock[0]["Resource"]]


def test_no_other_service_gets_provider_credentials(synthesized: Synthesized) -> None:
    for service in SERVICES:
        if service == "llm":
            continue
        granted = [a for s in statements(synthesized.template(service)) for a in actions(s)]
        assert not [a for a in granted if a.startswith(("bedrock:", "secretsmanager:"))], service


@pytest.mark.parametrize("service", SERVICES)
def test_services_using_the_payload_bucket_may_read_and_write_it(synthesized: Synthesized, service: str) -> None:
    template = synthesized.template(service)
    functions = resources(template, "AWS::Lambda::Function")
    s3 = [s for s in statements(template) if any(a.startswith("s3:") for a in actions(s))]
    if load_manifest(service).uses_payload_bucket:
        assert len(s3) == len(functions) > 0
        for statement in s3:
            assert sorted(actions(statement)) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    else:
        assert s3 == []


def test_the_gateway_has_no_api_gateway_authorizer_by_default(synthesized: Synthesized) -> None:
    gateway = synthesized.template("gateway")
    assert resources(gateway, "AWS::ApiGatewayV2::Authorizer") == {}
    routes = resources(gateway, "AWS::ApiGatewayV2::Route").values()
    assert [r["Properties"]["RouteKey"] for r in routes] == ["$default"]


def test_a_jwt_issuer_puts_an_authorizer_before_every_private_route(configured: Synthesized) -> None:
    gateway = configured.template("gateway")
    (authorizer,) = resources(gateway, "AWS::ApiGatewayV2::Authorizer").values()
    assert authorizer["Properties"]["AuthorizerType"] == "JWT"
    assert authorizer["Properties"]["JwtConfiguration"] == {
        "Issuer": ISSUER,
        "Audience": ["agentwire-api", "agentwire-cli"],
    }
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"] for r in resources(gateway, "AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {"$default", "GET /healthz", "GET /openapi.json", "GET /docs"}
    assert routes["$default"]["AuthorizationType"] == "JWT"
    assert all(routes[key]["AuthorizationType"] == "NONE" for key in routes if key != "$default")


def test_an_existing_key_secret_is_referenced_not_created(configured: Synthesized) -> None:
    llm = configured.template("llm")
    names = {s["Properties"]["Name"] for s in resources(llm, "AWS::SecretsManager::Secret").values()}
    assert names == {"agentwire/llm/openai-api-key"}
    assert function_environment(llm)["ANTHROPIC_API_KEY_SECRET_ARN"] == ANTHROPIC_SECRET
    granted = [s["Resource"] for s in statements(llm) if "secretsmanager:GetSecretValue" in actions(s)]
    assert ANTHROPIC_SECRET in granted


def test_the_configured_app_has_no_unacknowledged_cdk_nag_findings(configured: Synthesized) -> None:
    findings = [
        (report["pluginName"], violation["ruleName"], construct["constructPath"])
        for report in configured.report["pluginReports"]
        for violation in report.get("violations", [])
        for construct in violation["violatingConstructs"]
    ]
    assert findings == [] and configured.error is None
