"""A service's own settings on AWS (`-c agentwire:serviceEnvironment=...`): its functions' environment, and
no one else's."""

from __future__ import annotations

import json

import pytest
from agentwire_contracts.names import ENV_EVENT_BUS_NAME
from agentwire_infra.cdk.settings import CTX_SERVICE_ENVIRONMENT, parse_service_environment


def test_the_tools_allowlist_reaches_the_tools_functions_only(configured):
    found = {}
    for key, function in configured.resources(type_="AWS::Lambda::Function").items():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        found[key] = variables.get("TOOLS_HTTP_ALLOWLIST")
    tools = {key: value for key, value in found.items() if key.startswith(f"{configured.app.settings.prefix}-tools/")}
    assert tools and all(json.loads(value) == {"acme": ["docs.example.com"]} for value in tools.values())
    assert all(value is None for key, value in found.items() if key not in tools)


def test_a_service_cannot_override_what_its_stack_sets(synthesizer, tmp_path):
    with pytest.raises(ValueError, match=ENV_EVENT_BUS_NAME):
        synthesizer(tmp_path / "out", {CTX_SERVICE_ENVIRONMENT: {"memory": {ENV_EVENT_BUS_NAME: "elsewhere"}}})


@pytest.mark.parametrize(
    "value",
    ['["tools"]', '{"billing": {"A": "1"}}', '{"tools": ["TOOLS_HTTP_ALLOWLIST"]}', '{"tools": {"not a name": "1"}}'],
)
def test_a_malformed_service_environment_is_refused(value):
    with pytest.raises(ValueError, match=CTX_SERVICE_ENVIRONMENT):
        parse_service_environment(value)


def test_values_are_strings_as_lambda_wants_them():
    parsed = parse_service_environment({"tools": {"TOOLS_HTTP_TIMEOUT_S": 5, "TOOLS_REGISTRATION_MODULES": "a.b"}})
    assert parsed == {"tools": {"TOOLS_HTTP_TIMEOUT_S": "5", "TOOLS_REGISTRATION_MODULES": "a.b"}}
    assert parse_service_environment(None) == parse_service_environment("") == {}
