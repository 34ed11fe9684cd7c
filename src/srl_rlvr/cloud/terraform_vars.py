"""The run config's AWS side as Terraform variables (`srl-rlvr aws render`), so deploy/terraform
builds exactly what the config describes: one source for the bucket, the tiers, the budget, the
state machine, the alarms and the dashboard.

ARNs Terraform itself creates (the roles, the image, the alert topic) are written as placeholders
when the config does not name them yet; the state-machine module fills them in.
"""

from __future__ import annotations

import json
from typing import Any

from srl_rlvr.cloud.cloudwatch import alarm_specs, dashboard_body
from srl_rlvr.cloud.state_machine import definition
from srl_rlvr.config import Config
from srl_rlvr.errors import CloudError

PLACEHOLDERS = {
    "role_arn": "@@SAGEMAKER_ROLE_ARN@@",
    "image_uri": "@@IMAGE_URI@@",
    "notification_topic_arn": "@@ALERT_TOPIC_ARN@@",
}
TIER_KEYS = (
    "instance_type",
    "instance_count",
    "spot",
    "on_demand_fallback",
    "max_run_hours",
    "max_wait_hours",
    "checkpoint_minutes",
    "price_per_hour",
)


def terraform_variables(config: Config, data_uri: str | None = None) -> dict[str, Any]:
    aws = config.aws
    if not aws.bucket:
        raise CloudError("aws.bucket is not set: Terraform creates the bucket the config names")
    filled = {k: v for k, v in PLACEHOLDERS.items() if not getattr(aws, k)}
    # the state machine's own role is Terraform's to attach; the definition does not name it
    resolved = config.model_copy(update={"aws": aws.model_copy(update=filled)})
    tiers = {
        t: getattr(aws.tiers, t).model_dump(include=set(TIER_KEYS)) for t in ("gold", "silver", "bronze")
    }
    return {
        "region": aws.region or "us-east-1",
        "bucket": aws.bucket,
        "prefix": aws.prefix,
        "tiers": tiers,
        "state_machine_name": aws.state_machine,
        "state_machine_definition": json.dumps(definition(resolved, data_uri)),
        "alarms": alarm_specs(resolved),
        "dashboard_body": json.dumps(dashboard_body(config)),
        "monthly_budget_usd": aws.monthly_budget_usd,
        "budget_alert_percent": aws.budget_alert_percent,
        "alert_email": aws.budget_email or "",
    }
