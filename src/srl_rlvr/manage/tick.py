"""One pass of the management layer: what a cron line, a systemd timer or `manage serve` calls.

A pass (1) fails or re-queues jobs whose process died holding them, (2) when the monitor schedule is
due, runs `monitor` for every production model and queues a retrain for each one that is due,
(3) when the distillation schedule is due, queues each model's cascade, runs discovery when
`model_selection.update_frequency_days` have passed (`manage.discovery`), (4) checks each model's
month's spend against its budget, and (5) runs up to `manage.jobs_per_tick` queued jobs, one device
at a time. Each step reads and writes its state in SQL, so a pass is idempotent: run twice with the
same clock, the second finds nothing new to do. The clock is the caller's `now`: a pass never reads
the wall clock to decide anything, which makes it testable and replayable.

A retrain job is `srl-rlvr retrain` itself: validation, the canary on `feedback.server` and the
promotion or rollback; a distillation job is `distill --cascade TIERS --since last`. A job that
raises is failed and alerted, and production is whatever the job left it: retrain moves the
production alias only after its gate and canary, so a job that fails before then changes nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Engine

from srl_rlvr.config import Config
from srl_rlvr.errors import UserError
from srl_rlvr.manage import jobs as queue
from srl_rlvr.manage.alerts import Alert, send
from srl_rlvr.manage.cost import job_cost, month_of, record_on_version
from srl_rlvr.manage.discovery import discover_if_due
from srl_rlvr.manage.fleet import model_config, production_models
from srl_rlvr.manage.schedule import is_due, next_fire, trigger
from srl_rlvr.manage.state import last_run, open_state, save_verdict, set_last_run

log = logging.getLogger(__name__)

MONITOR, DISTILL = "monitor", "distill"
AlertFn = Callable[[str, str, str, str], None]  # (key, kind, model, text)


@dataclass
class TickResult:
    now: datetime
    monitored: dict[str, str] = field(default_factory=dict)  # model -> verdict
    queued: list[str] = field(default_factory=list)  # job keys
    ran: list[str] = field(default_factory=list)  # "key: outcome"
    alerts: list[str] = field(default_factory=list)
    discovered: list[str] | None = None  # new candidates' ids when discovery ran; None: not due


def state_url(config: Config) -> str:
    return config.manage.db or config.feedback.store


def process_owner() -> str:
    """Who holds a lease: host, process and a nonce (a restarted process with the same pid is another)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def tick(config: Config, now: datetime, owner: str | None = None) -> TickResult:
    """One idempotent pass at time `now` (see the module docstring)."""
    now = now.astimezone(timezone.utc)
    engine = open_state(state_url(config))
    owner = owner or process_owner()
    result = TickResult(now)
    m = config.manage

    def alert(key: str, kind: str, model: str, text: str) -> None:
        if send(engine, Alert(key, kind, model, text), now, m.webhook_url, m.webhook_timeout_s):
            result.alerts.append(f"{kind}: {text}")

    for job in queue.expire_leases(engine, now, m.max_attempts):
        alert(
            f"job:{job.id}:failed",
            "job_failed",
            job.model,
            f"{job.kind} of {job.model} failed: {job.outcome}",
        )

    production = production_models(config)
    monitor_cron = trigger(m.monitor_cron)
    if is_due(monitor_cron, last_run(engine, MONITOR), now):
        for name, version in production.items():
            _monitor_one(config, engine, name, version.reference, now, result, alert)
        set_last_run(engine, MONITOR, now, next_fire(monitor_cron, now))

    distill_cron = trigger(m.distill_cron)
    if is_due(distill_cron, last_run(engine, DISTILL), now):
        for name in production:
            managed = m.models.get(name)
            if managed and managed.distill_tiers:
                _enqueue(engine, config, "distill", name, f"distill:{name}:{now:%Y-%m-%d}", now, result)
        set_last_run(engine, DISTILL, now, next_fire(distill_cron, now))

    if m.discovery:
        result.discovered = discover_if_due(config, engine, now, alert)

    start, end = month_of(now)
    for name, managed in m.models.items():
        if managed.monthly_budget_usd is None:
            continue
        spent = queue.spend(engine, name, start, end)
        for share in m.budget_thresholds:
            if spent >= share * managed.monthly_budget_usd:
                alert(
                    f"budget:{name}:{start:%Y-%m}:{share:g}",
                    "budget",
                    name,
                    f"{name} spent ${spent:.2f} on training in {start:%Y-%m}: {share:.0%} of its "
                    f"${managed.monthly_budget_usd:.2f} budget",
                )

    for _ in range(m.jobs_per_tick):
        job = queue.claim(engine, m.device, owner, now, m.lease_s)
        if job is None:
            break
        outcome = _run_job(config, engine, job, now, alert)
        result.ran.append(f"{job.key}: {outcome}")
    return result


