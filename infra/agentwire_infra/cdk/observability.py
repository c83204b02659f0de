"""CloudWatch dashboards and alarms, and the SNS topic every alarm notifies.

* The bus stack owns the alarm topic (`<prefix>-alarms`, KMS-encrypted with a key CloudWatch may use,
  SSL only; its ARN is shared through SSM) and the **system** dashboard and alarms: runs requested,
  started, completed and failed; run, model and tool latency; tokens and cost; errors; DLQ depth.
* Each service stack gets a dashboard of its own (its functions, queues, DLQs and the catalogue metrics
  it emits) and sends every alarm it has to the topic.

Every metric name comes from `agentwire_contracts.telemetry.METRICS` (documented in
docs/observability.md); every queue, function and state machine name from the manifests, so nothing here
needs a cross-stack reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from agentwire_contracts.manifest import ServiceManifest, state_machine_name
from agentwire_contracts.telemetry import METRICS, METRICS_NAMESPACE, Metric
from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_ssm as ssm
from constructs import Construct, IConstruct

from agentwire_infra.cdk.settings import SharedParameter

PERIOD = Duration.minutes(5)
WIDTH = 12
HEIGHT = 6
#: System alarm thresholds (tune per deployment).
RUN_FAILURE_RATIO = 0.2
RUN_DURATION_P90_MS = 120_000
HOURLY_COST_MICROUSD = 50_000_000  # 50 USD per hour across all models
QUEUE_AGE_S = 300


def http_function_name(prefix: str, service: str) -> str:
    return f"{prefix}-{service}-http"


def function_names(manifest: ServiceManifest, prefix: str) -> list[str]:
    names = [manifest.queue_name(consumer, prefix) for consumer in manifest.consumers]
    if manifest.http is not None:
        names.append(http_function_name(prefix, manifest.service))
    return names


def catalogue_metric(
    metric: Metric, service: str | None = None, *, statistic: str = "Sum", label: str | None = None
) -> cloudwatch.IMetric:
    """A catalogue metric summed over its extra dimensions (a SEARCH when it has any)."""
    service = service or metric.emitted_by
    if not metric.dimensions:
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=metric.name,
            dimensions_map={"service": service},
            statistic=statistic,
            period=PERIOD,
            label=label or metric.name,
        )
    keys = ",".join((METRICS_NAMESPACE, "service", *metric.dimensions))
    cw_stat = {"Sum": "Sum", "Average": "Average", "p99": "p99", "p90": "p90", "p50": "p50"}.get(statistic, statistic)
    return cloudwatch.MathExpression(
        expression=(
            f"SEARCH('{{{keys}}} service=\"{service}\" MetricName=\"{metric.name}\"', '{cw_stat}', "
            f"{int(PERIOD.to_seconds())})"
        ),
        using_metrics={},
        label=label or metric.name,
        period=PERIOD,
    )


def metric_named(name: str) -> Metric:
    for metric in METRICS:
        if metric.name == name:
            return metric
    raise KeyError(name)


def dlq_depth(name: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/SQS",
        metric_name="ApproximateNumberOfMessagesVisible",
        dimensions_map={"QueueName": name},
        statistic="Maximum",
        period=Duration.minutes(1),
        label=name,
    )


def lambda_metric(function_name: str, metric_name: str, statistic: str = "Sum") -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/Lambda",
        metric_name=metric_name,
        dimensions_map={"FunctionName": function_name},
        statistic=statistic,
        period=PERIOD,
        label=function_name,
    )


def graph(
    title: str,
    left: Sequence[cloudwatch.IMetric],
    right: Sequence[cloudwatch.IMetric] = (),
    *,
    stacked: bool = False,
    width: int = WIDTH,
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(
        title=title, left=list(left), right=list(right), width=width, height=HEIGHT, stacked=stacked
    )


# -- the alarm topic ---------------------------------------------------------------------------------


class AlarmTopic(Construct):
    """The SNS topic of every alarm, encrypted with a customer key CloudWatch may use (an AWS-managed SNS
    key cannot be granted to CloudWatch, whose notifications would then be dropped), SSL only."""

    def __init__(self, scope: Construct, construct_id: str, *, prefix: str, email: str | None = None) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            enable_key_rotation=True,
            description=f"{prefix}: encrypts the alarm topic",
        )
        cloudwatch_principal = iam.ServicePrincipal("cloudwatch.amazonaws.com")
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[cloudwatch_principal],
                resources=["*"],
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=f"{prefix}-alarms",
            display_name=f"{prefix} alarms",
            master_key=self.key,
            enforce_ssl=True,
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["sns:Publish"],
                principals=[cloudwatch_principal],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
        if email:
            sns.Subscription(self, "Email", topic=self.topic, protocol=sns.SubscriptionProtocol.EMAIL, endpoint=email)
        ssm.StringParameter(
            self,
            "ArnParameter",
            parameter_name=SharedParameter.alarm_topic_arn(prefix),
            string_value=self.topic.topic_arn,
            description="agentwire: the alarm topic (read by the service stacks at deploy time)",
        )


def alarm_topic_from_ssm(scope: Construct, prefix: str) -> sns.ITopic:
    arn = ssm.StringParameter.value_for_string_parameter(scope, SharedParameter.alarm_topic_arn(prefix))
    return sns.Topic.from_topic_arn(scope, "AlarmTopic", arn)


def notify_on_every_alarm(scope: IConstruct, topic: sns.ITopic) -> int:
    """Send every alarm under `scope` to the topic (on ALARM and back to OK); returns how many."""
    action = cw_actions.SnsAction(topic)
    count = 0
    for child in scope.node.find_all():
        if isinstance(child, cloudwatch.Alarm):
            child.add_alarm_action(action)
            child.add_ok_action(action)
            count += 1
    return count


# -- the system dashboard and alarms -----------------------------------------------------------------


class SystemObservability(Construct):
    """The whole system on one dashboard, and the alarms about runs as a whole."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        manifests: Iterable[ServiceManifest],
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        manifests = list(manifests)
        stack = Stack.of(self)
        machine_arn = stack.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=state_machine_name(prefix),
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

        def states(metric_name: str, statistic: str = "Sum") -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/States",
                metric_name=metric_name,
                dimensions_map={"StateMachineArn": machine_arn},
                statistic=statistic,
                period=PERIOD,
                label=f"executions {metric_name}",
            )

        m = metric_named
        requested = catalogue_metric(m("RunsRequested"))
        completed = catalogue_metric(m("RunsCompleted"))
        failed = catalogue_metric(m("RunsFailed"), label="RunsFailed (all reasons)")
        failed_total = cloudwatch.MathExpression(
            expression="SUM(f)", using_metrics={"f": failed}, label="RunsFailed", period=PERIOD
        )
        cost_usd = cloudwatch.MathExpression(
            expression="c / 1000000",
            using_metrics={"c": catalogue_metric(m("CostMicroUSD"))},
            label="cost (USD)",
            period=PERIOD,
        )
        dlqs = [manifest.dlq_name(consumer, prefix) for manifest in manifests for consumer in manifest.consumers]
        functions = [name for manifest in manifests for name in function_names(manifest, prefix)]
        dlq_metrics = {f"d{index}": dlq_depth(name) for index, name in enumerate(dlqs)}
        dlq_total = cloudwatch.MathExpression(
            expression=f"SUM([{','.join(dlq_metrics)}])",
            using_metrics=dlq_metrics,
            label="messages in DLQs",
            period=Duration.minutes(1),
        )
        errors = [lambda_metric(name, "Errors") for name in functions]

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{prefix}-system",
            default_interval=Duration.hours(3),
        )
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=f"# {prefix}: every run\nRuns, latency, cost, errors and DLQ depth across the five services. "
                "Metric catalogue: docs/observability.md. Per service: the `<prefix>-<service>` dashboards.",
                width=24,
                height=2,
            )
        )
        self.dashboard.add_widgets(
            graph(
                "Runs",
                [
                    requested,
                    catalogue_metric(m("RunsStarted")),
                    completed,
                    failed_total,
                    states("ExecutionsFailed"),
                    states("ExecutionsTimedOut"),
                ],
            ),
            graph(
                "Run latency (ms)",
                [
                    catalogue_metric(m("RunDuration"), statistic="p50", label="run p50"),
                    catalogue_metric(m("RunDuration"), statistic="p90", label="run p90"),
                    states("ExecutionTime", "p90"),
                ],
            ),
        )
        self.dashboard.add_widgets(
            graph(
                "Model and tool latency (ms)",
                [
                    catalogue_metric(m("CompletionLatency"), statistic="p50", label="model p50"),
                    catalogue_metric(m("CompletionLatency"), statistic="p99", label="model p99"),
                    catalogue_metric(m("ToolLatency"), statistic="p99", label="tool p99"),
                ],
            ),
            graph(
                "Tokens and cost",
                [
                    catalogue_metric(m("InputTokens")),
                    catalogue_metric(m("OutputTokens")),
                    catalogue_metric(m("CacheReadInputTokens")),
                ],
                [cost_usd],
            ),
        )
        self.dashboard.add_widgets(
            graph(
                "Errors",
                [
                    catalogue_metric(m("CompletionsFailed")),
                    catalogue_metric(m("Throttles")),
                    catalogue_metric(m("ToolErrors")),
                    *errors,
                ],
                stacked=True,
            ),
            graph("DLQ depth", [dlq_total, *dlq_metrics.values()]),
        )

        def alarm(
            alarm_id: str, name: str, description: str, metric: cloudwatch.IMetric, threshold: float, periods: int = 1
        ) -> cloudwatch.Alarm:
            created = cloudwatch.Alarm(
                self,
                alarm_id,
                alarm_name=f"{prefix}-{name}",
                alarm_description=description,
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            created.add_alarm_action(cw_actions.SnsAction(topic))
            created.add_ok_action(cw_actions.SnsAction(topic))
            return created

        failed_sum = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name="RunsFailed",
            dimensions_map={"service": "gateway"},
            statistic="Sum",
            period=Duration.minutes(15),
        )
        completed_sum = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name="RunsCompleted",
            dimensions_map={"service": "gateway"},
            statistic="Sum",
            period=Duration.minutes(15),
        )
        self.alarms = [
            alarm(
                "RunFailureRatioAlarm",
                "run-failure-ratio",
                f"More than {RUN_FAILURE_RATIO:.0%} of runs failed over 15 minutes (RunsFailed / all finished).",
                cloudwatch.MathExpression(
                    expression="IF(c + f > 0, f / (c + f), 0)",
                    using_metrics={"f": failed_sum, "c": completed_sum},
                    label="failed ratio",
                    period=Duration.minutes(15),
                ),
                RUN_FAILURE_RATIO,
            ),
            alarm(
                "ExecutionsFailedAlarm",
                "executions-failed",
                "Run executions failed, timed out or were aborted outside the failure path of the ASL.",
                cloudwatch.MathExpression(
                    expression="f + t",
                    using_metrics={"f": states("ExecutionsFailed"), "t": states("ExecutionsTimedOut")},
                    label="executions failed or timed out",
                    period=PERIOD,
                ),
                0,
            ),
            alarm(
                "RunLatencyAlarm",
                "run-latency-p90",
                f"p90 of run duration above {RUN_DURATION_P90_MS / 1000:.0f} s for 15 minutes.",
                cloudwatch.Metric(
                    namespace=METRICS_NAMESPACE,
                    metric_name="RunDuration",
                    dimensions_map={"service": "gateway"},
                    statistic="p90",
                    period=PERIOD,
                ),
                RUN_DURATION_P90_MS,
                periods=3,
            ),
            alarm(
                "CostAlarm",
                "hourly-cost",
                f"Model spend above {HOURLY_COST_MICROUSD / 1e6:.0f} USD in an hour (CostMicroUSD).",
                cloudwatch.Metric(
                    namespace=METRICS_NAMESPACE,
                    metric_name="CostMicroUSD",
                    dimensions_map={"service": "llm"},
                    statistic="Sum",
                    period=Duration.hours(1),
                ),
                HOURLY_COST_MICROUSD,
            ),
            alarm(
                "DlqTotalAlarm",
                "dlq-messages",
                "Messages are waiting in a dead-letter queue: `agentwire dlq` locally, the DLQ alarms per queue.",
                dlq_total,
                0,
            ),
        ]
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="System alarms",
                width=24,
                height=3,
                alarms=list(self.alarms),
            )
        )


