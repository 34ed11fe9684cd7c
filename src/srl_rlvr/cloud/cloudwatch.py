"""CloudWatch: metrics in the embedded metric format, the alarms, the dashboards, the monthly budget,
and the measured training cost on the registry version.

EMF is written here as plain JSON (its specification is one small object: `_aws` names the metrics
and dimensions, the values sit beside it) rather than through `aws-embedded-metrics`, whose API is
an async logger context built for Lambda; a line on stdout is all a training job's log needs.
The alarm, dashboard and budget definitions are built by code here, and Terraform takes the same
definitions from `srl-rlvr aws render` (deploy/terraform), so the two never drift apart.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from srl_rlvr.config import Config, EmfOutput
from srl_rlvr.errors import ConfigError

PROPERTIES = ("step", "epoch")  # logged alongside, not as metrics
TIERS = ("gold", "silver", "bronze")
# The metrics the per-tier alarms watch, and the one dimension they name. An alarm matches a metric
# only when its dimensions are exactly the alarm's, so every EMF line also rolls up to `tier` alone.
TIER = "tier"
ACCURACY, DRIFT, LATENCY = "accuracy", "drift", "latency_ms"


def emf_line(
    namespace: str,
    record: dict[str, Any],
    dimensions: dict[str, str],
    dimension_sets: Sequence[Sequence[str]] | None = None,
    properties: dict[str, Any] | None = None,
) -> str:
    """One EMF log line: every finite number in `record` becomes a metric under each of
    `dimension_sets` (keys of `dimensions`; default: all of them as one set). `properties` ride
    along for Logs Insights and are no metric."""
    values = {
        k: v
        for k, v in record.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and k not in PROPERTIES
    }
    sets = [sorted(s) for s in dimension_sets] if dimension_sets is not None else [sorted(dimensions)]
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": namespace,
                        "Dimensions": sets,
                        "Metrics": [{"Name": k, "Unit": "None"} for k in sorted(values)],
                    }
                ],
            },
            **(properties or {}),
            **dimensions,
            **{k: record[k] for k in PROPERTIES if k in record},
            **values,
        }
    )


def write_emf(output: EmfOutput, line: str) -> None:
    """Append one EMF line to stdout (read by the CloudWatch agent, Lambda, ECS) or to a file."""
    if output.to == "stdout":
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return
    try:
        with Path(output.to).open("a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as e:
        raise ConfigError(f"cloudwatch.to: cannot append to {output.to}: {e.strerror}") from None


def serving_emf_line(
    namespace: str, tier: str, requested: str, latency_ms: float, served_by: str, status: str
) -> str:
    """A served request's latency under `tier` (what the latency alarm and dashboard watch) and under
    `tier` and `role` (the role or model the client named), with the answering model and status."""
    return emf_line(
        namespace,
        {LATENCY: latency_ms},
        {TIER: tier, "role": requested},
        dimension_sets=[[TIER], [TIER, "role"]],
        properties={"served_by": served_by, "status": status},
    )


def monitor_emf_line(namespace: str, tier: str, accuracy: float | None, drift: float | None) -> str | None:
    """The monitor's latest window as the tier's `accuracy` and `drift` (None when it measured neither)."""
    values = {k: v for k, v in ((ACCURACY, accuracy), (DRIFT, drift)) if v is not None}
    return emf_line(namespace, values, {TIER: tier}) if values else None


def put_metrics(config: Config, values: dict[str, float], dimensions: dict[str, str]) -> None:
    """Publish values directly (PutMetricData): for what runs outside a job's log, e.g. costs."""
    from srl_rlvr.cloud.session import client

    dims = [{"Name": k, "Value": v} for k, v in sorted(dimensions.items())]
    client("cloudwatch", config.aws.region).put_metric_data(
        Namespace=config.aws.namespace,
        MetricData=[{"MetricName": k, "Value": float(v), "Dimensions": dims} for k, v in values.items()],
    )


def alarm_specs(config: Config) -> list[dict[str, Any]]:
    """PutMetricAlarm arguments: a failed cascade, and per tier an accuracy drop, drift and serving
    latency; the estimated monthly charges above the budget."""
    aws = config.aws
    actions = [aws.notification_topic_arn] if aws.notification_topic_arn else []

    def alarm(
        name: str,
        metric: str,
        namespace: str,
        dims: dict[str, str],
        op: str,
        threshold: float,
        statistic: str = "Average",
        why: str = "",
        period: int = 3600,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "AlarmName": f"{aws.prefix}-{name}",
            "AlarmDescription": why,
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
            "Period": period,
            "EvaluationPeriods": 1,
            "Threshold": threshold,
            "ComparisonOperator": op,
            "TreatMissingData": "notBreaching",
            "AlarmActions": actions,
        }
        if statistic.startswith("p"):
            spec["ExtendedStatistic"] = statistic
        else:
            spec["Statistic"] = statistic
        return spec

    region = aws.region or "us-east-1"
    machine = f"arn:aws:states:{region}:{{account}}:stateMachine:{aws.state_machine}"
    specs = [
        alarm(
            "cascade-failed",
            "ExecutionsFailed",
            "AWS/States",
            {"StateMachineArn": machine},
            "GreaterThanOrEqualToThreshold",
            1,
            "Sum",
            "the nightly cascade failed; production unchanged",
        ),
        alarm(
            "estimated-charges",
            "EstimatedCharges",
            "AWS/Billing",
            {"Currency": "USD"},
            "GreaterThanThreshold",
            aws.monthly_budget_usd,
            "Maximum",
            "monthly charges above the budget",
            period=21600,
        ),
    ]
    for tier in TIERS:
        specs += [
            alarm(
                f"{tier}-accuracy-drop",
                ACCURACY,
                aws.namespace,
                {TIER: tier},
                "LessThanThreshold",
                aws.min_accuracy,
                why=f"{tier}: accuracy in production (monitor's verified outcomes) below aws.min_accuracy",
            ),
            alarm(
                f"{tier}-drift",
                DRIFT,
                aws.namespace,
                {TIER: tier},
                "GreaterThanThreshold",
                aws.max_drift,
                "Maximum",
                f"{tier}: production inputs drifted",
            ),
            alarm(
                f"{tier}-latency",
                LATENCY,
                aws.namespace,
                {TIER: tier},
                "GreaterThanThreshold",
                aws.max_latency_ms,
                "p90",
                f"{tier}: serving p90 latency",
                period=300,
            ),
        ]
    return specs


