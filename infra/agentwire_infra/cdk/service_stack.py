"""One stack per service, built from its manifest: tables, queue consumers, the HTTP API when the
manifest declares one, and — for the orchestrator — the run state machine.

A service stack reads the bus stack's names from SSM at deploy time and exports nothing, so it
deploys, updates and rolls back on its own.
"""

from __future__ import annotations

import json
from typing import Any

from agentwire_contracts import names
from agentwire_contracts.manifest import ServiceManifest, state_machine_name
from agentwire_orchestrator import asl
from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from agentwire_infra.cdk.constructs import (
    LOG_RETENTION,
    BusRefs,
    QueueConsumer,
    ServiceFunction,
    ServiceTable,
    acknowledge,
    role_policy,
)
from agentwire_infra.cdk.observability import ServiceDashboard, alarm_topic_from_ssm, notify_on_every_alarm
from agentwire_infra.cdk.settings import ADOT_EXEC_WRAPPER, AppSettings, SharedParameter

#: Default-stage throttling of the HTTP API (steady requests/s and burst).
HTTP_RATE_LIMIT = 100
HTTP_BURST_LIMIT = 200
METRICS_NAMESPACE = "agentwire"

#: Routes that answer without a credential (the gateway function lets them through too).
PUBLIC_ROUTES = ("/healthz", "/openapi.json", "/docs")

#: API Gateway access-log line (JSON, one object per request).
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "routeKey": "$context.routeKey",
        "path": "$context.path",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "integrationLatency": "$context.integrationLatency",
        "integrationError": "$context.integrationErrorMessage",
    }
)