def _enqueue(
    engine: Engine, config: Config, kind: str, model: str, key: str, now: datetime, result: TickResult
) -> None:
    if queue.enqueue(engine, kind, model, key, config.manage.device, now) is not None:
        result.queued.append(key)


def _monitor_one(
    config: Config,
    engine: Engine,
    name: str,
    production: str,
    now: datetime,
    result: TickResult,
    alert: AlertFn,
) -> None:
    from srl_rlvr.feedback.monitor import monitor

    try:
        found = monitor(model_config(config, name), now)
    except UserError as e:  # one model's broken store or config must not stop the others
        log.warning("monitor %s: %s", name, e)
        result.monitored[name] = f"not monitored: {e}"
        return
    latest = next((w for w in found.windows if w.model == "all"), None)
    drift = found.drift is not None and found.drift.holds
    save_verdict(
        engine,
        name,
        {
            "time": now,
            "production": production,
            "due": int(found.due),
            "drift": int(drift),
            "signals": found.signals,
            "outcome_rate": latest.outcome_rate if latest else None,
            "verdict": found.verdict,
        },
    )
    result.monitored[name] = found.verdict
    if drift:
        assert found.drift is not None
        alert(f"drift:{name}:{production}", "drift", name, f"input drift on {name}: {found.drift.detail}")
    if found.due:
        # once a day per production version: a retrain that was rejected may pass with tomorrow's data
        _enqueue(engine, config, "retrain", name, f"retrain:{name}:{production}:{now:%Y-%m-%d}", now, result)


def _run_job(config: Config, engine: Engine, job: queue.Job, now: datetime, alert: AlertFn) -> str:
    """Run a leased job to its end; its outcome in words. Never raises: a job's error is its outcome."""
    clock = time.perf_counter()
    succeeded, details, outcome = False, None, ""
    try:
        cfg = model_config(config, job.model)
        if job.kind == "retrain":
            succeeded, outcome, details = _retrain(cfg, job, alert)
        elif job.kind == "distill":
            succeeded, outcome, details = _distill(cfg, job)
        else:
            outcome = f"unknown job kind '{job.kind}'"
    except Exception as e:  # the loop outlives any one job; a bug of ours keeps its traceback in the log
        if not isinstance(e, UserError):
            log.exception("%s of %s", job.kind, job.model)
        outcome = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"
    device_seconds, usd = job_cost(config, time.perf_counter() - clock)
    for reference in (details or {}).get("registered", []):
        try:
            record_on_version(config, reference, device_seconds, usd)
        except Exception as e:  # a cost tag lost is not worth failing a trained model for
            log.warning("cost of %s not recorded on %s: %s", job.key, reference, e)
    if not queue.finish(
        engine,
        job,
        succeeded=succeeded,
        outcome=outcome,
        now=now,
        device_seconds=device_seconds,
        cost_usd=usd,
        result=details,
    ):
        log.warning("%s: its lease expired while it ran; its outcome (%s) is not recorded", job.key, outcome)
        return f"lease lost ({outcome})"
    if not succeeded:
        alert(f"job:{job.id}:failed", "job_failed", job.model, f"{job.kind} of {job.model} failed: {outcome}")
    return outcome


def _retrain(cfg: Config, job: queue.Job, alert: AlertFn) -> tuple[bool, str, dict[str, Any]]:
    from srl_rlvr.feedback.retrain import retrain

    result = retrain(cfg)
    details = {
        "production": result.production,
        "candidate": result.candidate,
        "deployed": result.deployed,
        "verdict": result.verdict,
        "run_dir": str(result.run_dir),
        "registered": [result.candidate] if result.candidate else [],
    }
    if result.promoted:
        alert(
            f"job:{job.id}:promoted",
            "promoted",
            job.model,
            f"{job.model}: {result.candidate} promoted to production over {result.production} ({result.verdict})",
        )
    else:
        kind = "rolled_back" if result.deployed.startswith("rolled back") else "rejected"
        alert(
            f"job:{job.id}:{kind}",
            kind,
            job.model,
            f"{job.model}: {result.candidate} not promoted, {result.deployed}: {result.verdict}; "
            f"production stays {result.production}",
        )
    return True, result.deployed, details


def _distill(cfg: Config, job: queue.Job) -> tuple[bool, str, dict[str, Any]]:
    from srl_rlvr.distill.run import cascade

    tiers = cfg.manage.models[job.model].distill_tiers
    results = cascade(cfg, list(tiers), since_last=True)
    registered = [r.registered for r in results if r.registered]
    words = [
        f"{r.tier}: {r.registered or r.skipped or 'not registered (quality below the teacher)'}"
        for r in results
    ]
    # a student below its teacher's quality is an outcome, not a failure: the cascade did its job
    return True, "; ".join(words), {"registered": registered}
