"""What `manage status` prints and the server's /admin/manage returns: per model, its last monitor
verdict, its queued and running jobs, its last promotion or rollback and its month's spend; and when
each schedule runs next. Read from the state database alone, so the server can show it without the
management config."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from srl_rlvr.manage import jobs as queue
from srl_rlvr.manage.cost import month_of
from srl_rlvr.manage.state import schedules, verdicts


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _job(job: queue.Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "key": job.key,
        "state": job.state,
        "attempts": job.attempts,
        "created": _iso(job.created),
        "started": _iso(job.started),
        "finished": _iso(job.finished),
        "lease_expires": _iso(job.lease_expires),
        "outcome": job.outcome,
        "cost_usd": job.cost_usd,
    }


def status(engine: Engine, now: datetime) -> dict[str, Any]:
    every = queue.jobs(engine)
    found = verdicts(engine)
    start, end = month_of(now)
    models: dict[str, dict[str, Any]] = {}
    for name in sorted(set(found) | {j.model for j in every}):
        mine = [j for j in every if j.model == name]
        verdict = found.get(name)
        deployments = [
            j for j in mine if j.kind == "retrain" and j.state == queue.SUCCEEDED and j.result is not None
        ]
        last = deployments[-1] if deployments else None
        models[name] = {
            "monitor": None
            if verdict is None
            else {
                "time": _iso(verdict["time"]),
                "production": verdict["production"],
                "due": bool(verdict["due"]),
                "drift": bool(verdict["drift"]),
                "outcome_rate": verdict["outcome_rate"],
                "verdict": verdict["verdict"],
            },
            "queued": [_job(j) for j in mine if j.state == queue.QUEUED],
            "running": [_job(j) for j in mine if j.state == queue.RUNNING],
            "last_retrain": None
            if last is None
            else {
                "finished": _iso(last.finished),
                "deployed": last.outcome,
                "candidate": last.result.get("candidate") if last.result else None,
            },
            "failed": [_job(j) for j in mine if j.state == queue.FAILED][-3:],
            "spend_usd_this_month": queue.spend(engine, name, start, end),
        }
    return {
        "now": now.isoformat(),
        "models": models,
        "schedules": {
            name: {"last_run": _iso(s["last_run"]), "next_run": _iso(s["next_run"])}
            for name, s in schedules(engine).items()
        },
    }