class HttpEndpoint(Construct):
    """The manifest's HTTP API: an API Gateway HTTP API whose `$default` route proxies every request to
    one function (payload v2), a `$default` stage with throttling and JSON access logs, no CORS.

    With a JWT issuer and audience (context `agentwire:jwtIssuer`, `agentwire:jwtAudience`), a JWT
    authorizer guards the `$default` route, so tokens from other issuers never reach the function; the
    public routes (`/healthz`, `/openapi.json`, `/docs`) get their own unauthenticated GET routes. API
    keys are not JWTs: with the authorizer on, clients must present the identity provider's tokens.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        manifest: ServiceManifest,
        prefix: str,
        code: lambda_.Code,
        environment: dict[str, str],
        refs: BusRefs,
        jwt_issuer: str | None = None,
        jwt_audience: tuple[str, ...] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        assert manifest.http is not None
        function_name = f"{prefix}-{manifest.service}-http"
        self.handler = ServiceFunction(
            self,
            "Handler",
            manifest=manifest,
            function_name=function_name,
            handler=manifest.http.handler,
            timeout_s=manifest.http.function_timeout_s,
            memory_mb=manifest.http.memory_mb,
            code=code,
            environment=environment,
            refs=refs,
        )
        self.function = self.handler.function
        self.authorizer = (
            authorizers.HttpJwtAuthorizer(
                "JwtAuthorizer",
                jwt_issuer,
                jwt_audience=list(jwt_audience),
                authorizer_name=f"{prefix}-{manifest.service}-jwt",
            )
            if jwt_issuer and jwt_audience
            else None
        )
        integration = integrations.HttpLambdaIntegration("LambdaProxy", self.function)
        self.api = apigwv2.HttpApi(
            self,
            "Api",
            api_name=f"{prefix}-{manifest.service}",
            description="agentwire HTTP API (v1); the gateway function authenticates every request",
            create_default_stage=False,
            default_integration=integration,
            default_authorizer=self.authorizer,
        )
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
        )
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=HTTP_RATE_LIMIT, burst_limit=HTTP_BURST_LIMIT),
        )
        cfn_stage = self.stage.node.default_child
        assert isinstance(cfn_stage, apigwv2.CfnStage)
        cfn_stage.access_log_settings = apigwv2.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.access_logs.log_group_arn, format=ACCESS_LOG_FORMAT
        )
        if self.authorizer is None:
            acknowledge(
                self.api.node.find_child("DefaultRoute"),
                "AwsSolutions-APIG4",
                "Authentication is the gateway function's job: it verifies the bearer API key or JWT "
                "against its tenants table on every route but /healthz, /openapi.json and /docs.",
            )
            return
        for path in PUBLIC_ROUTES:
            for route in self.api.add_routes(
                path=path,
                methods=[apigwv2.HttpMethod.GET],
                integration=integration,
                authorizer=apigwv2.HttpNoneAuthorizer(),
            ):
                acknowledge(
                    route,
                    "AwsSolutions-APIG4",
                    f"GET {path} is public by design (health check, API description); it returns no tenant data.",
                )


class ServiceStack(Stack):
    """The generic stack: everything a manifest can ask for."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        manifest: ServiceManifest,
        prefix: str,
        code: lambda_.Code,
        settings: AppSettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.manifest = manifest
        self.prefix = prefix
        self.settings = settings or AppSettings(prefix=prefix)
        bus_arn = ssm.StringParameter.value_for_string_parameter(self, SharedParameter.bus_arn(prefix))
        self.refs = BusRefs(
            bus=events.EventBus.from_event_bus_arn(self, "Bus", bus_arn),
            bus_name=ssm.StringParameter.value_for_string_parameter(self, SharedParameter.bus_name(prefix)),
            bus_arn=bus_arn,
            payload_bucket_name=(
                ssm.StringParameter.value_for_string_parameter(self, SharedParameter.payload_bucket_name(prefix))
                if manifest.uses_payload_bucket
                else ""
            ),
        )
        self.tables = {
            spec.name: ServiceTable(self, f"Table-{spec.name}", manifest=manifest, spec=spec, prefix=prefix)
            for spec in manifest.tables
        }
        self.function_environment = self.base_environment()
        self.function_environment.update(self.before_functions())

        self.consumers = {
            consumer.name: QueueConsumer(
                self,
                f"Consumer-{consumer.name}",
                manifest=manifest,
                consumer=consumer,
                prefix=prefix,
                code=code,
                environment=self.function_environment,
                refs=self.refs,
            )
            for consumer in manifest.consumers
        }
        self.http = (
            HttpEndpoint(
                self,
                "HttpEndpoint",
                manifest=manifest,
                prefix=prefix,
                code=code,
                environment=self.function_environment,
                refs=self.refs,
                jwt_issuer=self.settings.jwt_issuer,
                jwt_audience=self.settings.jwt_audience,
            )
            if manifest.http
            else None
        )
        otel_layer = (
            lambda_.LayerVersion.from_layer_version_arn(self, "AdotLayer", self.settings.otel_layer_arn)
            if self.settings.otel_layer_arn
            else None
        )
        for function in self.functions().values():
            if otel_layer is not None:
                function.add_layers(otel_layer)
            for table in self.tables.values():
                table.table.grant_read_write_data(function)
            if manifest.uses_payload_bucket:
                self.grant_payloads(function)
        self.after_functions()
        self.alarm_topic = alarm_topic_from_ssm(self, prefix)
        notify_on_every_alarm(self, self.alarm_topic)
        self.dashboard = ServiceDashboard(
            self,
            "Dashboard",
            manifest=manifest,
            prefix=prefix,
            alarms=[child for child in self.node.find_all() if isinstance(child, cloudwatch.Alarm)],
        )

    def functions(self) -> dict[str, lambda_.Function]:
        found = {name: consumer.function for name, consumer in self.consumers.items()}
        if self.http is not None:
            found["http"] = self.http.function
        return found

    def base_environment(self) -> dict[str, str]:
        environment = {
            names.ENV_EVENT_BUS_NAME: self.refs.bus_name,
            "POWERTOOLS_SERVICE_NAME": self.manifest.service,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            **self.manifest.table_environment(self.prefix),
        }
        if self.manifest.uses_payload_bucket:
            environment[names.ENV_PAYLOAD_BUCKET] = self.refs.payload_bucket_name
        endpoint = self.settings.otlp_export_endpoint
        if endpoint:
            # agentwire_contracts.telemetry exports the GenAI and step spans over OTLP/HTTP when this is set.
            environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
            environment["OTEL_SERVICE_NAME"] = self.manifest.service
        if self.settings.otel_layer_arn:
            environment["AWS_LAMBDA_EXEC_WRAPPER"] = ADOT_EXEC_WRAPPER
        extra = self.settings.service_environment.get(self.manifest.service, {})
        clash = sorted(set(extra) & set(environment))
        if clash:
            raise ValueError(f"the stack sets {', '.join(clash)} itself; {self.manifest.service} cannot override it")
        return {**environment, **extra}

    def before_functions(self) -> dict[str, str]:
        """Resources the functions' environment refers to; returns the extra environment."""
        return {}

    def after_functions(self) -> None:
        """Grants that only some of the service's functions get."""

    def grant_payloads(self, function: lambda_.Function) -> None:
        objects = self.format_arn(
            service="s3", region="", account="", resource=self.refs.payload_bucket_name, resource_name="*"
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], resources=[objects])
        )
        assert function.role is not None
        # cdk-nag names the finding after the SSM-backed CloudFormation parameter holding the bucket name.
        parameter = self.resolve(self.refs.payload_bucket_name)["Ref"]
        acknowledge(
            role_policy(function.role),
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::<{parameter}>/*]",
            "Claim-check objects are keyed by run and step under the payload bucket; the service "
            "reads, writes and deletes its own payloads (object-level actions only, no bucket actions).",
        )


class OrchestratorStack(ServiceStack):
    """Adds the run state machine (Standard, from the one ASL file); the starter may start and stop its
    executions, the resume consumer may answer its task tokens; the machine may put events on the bus."""

    #: Which of the orchestrator's consumers gets which Step Functions capability.
    STARTER = "starter"
    RESUME = "resume"
    WATCHDOG = "watchdog"

    state_machine: sfn.StateMachine

    def before_functions(self) -> dict[str, str]:
        name = state_machine_name(self.prefix)
        self.state_machine_logs = logs.LogGroup(
            self,
            "StateMachineLogs",
            log_group_name=f"/aws/vendedlogs/states/{name}",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine_role = iam.Role(
            self,
            "StateMachineRole",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"{name}: put events on the bus, logs and traces",
        )
        self.state_machine_role.add_to_policy(
            iam.PolicyStatement(actions=["events:PutEvents"], resources=[self.refs.bus_arn])
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(asl.definition_template()),
            definition_substitutions={asl.BUS_SUBSTITUTION: self.refs.bus_name},
            role=self.state_machine_role,
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.state_machine_logs,
                level=sfn.LogLevel.ERROR,
                include_execution_data=False,
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )
        acknowledge(
            role_policy(self.state_machine_role),
            "AwsSolutions-IAM5[Resource::*]",
            "Step Functions log delivery (logs:CreateLogDelivery, PutResourcePolicy, DescribeLogGroups, ...) "
            "and X-Ray (PutTraceSegments, GetSamplingRules, ...) do not support resource-level permissions.",
        )
        acknowledge(
            self.state_machine,
            "AwsSolutions-SF1",
            "Logging level ERROR on purpose: execution events carry conversation content and task tokens; "
            "failures are logged (without execution data) and every run publishes its own lifecycle events.",
        )
        acknowledge(
            self.state_machine,
            "Serverless-StepFunctionStateMachineAllLogsToCloudWatch",
            "Logging level ERROR on purpose: execution events carry conversation content and task tokens; "
            "failures are logged (without execution data) and every run publishes its own lifecycle events.",
        )
        return {names.ENV_STATE_MACHINE_ARN: self.state_machine.state_machine_arn}

    def executions_arn(self) -> str:
        return self.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{state_machine_name(self.prefix)}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def after_functions(self) -> None:
        starter = self.consumers[self.STARTER].function
        assert starter.role is not None
        self.state_machine.grant_start_execution(starter)
        starter.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:StopExecution", "states:DescribeExecution", "states:GetExecutionHistory"],
                resources=[self.executions_arn()],
            )
        )
        acknowledge(
            role_policy(starter.role),
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
            f"execution:{state_machine_name(self.prefix)}:*]",
            "Executions are named by run id, unknown in advance; the wildcard is limited to executions of "
            "this one state machine (stop on cancel, describe on duplicate run.requested).",
        )
        resume = self.consumers[self.RESUME].function
        self.state_machine.grant_task_response(resume)
        watchdog = self.consumers[self.WATCHDOG].function
        assert watchdog.role is not None
        watchdog.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:GetExecutionHistory"], resources=[self.executions_arn()]
            )
        )
        acknowledge(
            role_policy(watchdog.role),
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
            f"execution:{state_machine_name(self.prefix)}:*]",
            "Executions are named by run id, unknown in advance; the wildcard is limited to executions of "
            "this one state machine (read why an execution ended, to publish the run.failed it could not).",
        )


class LlmStack(ServiceStack):
    """Adds the model providers' credentials: a Secrets Manager secret per key-based provider (referenced
    from context, or created empty for the operator to fill in) whose ARN the function reads at run time
    (`*_API_KEY_SECRET_ARN`, as `agentwire_llm.settings` expects), and Bedrock model invocation."""

    #: Provider -> the llm setting's environment variable holding its key's secret ARN.
    KEY_PROVIDERS = {
        "anthropic": "ANTHROPIC_API_KEY_SECRET_ARN",
        "openai": "OPENAI_API_KEY_SECRET_ARN",
    }

    secrets: dict[str, secretsmanager.ISecret]

    def before_functions(self) -> dict[str, str]:
        given = {"anthropic": self.settings.anthropic_secret_arn, "openai": self.settings.openai_secret_arn}
        self.secrets = {}
        for provider in self.KEY_PROVIDERS:
            arn = given[provider]
            if arn:
                secret = secretsmanager.Secret.from_secret_complete_arn(self, f"ApiKey-{provider}", arn)
            else:
                created = secretsmanager.Secret(
                    self,
                    f"ApiKey-{provider}",
                    secret_name=f"{self.prefix}/llm/{provider}-api-key",
                    description=f"The {provider} API key of the llm service (put the provider's key here)",
                    removal_policy=RemovalPolicy.RETAIN,
                )
                acknowledge(
                    created,
                    "AwsSolutions-SMG4",
                    f"A third-party {provider} API key is issued in the provider's console; no rotation "
                    "function can mint one, so it is rotated by replacing the secret's value.",
                )
                secret = created
            self.secrets[provider] = secret
        environment = {variable: self.secrets[provider].secret_arn for provider, variable in self.KEY_PROVIDERS.items()}
        environment.update(self.limits_environment())
        return environment

    #: CDK context (`cdk synth -c llm.requests_per_minute=50 ...`) → the llm settings' environment. All
    #: unset by default: no rate limiter, no tenant budget.
    CTX_REQUESTS_PER_MINUTE = "llm.requests_per_minute"
    CTX_TOKENS_PER_MINUTE = "llm.tokens_per_minute"
    #: JSON, model id (or "*") → {"requests_per_minute": n, "tokens_per_minute": n}; over the two above.
    CTX_RATE_LIMITS = "llm.rate_limits"
    CTX_TENANT_DAILY_BUDGET = "llm.tenant_daily_budget_microusd"
    #: JSON, tenant → micro-dollars per UTC day.
    CTX_TENANT_DAILY_BUDGETS = "llm.tenant_daily_budgets"

    def limits_environment(self) -> dict[str, str]:
        """`AGENTWIRE_LLM_RATE_LIMITS` and the tenant budgets from context, validated as the function will
        read them (a typo fails synthesis, not the deployed function's first call)."""
        from agentwire_llm.settings import RateLimit  # the infra package may import every service

        def context(key: str) -> Any:
            value = self.node.try_get_context(key)
            return None if value in (None, "") else value

        def integer(key: str) -> int | None:
            value = context(key)
            if value is None:
                return None
            number = int(value)
            if number < 0:
                raise ValueError(f"context {key} must not be negative: {value}")
            return number

        def mapping(key: str) -> dict[str, Any]:
            value = context(key)
            if value is None:
                return {}
            parsed = json.loads(value) if isinstance(value, str) else value
            if not isinstance(parsed, dict):
                raise ValueError(f"context {key} must be a JSON object: {value}")
            return parsed

        limits: dict[str, Any] = {}
        requests, tokens = integer(self.CTX_REQUESTS_PER_MINUTE), integer(self.CTX_TOKENS_PER_MINUTE)
        if tokens is not None and requests is None:
            raise ValueError(f"context {self.CTX_TOKENS_PER_MINUTE} needs {self.CTX_REQUESTS_PER_MINUTE} too")
        if requests is not None:
            limits["*"] = {"requests_per_minute": requests, "tokens_per_minute": tokens}
        limits.update(mapping(self.CTX_RATE_LIMITS))
        environment: dict[str, str] = {}
        if limits:
            checked = {
                model: RateLimit.model_validate(limit).model_dump(exclude_none=True) for model, limit in limits.items()
            }
            environment["AGENTWIRE_LLM_RATE_LIMITS"] = json.dumps(checked, sort_keys=True, separators=(",", ":"))
        budget = integer(self.CTX_TENANT_DAILY_BUDGET)
        if budget is not None:
            environment["AGENTWIRE_LLM_TENANT_DAILY_BUDGET_MICROUSD"] = str(budget)
        budgets = {tenant: int(microusd) for tenant, microusd in mapping(self.CTX_TENANT_DAILY_BUDGETS).items()}
        if any(value < 0 for value in budgets.values()):
            raise ValueError(f"context {self.CTX_TENANT_DAILY_BUDGETS} must not hold negative budgets")
        if budgets:
            environment["AGENTWIRE_LLM_TENANT_DAILY_BUDGETS"] = json.dumps(
                budgets, sort_keys=True, separators=(",", ":")
            )
        return environment

    def bedrock_model_arns(self) -> list[str]:
        """Foundation models in any region (cross-region inference profiles route to other regions) and
        this account's inference profiles; which model a run uses is chosen per request."""
        return [
            self.format_arn(service="bedrock", region="*", account="", resource="foundation-model", resource_name="*"),
            self.format_arn(service="bedrock", resource="inference-profile", resource_name="*"),
        ]

    def after_functions(self) -> None:
        for function in self.functions().values():
            assert function.role is not None
            for secret in self.secrets.values():
                secret.grant_read(function)
            # Converse and ConverseStream are authorized as InvokeModel / InvokeModelWithResponseStream.
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                    resources=self.bedrock_model_arns(),
                )
            )
            for arn in self.bedrock_model_arns():
                acknowledge(
                    role_policy(function.role),
                    f"AwsSolutions-IAM5[Resource::{self.nag_arn(arn)}]",
                    "Model ids are chosen per run (aliases, fallbacks, cross-region inference profiles), so "
                    "the grant covers foundation models and this account's inference profiles, invoke only.",
                )

    def nag_arn(self, arn: str) -> str:
        """How cdk-nag spells an ARN with pseudo parameters (`<AWS::Partition>`, ...)."""
        resolved = self.resolve(arn)
        if isinstance(resolved, str):
            return resolved
        parts = resolved["Fn::Join"][1]
        return "".join(part if isinstance(part, str) else f"<{part['Ref']}>" for part in parts)


SERVICE_STACKS: dict[str, type[ServiceStack]] = {"orchestrator": OrchestratorStack, "llm": LlmStack}
