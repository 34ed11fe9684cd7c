"""`aws:`: SageMaker training tiers, the nightly cascade, CloudWatch metrics and alarms, the budget."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from srl_rlvr.config.section import Section

TierName = Literal["gold", "silver", "bronze"]
METRIC_NAMESPACE = "srl-rlvr"  # CloudWatch: the alarms and dashboards watch this namespace by default


class EmfOutput(Section):
    """Where CloudWatch embedded-metric-format (EMF) lines go: one JSON object a line, which the
    CloudWatch agent, Lambda and ECS (awslogs) turn into metrics without any API call."""

    to: str = Field(
        "stdout",
        description="'stdout' (what the CloudWatch agent, Lambda and ECS pick up) or a file to append to.",
    )
    tier: TierName = Field(
        description="The tier whose alarms watch these metrics: the `tier` dimension (aws.tiers)."
    )


class AwsTierConfig(Section):
    """One SageMaker training tier (`srl-rlvr aws train --tier`). Prices are approximate us-east-1
    SageMaker on-demand list prices at the time of writing: set your region's (the recorded training
    cost is billable seconds x instance count x this)."""

    instance_type: str = Field(description="SageMaker instance type, e.g. ml.g6.12xlarge.")
    instance_count: int = Field(1, gt=0, description="Nodes; above 1 the job runs under accelerate (FSDP).")
    spot: bool = Field(
        True,
        description="Managed spot training: up to ~70-90% cheaper; a reclaimed machine restarts the job, "
        "which resumes from the checkpoints SageMaker synced to S3.",
    )
    on_demand_fallback: bool = Field(
        False,
        description="Nightly cascade: when the spot job fails (no capacity within max_wait_hours), rerun it "
        "on-demand, so most runs stay on spot and none is lost.",
    )
    max_run_hours: float = Field(24.0, gt=0, description="Stop the job after this much training time.")
    max_wait_hours: float = Field(
        48.0,
        gt=0,
        description="Spot only: training time plus waiting for spot capacity; at least max_run_hours.",
    )
    checkpoint_minutes: float = Field(
        30.0,
        gt=0,
        description="Checkpoint this often (each training section's save_minutes); a spot reclaim loses "
        "at most this much work.",
    )
    volume_gb: int = Field(200, gt=0, description="Disk per node for the model, checkpoints and data.")
    strategy: Literal["ddp", "fsdp2"] = Field(
        "ddp",
        description="accelerate config on each node's GPUs (fsdp2 when the model does not fit one GPU).",
    )
    price_per_hour: float = Field(0.0, ge=0, description="USD per instance-hour, on-demand.")

    @model_validator(mode="after")
    def _wait_covers_run(self) -> AwsTierConfig:
        if self.spot and self.max_wait_hours < self.max_run_hours:
            raise ValueError(
                f"max_wait_hours ({self.max_wait_hours:g}) is shorter than max_run_hours "
                f"({self.max_run_hours:g}): a spot job's wait includes its run time"
            )
        return self


class GoldTier(AwsTierConfig):
    """4 x L4 (ml.g5.12xlarge: 4 x A10G, the plan's alternative), all spot: 3-8B models."""

    instance_type: str = "ml.g6.12xlarge"
    price_per_hour: float = Field(5.75, ge=0)


class SilverTier(AwsTierConfig):
    """One 8 x H100 node, spot first with an on-demand fallback (the plan's >= 80 % spot): 7-13B models."""

    instance_type: str = "ml.p5.48xlarge"
    on_demand_fallback: bool = True
    price_per_hour: float = Field(113.07, ge=0)


class BronzeTier(AwsTierConfig):
    """Several 8 x H100 nodes, the model sharded with FSDP: the large teacher."""

    instance_type: str = "ml.p5.48xlarge"
    instance_count: int = Field(3, gt=0)
    strategy: Literal["ddp", "fsdp2"] = "fsdp2"
    price_per_hour: float = Field(113.07, ge=0)


class AwsTiers(Section):
    gold: GoldTier = Field(default_factory=GoldTier)
    silver: SilverTier = Field(default_factory=SilverTier)
    bronze: BronzeTier = Field(default_factory=BronzeTier)


class AwsConfig(Section):
    """`srl-rlvr aws ...`: SageMaker training, the nightly cascade (Step Functions), CloudWatch, budget."""

    region: str | None = Field(
        None, description="AWS region; unset: the environment's (AWS_REGION, profile)."
    )
    bucket: str | None = Field(None, description="S3 bucket for datasets, checkpoints, models and reports.")
    prefix: str = Field("srl-rlvr", description="Key prefix inside the bucket.")
    role_arn: str | None = Field(
        None, description="SageMaker execution role (Terraform output sagemaker_role_arn)."
    )
    image_uri: str | None = Field(None, description="ECR image built from the repository's Dockerfile.")
    tiers: AwsTiers = Field(default_factory=AwsTiers)
    processing_instance_type: str = Field("ml.m5.xlarge", description="Data validation and registry steps.")
    state_machine: str = Field("srl-rlvr-nightly-cascade", description="Step Functions state machine name.")
    state_machine_role_arn: str | None = Field(None, description="Its role (Terraform output).")
    cascade: list[TierName] = Field(
        default_factory=lambda: ["bronze", "silver", "gold"],
        description="Nightly distillation order: each tier's student teaches the next.",
    )
    notification_topic_arn: str | None = Field(None, description="SNS topic told of failures and alarms.")
    namespace: str = Field(METRIC_NAMESPACE, description="CloudWatch metric namespace.")
    monthly_budget_usd: float = Field(5000.0, gt=0, description="AWS Budgets monthly cost limit.")
    budget_alert_percent: float = Field(80.0, gt=0, description="Budget alert at this share of the limit.")
    budget_email: str | None = Field(
        None, description="Also e-mail budget alerts here (besides the SNS topic)."
    )
    min_accuracy: float = Field(0.5, ge=0, le=1, description="Alarm when a tier's evaluation drops below.")
    max_drift: float = Field(0.2, ge=0, description="Alarm when the feedback monitor's drift exceeds this.")
    max_latency_ms: float = Field(500.0, gt=0, description="Alarm when serving p90 latency exceeds this.")