def dashboard_body(config: Config) -> dict[str, Any]:
    """Three rows: training (loss, reward), cost (training cost per tier, estimated charges),
    performance (accuracy, drift, latency) per tier."""
    ns, region = config.aws.namespace, config.aws.region or "us-east-1"

    def widget(title: str, metrics: list[list[Any]], y: int, x: int, stat: str = "Average") -> dict[str, Any]:
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 8,
            "height": 6,
            "properties": {"title": title, "region": region, "stat": stat, "period": 300, "metrics": metrics},
        }

    def per_tier(metric: str) -> list[list[Any]]:
        return [[ns, metric, TIER, tier] for tier in TIERS]

    return {
        "widgets": [
            widget("training: loss", per_tier("loss"), 0, 0),
            widget("training: reward", per_tier("reward"), 0, 8),
            widget("training: val reward", per_tier("val_reward"), 0, 16),
            widget("cost: training USD per tier", per_tier("training_cost_usd"), 6, 0, "Sum"),
            widget(
                "cost: estimated charges",
                [["AWS/Billing", "EstimatedCharges", "Currency", "USD"]],
                6,
                8,
                "Maximum",
            ),
            widget("performance: accuracy", per_tier(ACCURACY), 12, 0),
            widget("performance: drift", per_tier(DRIFT), 12, 8, "Maximum"),
            widget("performance: p90 latency ms", per_tier(LATENCY), 12, 16, "p90"),
        ]
    }


def budget_spec(config: Config) -> dict[str, Any]:
    """CreateBudget's Budget and NotificationsWithSubscribers: a monthly cost limit, alerting at
    budget_alert_percent of actual and at 100 % of forecast spend."""
    aws = config.aws
    subscribers = [{"SubscriptionType": "SNS", "Address": aws.notification_topic_arn}] * bool(
        aws.notification_topic_arn
    ) + [{"SubscriptionType": "EMAIL", "Address": aws.budget_email}] * bool(aws.budget_email)

    def notify(kind: str, percent: float) -> dict[str, Any]:
        return {
            "Notification": {
                "NotificationType": kind,
                "ComparisonOperator": "GREATER_THAN",
                "Threshold": percent,
                "ThresholdType": "PERCENTAGE",
            },
            "Subscribers": subscribers,
        }

    return {
        "Budget": {
            "BudgetName": f"{aws.prefix}-monthly",
            "BudgetLimit": {"Amount": f"{aws.monthly_budget_usd:.2f}", "Unit": "USD"},
            "TimeUnit": "MONTHLY",
            "BudgetType": "COST",
        },
        "NotificationsWithSubscribers": (
            [notify("ACTUAL", aws.budget_alert_percent), notify("FORECASTED", 100.0)] if subscribers else []
        ),
    }


def deploy_monitoring(config: Config) -> list[str]:
    """Create or update the alarms, the dashboard and the budget; return what was written."""
    from srl_rlvr.cloud.session import client, error_code

    region = config.aws.region
    account = client("sts", region).get_caller_identity()["Account"]
    cloudwatch = client("cloudwatch", region)
    written = []
    for spec in alarm_specs(config):
        for dim in spec["Dimensions"]:
            dim["Value"] = dim["Value"].replace("{account}", account)
        cloudwatch.put_metric_alarm(**spec)
        written.append(f"alarm {spec['AlarmName']}")
    name = f"{config.aws.prefix}-training-cost-performance"
    cloudwatch.put_dashboard(DashboardName=name, DashboardBody=json.dumps(dashboard_body(config)))
    written.append(f"dashboard {name}")
    budgets, spec = client("budgets", region), budget_spec(config)
    try:
        budgets.create_budget(AccountId=account, **spec)
    except Exception as e:
        if error_code(e) != "DuplicateRecordException":
            raise
        budgets.update_budget(AccountId=account, NewBudget=spec["Budget"])
    written.append(
        f"budget {spec['Budget']['BudgetName']} ({len(spec['NotificationsWithSubscribers'])} alerts)"
    )
    return written


def record_training_cost(config: Config, job: dict[str, Any], tier: str, version: str | None) -> float | None:
    """The job's measured cost (sagemaker_job.training_cost), published as the tier's
    `training_cost_usd` metric and, given a `registry:NAME/VERSION`, tagged on that version."""
    from srl_rlvr.cloud.sagemaker_job import tier_settings, training_cost

    cost = training_cost(job, tier_settings(config, tier).price_per_hour)
    if cost is None:
        return None
    put_metrics(config, {"training_cost_usd": cost}, {"tier": tier})
    if version:
        from srl_rlvr.tracking.registry import resolve, set_version_tags

        found = resolve(version)
        set_version_tags(
            found.name,
            found.version,
            {
                "training_cost_usd": f"{cost:.2f}",
                "training_job": job["TrainingJobName"],
                "billable_seconds": str(job["BillableTimeInSeconds"]),
                "instance": f"{job['ResourceConfig']['InstanceCount']} x {job['ResourceConfig']['InstanceType']}",
            },
        )
    return cost
