"""What the CDK app reads from its context, and the few names its stacks share (through SSM only)."""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentwire_contracts.manifest import ServiceManifest
from agentwire_contracts.names import DEFAULT_PREFIX
from agentwire_contracts.services import SERVICES

#: Repository root (…/infra/agentwire_infra/cdk/settings.py -> four levels up).
REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMAS_DIR = REPO_ROOT / "contracts" / "schemas"
CDK_JSON = REPO_ROOT / "infra" / "cdk.json"
BUNDLE_ROOT = REPO_ROOT / "build" / "lambda"

#: Context keys (`cdk synth -c agentwire:code=placeholder`, or `App(context=...)`).
CTX_PREFIX = "agentwire:prefix"
CTX_CODE = "agentwire:code"
CTX_NAG = "agentwire:nag"
#: The gateway's JWT authorizer (optional; both needed): the OIDC issuer URL and the audiences (comma-separated).
CTX_JWT_ISSUER = "agentwire:jwtIssuer"
CTX_JWT_AUDIENCE = "agentwire:jwtAudience"
#: Existing Secrets Manager secrets (complete ARNs) holding the llm's provider keys; without one the llm
#: stack creates an empty secret for that provider, to be filled in after the first deploy.
CTX_ANTHROPIC_SECRET_ARN = "agentwire:anthropicSecretArn"  # noqa: S105 (a context key)
CTX_OPENAI_SECRET_ARN = "agentwire:openaiSecretArn"  # noqa: S105 (a context key)

#: OpenTelemetry export on AWS (both optional): the ADOT Lambda layer for Python (its ARN is per region and
#: architecture, e.g. arn:aws:lambda:<region>:901920570463:layer:aws-otel-python-arm64-ver-1-32-0:1) and the
#: OTLP/HTTP endpoint the spans go to (with the layer alone: its collector on localhost:4318).
CTX_OTEL_LAYER_ARN = "agentwire:otelLayerArn"
CTX_OTLP_ENDPOINT = "agentwire:otlpEndpoint"
#: `{"<service>": {"NAME": "value", ...}}`: a service's own settings on AWS (e.g. the tools service's
#: TOOLS_HTTP_ALLOWLIST), as its Lambda environment; a JSON string from the CLI. Never secrets: those go in
#: Secrets Manager.
CTX_SERVICE_ENVIRONMENT = "agentwire:serviceEnvironment"
#: Where the ADOT layer's collector listens for OTLP/HTTP inside the sandbox.
ADOT_COLLECTOR_ENDPOINT = "http://localhost:4318"
#: The ADOT layer's wrapper that installs the SDK and its auto-instrumentation before the handler runs.
ADOT_EXEC_WRAPPER = "/opt/otel-instrument"

CODE_BUNDLE = "bundle"
CODE_PLACEHOLDER = "placeholder"


