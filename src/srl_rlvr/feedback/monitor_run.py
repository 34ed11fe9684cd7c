"""What `srl-rlvr monitor` found, where a team watches it: an MLflow run per check (the criteria, the
latest window's rates, drift; the report's files) and, with `feedback.cloudwatch`, a CloudWatch metric
line. Both are the job's, not the CLI's, so a scheduler calling `monitor` from Python records the same."""

from __future__ import annotations

from pathlib import Path

from srl_rlvr.config import Config
from srl_rlvr.feedback.monitor import Monitoring
from srl_rlvr.tracking.runs import tracked_run


def monitor_metrics(found: Monitoring) -> dict[str, float]:
    """Each criterion as 0/1, whether retraining is due, the latest window's rates and the drift."""
    latest = next((w for w in found.windows if w.model == "all"), None)
    metrics = {f"criterion/{c.name.replace(' ', '_')}": float(c.holds) for c in found.criteria}
    metrics["retrain_due"] = float(found.due)
    if latest is not None:
        metrics.update(
            {
                "requests": latest.requests,
                "outcome_rate": latest.outcome_rate,
                "negative_rate": latest.negative_rate,
                "no_answer_rate": latest.no_answer_rate,
                "latency_p95_ms": latest.p95_ms,
            }
        )
    if found.drift is not None:
        metrics.update({"drift/psi": found.drift.psi, "drift/length_ks": found.drift.length_ks})
    return {k: v for k, v in metrics.items() if v is not None}


def record_monitoring(config: Config, found: Monitoring, report: Path) -> None:
    """Publish one check: the CloudWatch line when configured, and the MLflow run (stepped by the
    check's time, so a run's history reads as a time series)."""
    if config.feedback.cloudwatch is not None:
        from srl_rlvr.cloud.cloudwatch import monitor_emf_line, write_emf

        latest = next((w for w in found.windows if w.model == "all"), None)
        line = monitor_emf_line(
            config.aws.namespace,
            config.feedback.cloudwatch.tier,
            None if latest is None else latest.outcome_rate,
            None if found.drift is None else found.drift.psi,
        )
        if line is not None:
            write_emf(config.feedback.cloudwatch, line)
    with tracked_run(config, "monitor", config.feedback.report_dir) as tracking:
        if tracking:
            tracking.log_metrics(monitor_metrics(found), step=int(found.now.timestamp()))
            tracking.log_files(report.parent, ("monitor.md", "monitor.json", "monitor.png"))
