"""Synthesize the whole CDK app once per test session (placeholder code, cdk-nag on) and share it.

The placeholder code asset holds the workspace sources only (see agentwire_infra.cdk.bundle), so the
tests need neither the network nor a bundle build; everything else is exactly what `make synth` emits.
Synthesis runs with every AWS credential variable removed, proving it needs none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agentwire_infra.cdk.app import AgentwireApp, build
from agentwire_infra.cdk.settings import (
    CODE_PLACEHOLDER,
    CTX_ANTHROPIC_SECRET_ARN,
    CTX_CODE,
    CTX_JWT_AUDIENCE,
    CTX_JWT_ISSUER,
    CTX_SERVICE_ENVIRONMENT,
    AppSettings,
    cdk_json_context,
)
from aws_cdk import App

CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
)


@dataclass
class Synthesized:
    out: Path
    app: AgentwireApp
    #: Stack name -> template.
    templates: dict[str, dict[str, Any]]
    report: dict[str, Any]
    error: Exception | None

    def template(self, component: str) -> dict[str, Any]:
        return self.templates[f"{self.app.settings.prefix}-{component}"]

    def resources(self, component: str | None = None, type_: str | None = None) -> dict[str, dict[str, Any]]:
        """Resources by `<stack>/<logical id>` (all stacks unless `component`), optionally of one type."""
        found: dict[str, dict[str, Any]] = {}
        for stack, template in self.templates.items():
            if component and stack != f"{self.app.settings.prefix}-{component}":
                continue
            for logical_id, resource in template.get("Resources", {}).items():
                if type_ is None or resource["Type"] == type_:
                    found[f"{stack}/{logical_id}"] = resource
        return found


def synthesize(
    out: Path, extra_context: dict[str, Any] | None = None, extend: Callable[[App], None] | None = None
) -> Synthesized:
    """Synthesize the app (placeholder code, cdk-nag on, no AWS credentials) into `out`; `extend` may add
    constructs to the app after `build` (e.g. a scratch stack) and before synthesis."""
    saved = {name: os.environ.pop(name) for name in CREDENTIAL_VARIABLES if name in os.environ}
    try:
        context = {**cdk_json_context(), CTX_CODE: CODE_PLACEHOLDER, **(extra_context or {})}
        app = App(outdir=str(out), context=context)
        result = build(app, AppSettings.from_context(app.node.try_get_context))
        assert result.settings.code == CODE_PLACEHOLDER and result.settings.nag
        if extend is not None:
            extend(app)
        error: Exception | None = None
        try:
            app.synth()
        except RuntimeError as exc:  # cdk-nag findings fail synthesis; the report says which
            error = exc
    finally:
        os.environ.update(saved)
    templates = {stack.stack_name: json.loads((out / stack.template_file).read_text()) for stack in result.stacks()}
    report_path = out / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {"pluginReports": []}
    return Synthesized(out=out, app=result, templates=templates, report=report, error=error)


@pytest.fixture(scope="session")
def synthesizer() -> Callable[..., Synthesized]:
    """`synthesize` itself, for a test that needs an app of its own (test modules cannot import conftest)."""
    return synthesize


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every AWS credential variable removed for the test."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    yield synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app with a JWT issuer and two audiences for the gateway, an existing Anthropic key secret for
    the llm (see test_infra_llm_and_auth.py) and an http_fetch allowlist for the tools service."""
    return synthesize(
        tmp_path_factory.mktemp("cdk.out.configured"),
        {
            CTX_JWT_ISSUER: "https://login.example.com/",
            CTX_JWT_AUDIENCE: "agentwire-api, agentwire-cli",
            CTX_ANTHROPIC_SECRET_ARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:team/anthropic-AbCdEf",
            # As `-c` gives it: a JSON string (see test_infra_service_environment.py).
            CTX_SERVICE_ENVIRONMENT: '{"tools": {"TOOLS_HTTP_ALLOWLIST": {"acme": ["docs.example.com"]}}}',
        },
    )