@dataclass(frozen=True)
class AppSettings:
    prefix: str = DEFAULT_PREFIX
    #: `bundle`: each function ships build/lambda/<service> (built by `agentwire_infra.cdk.bundle`);
    #: `placeholder`: the service's own sources only (no third-party dependencies), for fast synth in tests.
    code: str = CODE_BUNDLE
    #: Run cdk-nag (AwsSolutions + Serverless) as validation plugins during synthesis.
    nag: bool = True
    #: Both set: an API Gateway JWT authorizer checks bearer tokens before the gateway function does.
    jwt_issuer: str | None = None
    jwt_audience: tuple[str, ...] = ()
    anthropic_secret_arn: str | None = None
    openai_secret_arn: str | None = None
    otel_layer_arn: str | None = None
    otlp_endpoint: str | None = None
    #: service -> extra environment of its functions (`CTX_SERVICE_ENVIRONMENT`).
    service_environment: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def otlp_export_endpoint(self) -> str | None:
        """Where spans are exported: the endpoint given, else the ADOT layer's collector, else nowhere."""
        return self.otlp_endpoint or (ADOT_COLLECTOR_ENDPOINT if self.otel_layer_arn else None)

    @property
    def jwt_authorizer(self) -> bool:
        return bool(self.jwt_issuer and self.jwt_audience)

    @classmethod
    def from_context(cls, get: Any) -> AppSettings:
        """`get` is `node.try_get_context`; context values from the CLI arrive as strings."""
        prefix = get(CTX_PREFIX) or DEFAULT_PREFIX
        code = get(CTX_CODE) or CODE_BUNDLE
        if code not in (CODE_BUNDLE, CODE_PLACEHOLDER):
            raise ValueError(f"{CTX_CODE} must be {CODE_BUNDLE!r} or {CODE_PLACEHOLDER!r}, not {code!r}")
        nag = get(CTX_NAG)
        audience = get(CTX_JWT_AUDIENCE) or ()
        if isinstance(audience, str):
            audience = tuple(part.strip() for part in audience.split(",") if part.strip())
        return cls(
            prefix=str(prefix),
            code=str(code),
            nag=str(nag).lower() not in ("false", "0", "no"),
            jwt_issuer=get(CTX_JWT_ISSUER) or None,
            jwt_audience=tuple(str(part) for part in audience),
            anthropic_secret_arn=get(CTX_ANTHROPIC_SECRET_ARN) or None,
            openai_secret_arn=get(CTX_OPENAI_SECRET_ARN) or None,
            otel_layer_arn=get(CTX_OTEL_LAYER_ARN) or None,
            otlp_endpoint=get(CTX_OTLP_ENDPOINT) or None,
            service_environment=parse_service_environment(get(CTX_SERVICE_ENVIRONMENT)),
        )


def parse_service_environment(value: Any) -> dict[str, dict[str, str]]:
    """`CTX_SERVICE_ENVIRONMENT` as {service: {NAME: value}}: a JSON string (CLI) or a mapping (cdk.json);
    a value that is not a string is written as JSON (an allowlist may be given as an object)."""
    if value in (None, ""):
        return {}
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise ValueError(f"{CTX_SERVICE_ENVIRONMENT} must be an object of services, not {type(parsed).__name__}")
    result: dict[str, dict[str, str]] = {}
    for service, variables in parsed.items():
        if service not in SERVICES:
            raise ValueError(f"{CTX_SERVICE_ENVIRONMENT}: unknown service {service!r} (one of {', '.join(SERVICES)})")
        if not isinstance(variables, dict) or not all(
            isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) for name in variables
        ):
            raise ValueError(f"{CTX_SERVICE_ENVIRONMENT}[{service!r}] must map variable names to values")
        result[service] = {
            name: item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))
            for name, item in variables.items()
        }
    return result


class SharedParameter:
    """SSM parameter names through which the bus stack hands names to the service stacks.

    Service stacks read them with `{{resolve:ssm:...}}`-style CloudFormation parameters, so no stack
    imports another's outputs: each deploys, updates and rolls back on its own.
    """

    @staticmethod
    def bus_name(prefix: str = DEFAULT_PREFIX) -> str:
        return f"/{prefix}/bus/name"

    @staticmethod
    def bus_arn(prefix: str = DEFAULT_PREFIX) -> str:
        return f"/{prefix}/bus/arn"

    @staticmethod
    def payload_bucket_name(prefix: str = DEFAULT_PREFIX) -> str:
        return f"/{prefix}/payload-bucket/name"

    @staticmethod
    def alarm_topic_arn(prefix: str = DEFAULT_PREFIX) -> str:
        return f"/{prefix}/alarms/topic-arn"


def cdk_json_context() -> dict[str, Any]:
    """The context (feature flags included) of infra/cdk.json, so `synth` and tests match the CLI."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text()).get("context", {})
    return context


def stack_name(prefix: str, component: str) -> str:
    return f"{prefix}-{component}"


def load_manifest(service: str) -> ServiceManifest:
    module = importlib.import_module(f"agentwire_{service}.manifest")
    manifest = module.MANIFEST
    if not isinstance(manifest, ServiceManifest):
        raise TypeError(f"agentwire_{service}.manifest.MANIFEST is not a ServiceManifest")
    return manifest


def all_manifests() -> dict[str, ServiceManifest]:
    return {service: load_manifest(service) for service in SERVICES}
