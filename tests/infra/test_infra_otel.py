"""OpenTelemetry export on AWS: off by default; with the ADOT layer's ARN in context every function of every
service stack gets the layer, its exec wrapper and the collector's OTLP endpoint (what
`agentwire_contracts.telemetry.configure` exports to); an explicit endpoint goes to every function as is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agentwire_infra.cdk.settings import (
    ADOT_COLLECTOR_ENDPOINT,
    ADOT_EXEC_WRAPPER,
    CTX_OTEL_LAYER_ARN,
    CTX_OTLP_ENDPOINT,
    AppSettings,
)

pytestmark = pytest.mark.infra

LAYER = "arn:aws:lambda:us-east-1:901920570463:layer:aws-otel-python-arm64-ver-1-32-0:1"
OTEL_VARIABLES = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "AWS_LAMBDA_EXEC_WRAPPER"}


def functions(synthesized: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = synthesized.resources(type_="AWS::Lambda::Function")
    # CDK's own helper functions (custom resources) are not the services'.
    return {name: f for name, f in found.items() if "POWERTOOLS_SERVICE_NAME" in variables(f)}


def variables(function: dict[str, Any]) -> dict[str, Any]:
    return dict(function["Properties"].get("Environment", {}).get("Variables", {}))


def test_no_export_and_no_layer_unless_configured(synthesized: Any) -> None:
    found = functions(synthesized)
    assert len(found) >= 5
    for name, function in found.items():
        assert not OTEL_VARIABLES & set(variables(function)), name
        assert not function["Properties"].get("Layers"), name


def test_the_adot_layer_reaches_every_service_function_with_its_wrapper_and_collector(
    synthesizer: Any, tmp_path: Path
) -> None:
    synthesized = synthesizer(tmp_path / "cdk.out", {CTX_OTEL_LAYER_ARN: LAYER})
    assert synthesized.error is None, synthesized.error  # cdk-nag finds nothing new
    found = functions(synthesized)
    assert {name.split("/")[0] for name in found} >= {
        f"agentwire-{s}" for s in ("gateway", "orchestrator", "llm", "tools", "memory")
    }
    for name, function in found.items():
        environment = variables(function)
        assert function["Properties"]["Layers"] == [LAYER], name
        assert environment["AWS_LAMBDA_EXEC_WRAPPER"] == ADOT_EXEC_WRAPPER, name
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == ADOT_COLLECTOR_ENDPOINT, name
        assert environment["OTEL_SERVICE_NAME"] == environment["POWERTOOLS_SERVICE_NAME"], name


def test_an_explicit_endpoint_wins_and_needs_no_layer() -> None:
    context = {CTX_OTLP_ENDPOINT: "https://otel.example.com:4318"}
    assert AppSettings.from_context(context.get).otlp_export_endpoint == "https://otel.example.com:4318"
    both = {**context, CTX_OTEL_LAYER_ARN: LAYER}
    assert AppSettings.from_context(both.get).otlp_export_endpoint == "https://otel.example.com:4318"
    assert AppSettings.from_context({}.get).otlp_export_endpoint is None
