"""The agentwire CDK app: `agentwire-bus` and one `agentwire-<service>` stack per manifest.

    npx --prefix infra cdk synth            # from infra/ (cdk.json runs this module)
    uv run python -m agentwire_infra.cdk.synth --out cdk.out

Stacks are environment-agnostic (no account/region at synth time, no lookups), so synthesis needs no
AWS credentials. Context: `agentwire:prefix` (default `agentwire`), `agentwire:code` (`bundle` |
`placeholder`), `agentwire:build` (`true`: rebuild the bundles before synthesizing), `agentwire:nag`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentwire_contracts.services import SERVICES
from aws_cdk import App, Stack, Tags, Validations
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from agentwire_infra.cdk import bundle
from agentwire_infra.cdk.bus_stack import BusStack
from agentwire_infra.cdk.service_stack import SERVICE_STACKS, ServiceStack
from agentwire_infra.cdk.settings import CODE_PLACEHOLDER, AppSettings, load_manifest, stack_name

CTX_BUILD = "agentwire:build"


@dataclass
class AgentwireApp:
    app: App
    settings: AppSettings
    bus: BusStack
    services: dict[str, ServiceStack] = field(default_factory=dict)

    def stacks(self) -> list[Stack]:
        return [self.bus, *self.services.values()]


def lambda_code(service: str, settings: AppSettings) -> lambda_.Code:
    if settings.code == CODE_PLACEHOLDER:
        return lambda_.Code.from_asset(str(bundle.placeholder_dir(service)))
    return lambda_.Code.from_asset(str(bundle.require_bundle(service)))


def build(app: App, settings: AppSettings | None = None) -> AgentwireApp:
    """Add every stack to `app` (and the cdk-nag packs, unless turned off)."""
    settings = settings or AppSettings.from_context(app.node.try_get_context)
    prefix = settings.prefix
    Tags.of(app).add("project", "agentwire")
    bus = BusStack(
        app,
        stack_name(prefix, "bus"),
        stack_name=stack_name(prefix, "bus"),
        prefix=prefix,
        description="agentwire: event bus, archive, payload bucket, schema registry",
    )
    result = AgentwireApp(app=app, settings=settings, bus=bus)
    for service in SERVICES:
        manifest = load_manifest(service)
        stack_class = SERVICE_STACKS.get(service, ServiceStack)
        stack = stack_class(
            app,
            stack_name(prefix, service),
            stack_name=stack_name(prefix, service),
            description=f"agentwire {service} service (built from agentwire_{service}.manifest)",
            manifest=manifest,
            prefix=prefix,
            code=lambda_code(service, settings),
            settings=settings,
        )
        Tags.of(stack).add("agentwire:service", service)
        result.services[service] = stack
    add_deploy_order(result)
    if settings.nag:
        Validations.of(app).add_plugins(
            AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True), ServerlessChecks(app)
        )
    return result


#: Who must be deployed before whom on a first `cdk deploy --all`: the bus writes the SSM parameters every
#: service reads; the orchestrator's requests need their consumers; the gateway's runs need the orchestrator.
DEPLOY_AFTER: dict[str, tuple[str, ...]] = {
    "orchestrator": ("memory", "tools", "llm"),
    "gateway": ("orchestrator",),
}


def add_deploy_order(result: AgentwireApp) -> None:
    """Deployment order only (the assembly's stack dependencies): no CloudFormation export or import, so
    each stack still updates and rolls back on its own (`make deploy` passes `--exclusively`)."""
    for service, stack in result.services.items():
        stack.add_stack_dependency(result.bus, "the bus stack writes the SSM parameters this stack reads")
        for earlier in DEPLOY_AFTER.get(service, ()):
            if earlier in result.services:
                stack.add_stack_dependency(result.services[earlier], f"{service} publishes events {earlier} consumes")


def main() -> None:
    app = App()
    settings = AppSettings.from_context(app.node.try_get_context)
    if settings.code != CODE_PLACEHOLDER and str(app.node.try_get_context(CTX_BUILD)).lower() == "true":
        for service in SERVICES:
            bundle.build_bundle(service)
    build(app, settings)
    app.synth()


if __name__ == "__main__":
    main()
