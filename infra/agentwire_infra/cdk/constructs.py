"""Generic constructs, one per capability a manifest can ask for.

`ServiceFunction` (a Lambda function with its own role, log group and alarms), `QueueConsumer`
(function + queue + DLQ + redrive + event source mapping + EventBridge rule), `ServiceTable`.
Every cdk-nag acknowledgment goes through `acknowledge` so each one carries a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agentwire_contracts.manifest import ConsumerSpec, ServiceManifest, TableSpec
from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct

#: Lambda runtime of every function; the bundles are built for it (see bundle.LAMBDA_PYTHON).
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
DLQ_RETENTION = Duration.days(14)
#: EventBridge retries delivery to the queue for up to a day before the event goes to the DLQ.
TARGET_RETRY_ATTEMPTS = 185
TARGET_MAX_EVENT_AGE = Duration.hours(24)
#: A consumer queue whose oldest message is older than this for five minutes is alarmed.
BACKLOG_AGE_S = 300

REASON_XRAY = (
    "Active X-Ray tracing: Lambda's grant of xray:PutTraceSegments/PutTelemetryRecords has no "
    "resource-level permissions, so IAM requires Resource '*' (the only '*' in this policy)."
)
REASON_RUNTIME = (
    "Pinned to python3.12 on purpose: the bundle's wheels are resolved by uv for CPython 3.12 "
    "(bundle.LAMBDA_PYTHON) and the workspace targets 3.11-3.12; bumping is a deliberate change."
)
REASON_ASYNC = (
    "Invoked only synchronously (SQS event source mapping or API Gateway), never asynchronously: "
    "failed SQS messages are retried by SQS and land in the queue's DLQ after maxReceiveCount."
)
REASON_ESM_DESTINATION = (
    "SQS event source mappings do not support on-failure destinations; the source queue's "
    "RedrivePolicy moves poison messages to its DLQ, which is alarmed."
)


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding with a reviewer-readable reason, as narrowly as possible: on the
    CloudFormation resource of `scope` (its default child for an L2), or on `scope` if it is one.
    For a role's grants pass `role_policy(role)`, the resource the IAM findings are reported on."""
    if len(reason) < 40:
        raise ValueError(f"the reason for acknowledging {rule_id} is too thin: {reason!r}")
    target = scope.node.default_child or scope
    Validations.of(target).acknowledge(Acknowledgment(id=rule_id, reason=reason))


def role_policy(role: iam.IRole) -> IConstruct:
    """The role's DefaultPolicy (where grants land, and where cdk-nag reports IAM5)."""
    return role.node.find_child("DefaultPolicy")


@dataclass(frozen=True)
class BusRefs:
    """How a service stack reaches the bus stack's resources: names resolved from SSM at deploy time."""

    bus: events.IEventBus
    bus_name: str
    bus_arn: str
    payload_bucket_name: str


def dlq_alarm(scope: Construct, queue: sqs.Queue, alarm_name: str) -> cloudwatch.Alarm:
    return cloudwatch.Alarm(
        scope,
        "DlqDepthAlarm",
        alarm_name=alarm_name,
        alarm_description=f"Messages in {queue.queue_name}: something could not be processed.",
        metric=queue.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
        ),
        threshold=0,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )


class ServiceFunction(Construct):
    """One Lambda function: arm64, Python 3.12, X-Ray active, JSON logs into its own log group with
    retention, an explicit timeout and memory, a role that starts empty (no managed policies) and
    alarms on errors and throttles. Publishing services may put events on the bus, and only there."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        manifest: ServiceManifest,
        function_name: str,
        handler: str,
        timeout_s: int,
        memory_mb: int,
        code: lambda_.Code,
        environment: Mapping[str, str],
        refs: BusRefs,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", retention=LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{function_name}: least privilege, granted capability by capability",
        )
        # Instead of AWSLambdaBasicExecutionRole (logs:* on every log group): write to its own group only.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=f"agentwire {manifest.service}: {handler}",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=code,
            timeout=Duration.seconds(timeout_s),
            memory_size=memory_mb,
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=self.log_group,
            role=self.role,
            environment=dict(environment),
        )
        if manifest.publishes:
            self.role.add_to_policy(iam.PolicyStatement(actions=["events:PutEvents"], resources=[refs.bus_arn]))
        acknowledge(role_policy(self.role), "AwsSolutions-IAM5[Resource::*]", REASON_XRAY)
        acknowledge(self.function, "Serverless-LambdaLatestVersion", REASON_RUNTIME)
        acknowledge(self.function, "AwsSolutions-L1", REASON_RUNTIME)
        acknowledge(self.function, "Serverless-LambdaDLQ", REASON_ASYNC)
        acknowledge(self.function, "Serverless-LambdaAsyncFailureDestination", REASON_ASYNC)

        self.errors_alarm = cloudwatch.Alarm(
            self,
            "ErrorsAlarm",
            alarm_name=f"{function_name}-errors",
            alarm_description=f"{function_name} raised errors (a record failed outside the batch handler).",
            metric=self.function.metric_errors(period=Duration.minutes(5), statistic=cloudwatch.Stats.SUM),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.throttles_alarm = cloudwatch.Alarm(
            self,
            "ThrottlesAlarm",
            alarm_name=f"{function_name}-throttles",
            alarm_description=f"{function_name} was throttled (reserved or account concurrency reached).",
            metric=self.function.metric_throttles(period=Duration.minutes(5), statistic=cloudwatch.Stats.SUM),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )


class QueueConsumer(Construct):
    """A manifest consumer: SQS queue (+ DLQ, redrive after maxReceiveCount), the function behind it
    (event source mapping with ReportBatchItemFailures), and the EventBridge rule on the bus that routes
    the consumer's detail-types to the queue (target retry policy; undeliverable events go to the DLQ)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        manifest: ServiceManifest,
        consumer: ConsumerSpec,
        prefix: str,
        code: lambda_.Code,
        environment: Mapping[str, str],
        refs: BusRefs,
    ) -> None:
        super().__init__(scope, construct_id)
        queue_name = manifest.queue_name(consumer, prefix)
        self.dlq = sqs.Queue(
            self,
            "Dlq",
            queue_name=manifest.dlq_name(consumer, prefix),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
        )
        acknowledge(
            self.dlq,
            "Serverless-SQSRedrivePolicy",
            "This queue is itself the dead-letter queue (of the consumer queue and of the rule target): "
            "it is terminal, kept 14 days and alarmed at depth > 0; a DLQ of a DLQ would only hide messages.",
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            queue_name=queue_name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(consumer.visibility_timeout_s),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=consumer.max_receive_count, queue=self.dlq),
        )
        self.handler = ServiceFunction(
            self,
            "Handler",
            manifest=manifest,
            function_name=queue_name,
            handler=consumer.handler,
            timeout_s=consumer.function_timeout_s,
            memory_mb=consumer.memory_mb,
            reserved_concurrency=consumer.reserved_concurrency,
            code=code,
            environment=environment,
            refs=refs,
        )
        self.function = self.handler.function
        self.function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=consumer.batch_size,
                report_batch_item_failures=True,
                # With reserved concurrency, Lambda's pollers would otherwise invoke past it: each throttled
                # batch goes back hidden for the whole visibility timeout (longer than the run's step waits)
                # and counts as a receive towards the DLQ. Bounded, the pollers leave the rest queued.
                max_concurrency=consumer.reserved_concurrency,
            )
        )
        for mapping in self.function.node.children:
            if isinstance(mapping, lambda_.EventSourceMapping):
                acknowledge(mapping, "Serverless-LambdaEventSourceMappingDestination", REASON_ESM_DESTINATION)

        self.rules: list[events.Rule] = []
        # AWS services put their events on the account's default bus, agentwire's services on its own.
        bus = (
            events.EventBus.from_event_bus_name(self, "DefaultBus", consumer.event_bus)
            if consumer.event_bus
            else refs.bus
        )
        for index, pattern in enumerate(manifest.event_patterns(consumer)):
            rule = events.Rule(
                self,
                "Rule" if index == 0 else f"Rule{index}",
                rule_name=manifest.rule_name(consumer, prefix, index),
                description=f"{', '.join(pattern['detail-type'])} -> {queue_name}",
                event_bus=bus,
                event_pattern=events.EventPattern(
                    source=pattern.get("source"), detail_type=pattern["detail-type"], detail=pattern.get("detail")
                ),
            )
            rule.add_target(
                targets.SqsQueue(
                    self.queue,
                    dead_letter_queue=self.dlq,
                    retry_attempts=TARGET_RETRY_ATTEMPTS,
                    max_event_age=TARGET_MAX_EVENT_AGE,
                )
            )
            self.rules.append(rule)
        self.rule = self.rules[0]
        self.dlq_alarm = dlq_alarm(self, self.dlq, f"{manifest.dlq_name(consumer, prefix)}-depth")
        self.backlog_alarm = cloudwatch.Alarm(
            self,
            "BacklogAlarm",
            alarm_name=f"{queue_name}-backlog",
            alarm_description=f"The oldest message in {queue_name} waited over {BACKLOG_AGE_S} s: the consumer "
            "is falling behind (throttled, failing, or under-provisioned).",
            metric=self.queue.metric_approximate_age_of_oldest_message(
                period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=BACKLOG_AGE_S,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=5,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )


class ServiceTable(Construct):
    """A manifest table: on-demand, point-in-time recovery, AWS-managed encryption, TTL as declared,
    retained (and deletion-protected) when its stack goes away."""

    def __init__(
        self, scope: Construct, construct_id: str, *, manifest: ServiceManifest, spec: TableSpec, prefix: str
    ) -> None:
        super().__init__(scope, construct_id)
        sort_key = dynamodb.Attribute(name=spec.sort_key, type=dynamodb.AttributeType.STRING) if spec.sort_key else None
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=manifest.table_name(spec, prefix),
            partition_key=dynamodb.Attribute(name=spec.partition_key, type=dynamodb.AttributeType.STRING),
            sort_key=sort_key,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=spec.ttl_attribute,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
