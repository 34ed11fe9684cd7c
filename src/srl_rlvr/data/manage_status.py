"""The management layer's state as people read it: per model its last monitor verdict, queued and
running jobs, last promotion or rollback and month's spend; when each schedule runs next; the last
discovery run and the cost-benefit runs it proposes.

One read-only view for `manage status` and the server's /admin/manage alike: it reads the tables
alone (never the management config), so the server shows it from the database URL, and it sits on
this floor so the server need not import the management layer to show it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import and_, create_engine, inspect, make_url, or_, select
from sqlalchemy.engine import Engine

from srl_rlvr.data.manage_tables import DISCOVERIES, JOBS, SCHEDULES, VERDICTS, utc

JOB_TIMES = ("lease_expires", "created", "started", "finished")


def month_of(now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the calendar month (UTC) `now` falls in."""
    now = now.astimezone(timezone.utc)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


def spend(engine: Engine, model: str, start: datetime, end: datetime) -> float:
    """USD of the model's jobs that finished (succeeded or failed) in [start, end)."""
    with engine.connect() as connection:
        costs = connection.execute(
            select(JOBS.c.cost_usd).where(
                and_(
                    JOBS.c.model == model,
                    JOBS.c.finished >= start,
                    JOBS.c.finished < end,
                    or_(JOBS.c.state == "succeeded", JOBS.c.state == "failed"),
                )
            )
        ).scalars()
        return float(sum(c or 0.0 for c in costs))


def _iso(value: datetime | None) -> str | None:
    value = utc(value)
    return None if value is None else value.isoformat()


def _job(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "key": row["key"],
        "state": row["state"],
        "attempts": row["attempts"],
        **{name: _iso(row[name]) for name in JOB_TIMES},
        "outcome": row["outcome"],
        "cost_usd": row["cost_usd"],
    }


def _last_discovery(engine: Engine) -> dict[str, Any] | None:
    with engine.connect() as connection:
        row = (
            connection.execute(select(DISCOVERIES).order_by(DISCOVERIES.c.id.desc()).limit(1))
            .mappings()
            .first()
        )
    if row is None:
        return None
    return {
        "time": _iso(row["time"]),
        "source": row["source"],
        "findings": row["findings"],
        "new": row["new"] or [],
        "proposed_costbenefit": row["proposals"] or [],
        "error": row["error"],
    }


def status(engine: Engine, now: datetime) -> dict[str, Any]:
    with engine.connect() as connection:
        every = [dict(r) for r in connection.execute(select(JOBS).order_by(JOBS.c.id)).mappings()]
        found = {r["model"]: dict(r) for r in connection.execute(select(VERDICTS)).mappings()}
        times = connection.execute(select(SCHEDULES)).mappings().all()
    start, end = month_of(now)
    next_runs = {s["name"]: _iso(s["next_run"]) for s in times}
    models: dict[str, dict[str, Any]] = {}
    for name in sorted(set(found) | {j["model"] for j in every}):
        mine = [j for j in every if j["model"] == name]
        verdict = found.get(name)
        deployments = [
            j
            for j in mine
            if j["kind"] == "retrain" and j["state"] == "succeeded" and j["result"] is not None
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
            "queued": [_job(j) for j in mine if j["state"] == "queued"],
            "running": [_job(j) for j in mine if j["state"] == "running"],
            "last_retrain": None
            if last is None
            else {
                "finished": _iso(last["finished"]),
                "deployed": last["outcome"],
                "candidate": last["result"].get("candidate"),
            },
            "failed": [_job(j) for j in mine if j["state"] == "failed"][-3:],
            "spend_usd_this_month": spend(engine, name, start, end),
            # every model is monitored on one schedule; distillation runs only for models with tiers
            "next_monitor": next_runs.get("monitor"),
        }
    return {
        "now": now.isoformat(),
        "models": models,
        "schedules": {
            s["name"]: {"last_run": _iso(s["last_run"]), "next_run": _iso(s["next_run"])} for s in times
        },
        "discovery": _last_discovery(engine),
    }


def read_status(url: str, now: datetime) -> dict[str, Any]:
    """The view from a database URL, creating nothing there: empty while no management layer has
    written to it (no file, no tables)."""
    empty = {"now": now.isoformat(), "models": {}, "schedules": {}, "discovery": None}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return empty  # connecting would create the file
    engine = create_engine(url)
    try:
        return status(engine, now) if inspect(engine).has_table(JOBS.name) else empty
    finally:
        engine.dispose()
