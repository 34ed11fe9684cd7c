"""Prometheus metrics of the management layer, read from the state database at each scrape.

Computed from SQL rather than counted in memory: passes may run in other processes (a cron line, a
systemd timer) than the one Prometheus scrapes, and a restart must not reset what was sent or spent.
deploy/prometheus/alerts.yml and the Grafana dashboard use these names; a test checks they agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from srl_rlvr.config import Config
from srl_rlvr.manage import jobs as queue
from srl_rlvr.manage.alerts import sent
from srl_rlvr.manage.cost import month_of
from srl_rlvr.manage.state import schedules, verdicts

METRICS = (
    "srl_rlvr_manage_jobs",
    "srl_rlvr_manage_retrain_due",
    "srl_rlvr_manage_drift",
    "srl_rlvr_manage_outcome_rate",
    "srl_rlvr_manage_alerts_total",
    "srl_rlvr_manage_spend_usd",
    "srl_rlvr_manage_budget_usd",
    "srl_rlvr_manage_schedule_last_run_timestamp_seconds",
)


class ManageCollector(Collector):
    def __init__(self, engine: Engine, config: Config, clock: Callable[[], datetime]) -> None:
        self.engine, self.config, self.clock = engine, config, clock

    def collect(self) -> Iterator[Metric]:
        every = queue.jobs(self.engine)
        counts = Counter((j.kind, j.state) for j in every)
        jobs = GaugeMetricFamily("srl_rlvr_manage_jobs", "Jobs by kind and state.", labels=["kind", "state"])
        for kind in ("retrain", "distill"):
            for state in (queue.QUEUED, queue.RUNNING, queue.SUCCEEDED, queue.FAILED):
                jobs.add_metric([kind, state], counts[(kind, state)])
        yield jobs

        found = verdicts(self.engine)
        due = GaugeMetricFamily(
            "srl_rlvr_manage_retrain_due", "1: the last monitor found retraining due.", labels=["model"]
        )
        drift = GaugeMetricFamily(
            "srl_rlvr_manage_drift", "1: the last monitor found input drift.", labels=["model"]
        )
        rate = GaugeMetricFamily(
            "srl_rlvr_manage_outcome_rate", "Verified-outcome rate of the latest window.", labels=["model"]
        )
        for name, v in sorted(found.items()):
            due.add_metric([name], v["due"])
            drift.add_metric([name], v["drift"])
            if v["outcome_rate"] is not None:
                rate.add_metric([name], v["outcome_rate"])
        yield from (due, drift, rate)

        alerts = CounterMetricFamily(
            "srl_rlvr_manage_alerts", "Alerts raised, by kind and model.", labels=["kind", "model"]
        )
        for (kind, model), n in sorted(Counter((a["kind"], a["model"]) for a in sent(self.engine)).items()):
            alerts.add_metric([str(kind), str(model)], n)
        yield alerts

        start, end = month_of(self.clock())
        spend = GaugeMetricFamily(
            "srl_rlvr_manage_spend_usd", "Training spend this month (UTC).", labels=["model"]
        )
        budget = GaugeMetricFamily("srl_rlvr_manage_budget_usd", "Monthly training budget.", labels=["model"])
        for name in sorted({j.model for j in every} | set(self.config.manage.models)):
            spend.add_metric([name], queue.spend(self.engine, name, start, end))
            managed = self.config.manage.models.get(name)
            if managed and managed.monthly_budget_usd is not None:
                budget.add_metric([name], managed.monthly_budget_usd)
        yield from (spend, budget)

        last = GaugeMetricFamily(
            "srl_rlvr_manage_schedule_last_run_timestamp_seconds",
            "When each schedule last ran (a stale one means no pass runs).",
            labels=["schedule"],
        )
        for name, s in sorted(schedules(self.engine).items()):
            if s["last_run"] is not None:
                last.add_metric([name], s["last_run"].timestamp())
        yield last