# -- one dashboard per service -----------------------------------------------------------------------


class ServiceDashboard(Construct):
    """A service's functions (invocations, errors, throttles, duration), queues (depth, age of the oldest
    message), DLQs, and the catalogue metrics it emits."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        manifest: ServiceManifest,
        prefix: str,
        alarms: Sequence[cloudwatch.Alarm],
    ) -> None:
        super().__init__(scope, construct_id)
        functions = function_names(manifest, prefix)
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{prefix}-{manifest.service}",
            default_interval=Duration.hours(3),
        )
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(
                markdown=f"# {prefix} {manifest.service}\nFunctions, queues and DLQs from the service manifest; "
                "metrics from the catalogue (docs/observability.md).",
                width=24,
                height=2,
            )
        )
        self.dashboard.add_widgets(
            graph("Invocations", [lambda_metric(name, "Invocations") for name in functions]),
            graph(
                "Errors and throttles",
                [lambda_metric(name, "Errors") for name in functions]
                + [lambda_metric(name, "Throttles") for name in functions],
            ),
        )
        queues = [manifest.queue_name(consumer, prefix) for consumer in manifest.consumers]
        self.dashboard.add_widgets(
            graph("Duration p99 (ms)", [lambda_metric(name, "Duration", "p99") for name in functions]),
            graph(
                "Queue backlog (age of oldest message, s)",
                [
                    cloudwatch.Metric(
                        namespace="AWS/SQS",
                        metric_name="ApproximateAgeOfOldestMessage",
                        dimensions_map={"QueueName": name},
                        statistic="Maximum",
                        period=PERIOD,
                        label=name,
                    )
                    for name in queues
                ],
            ),
        )
        emitted = [metric for metric in METRICS if metric.emitted_by == manifest.service]
        widgets: list[cloudwatch.IWidget] = [
            graph("DLQ depth", [dlq_depth(manifest.dlq_name(consumer, prefix)) for consumer in manifest.consumers]),
        ]
        for start in range(0, len(emitted), 4):
            chunk = emitted[start : start + 4]
            widgets.append(
                graph(
                    ", ".join(metric.name for metric in chunk),
                    [
                        catalogue_metric(
                            metric, manifest.service, statistic="p99" if metric.unit == "Milliseconds" else "Sum"
                        )
                        for metric in chunk
                    ],
                )
            )
        for start in range(0, len(widgets), 2):
            self.dashboard.add_widgets(*widgets[start : start + 2])
        if alarms:
            self.dashboard.add_widgets(
                cloudwatch.AlarmStatusWidget(
                    title="Alarms",
                    width=24,
                    height=3,
                    alarms=list(alarms),
                )
            )
