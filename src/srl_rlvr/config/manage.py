"""`manage:`: the always-on layer's models, schedules, job queue, alerts and training costs."""

from __future__ import annotations

from pydantic import Field, field_validator

from srl_rlvr.config.cloud import TierName
from srl_rlvr.config.section import Section


class ManagedModel(Section):
    """One registered model the management layer looks after, beyond what every model gets."""

    overrides: list[str] = Field(
        default_factory=list,
        description="Dotted overrides of this config for this model's monitor, retrain and distillation "
        "(feedback.role=..., task.name=..., feedback.window_hours=...): each model has its own window, "
        "criteria and task; registry.model_name is set to the model's name.",
    )
    monthly_budget_usd: float | None = Field(
        None,
        gt=0,
        description="Training spend per calendar month (UTC) that alerts at manage.budget_thresholds; "
        "None: no budget, spend is still counted.",
    )
    distill_tiers: list[TierName] = Field(
        default_factory=list,
        description="The nightly distillation cascade (`distill --cascade ... --since last`), larger "
        "tiers first; empty: this model has none.",
    )


class ManageConfig(Section):
    """`srl-rlvr manage`: the always-on layer that monitors every production model, queues and runs
    retraining and distillation, alerts people and counts what training costs (manage/)."""

    db: str | None = Field(
        None,
        description="SQLAlchemy URL of the schedule, job queue and alert state; None: the records store "
        "(feedback.store), so one database holds production and what is done about it.",
    )
    models: dict[str, ManagedModel] = Field(
        default_factory=dict,
        description="Per registered model: overrides, budget, distillation tiers. Every model with a "
        "production alias is monitored, named here or not; a name here that the registry lacks is an error.",
    )
    only_listed: bool = Field(
        False,
        description="Watch only the models named in manage.models: for a registry several teams share, "
        "each with its own management layer. False: every model with a production alias.",
    )
    monitor_cron: str = Field(
        "*/15 * * * *",
        description="When every production model is monitored (crontab, UTC): a window of hours moves "
        "little in 15 minutes, and a due retrain waits no longer than that.",
    )
    distill_cron: str = Field(
        "0 3 * * *",
        description="When the distillation cascades run (crontab, UTC): nightly, when traffic and "
        "devices are quiet.",
    )
    tick_seconds: float = Field(
        60.0,
        gt=0,
        description="`manage serve` runs one pass this often: finer than any cron field (a minute).",
    )
    jobs_per_tick: int = Field(
        1,
        ge=0,
        description="Queued jobs one pass runs (one after another, one device at a time): a pass stays "
        "short enough that the next schedule is not missed by much; the queue keeps the rest.",
    )
    lease_s: float = Field(
        6 * 3600.0,
        gt=0,
        description="A running job's lease: longer than any job should take. A job whose lease expired "
        "(its process was killed) is queued again, or failed after max_attempts.",
    )
    max_attempts: int = Field(
        2, ge=1, description="Starts a job gets before a lost lease fails it: one retry after a kill."
    )
    device: str = Field(
        "cpu", description="The device type jobs run on here: the key into prices_usd_per_hour."
    )
    device_count: int = Field(1, ge=1, description="Devices a job holds: device-seconds = seconds x this.")
    prices_usd_per_hour: dict[str, float] = Field(
        default_factory=lambda: {"cpu": 0.05, "nvidia-a10g": 1.21, "nvidia-l4": 0.98, "nvidia-h100": 3.9},
        description="USD per device-hour by device type, on-demand list prices at the time of writing "
        "(override with yours): training cost = device-seconds x price / 3600.",
    )
    budget_thresholds: list[float] = Field(
        default_factory=lambda: [0.8, 1.0],
        description="Alert when a model's month's spend reaches these shares of its budget: 0.8 leaves "
        "time to act, 1.0 says it is spent. Each alerts once a month.",
    )
    webhook_url: str | None = Field(
        None,
        description="Slack-compatible incoming webhook (JSON {text: ...}), any URL; None: alerts are only "
        "logged and counted in the metrics. An unreachable webhook is one logged line, never a stop.",
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="A slow webhook must not hold the pass for long.")
    metrics_port: int = Field(
        9109, ge=0, le=65535, description="`manage serve` exposes Prometheus metrics here (0: off)."
    )
    discovery: bool = Field(
        False,
        description="Run `discover` every model_selection.update_frequency_days: findings into "
        "OUTPUT_DIR/discover, an alert per new candidate, its proposed costbenefit in `manage status`. "
        "Off by default: it asks the Hugging Face Hub, which a closed network cannot reach.",
    )
    discovery_snapshot: str | None = Field(
        None,
        description="Judge this Hub snapshot file (hub-snapshot.json, what an online `discover` saves) "
        "instead of asking the Hub: for hosts without internet and for tests. None: the Hub.",
    )

    @field_validator("monitor_cron", "distill_cron")
    @classmethod
    def _cron(cls, expression: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(expression, timezone="UTC")
        except ValueError as e:
            raise ValueError(f"bad cron expression {expression!r} ({e}); e.g. '*/15 * * * *'") from None
        return expression

    @field_validator("budget_thresholds")
    @classmethod
    def _shares(cls, shares: list[float]) -> list[float]:
        if any(s <= 0 for s in shares):
            raise ValueError("each threshold is a share of the budget above 0 (0.8 is 80 %)")
        return sorted(shares)
