"""The job queue: retraining and distillation wait here, in SQL, until a device is free.

A job is enqueued once per key (the model, the production version it would replace, the night it is
for), so a pass that runs twice or a scheduler that fires twice queues nothing twice. A process that
starts a job takes a lease on it with an expiry, in one compare-and-set UPDATE: two processes can
never both start it, and a job whose process died (its lease ran out) is queued again, or failed once
it has had `max_attempts` starts. A job that raised is failed at once: the same inputs would fail
the same way. One device runs one job at a time: a job is not started while another holds a live
lease on its device.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from srl_rlvr.data.manage_status import spend  # noqa: F401  (one sum for the budget and status)
from srl_rlvr.manage.state import JOBS, utc

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"


@dataclass
class Job:
    id: int
    kind: str
    model: str
    key: str
    state: str
    device: str
    attempts: int
    owner: str | None
    lease_expires: datetime | None
    created: datetime
    started: datetime | None
    finished: datetime | None
    outcome: str | None
    device_seconds: float | None
    cost_usd: float | None
    result: dict[str, Any] | None


def _job(row: Any) -> Job:
    values = dict(row)
    for name in ("lease_expires", "created", "started", "finished"):
        values[name] = utc(values[name])
    return Job(**values)


def enqueue(engine: Engine, kind: str, model: str, key: str, device: str, now: datetime) -> Job | None:
    """Queue the job unless one with this key was ever queued; the new job, or None."""
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(JOBS).values(
                    kind=kind, model=model, key=key, state=QUEUED, device=device, attempts=0, created=now
                )
            )
    except IntegrityError:
        return None
    return job_by_key(engine, key)


def job_by_key(engine: Engine, key: str) -> Job | None:
    with engine.connect() as connection:
        row = connection.execute(select(JOBS).where(JOBS.c.key == key)).mappings().first()
    return None if row is None else _job(row)


def jobs(engine: Engine, state: str | None = None) -> list[Job]:
    query = select(JOBS).order_by(JOBS.c.id)
    if state is not None:
        query = query.where(JOBS.c.state == state)
    with engine.connect() as connection:
        return [_job(r) for r in connection.execute(query).mappings()]


def expire_leases(engine: Engine, now: datetime, max_attempts: int) -> list[Job]:
    """Jobs whose process died holding them: queued again, or failed after `max_attempts` starts.
    Returns those failed now (each deserves an alert)."""
    failed = []
    for job in jobs(engine, RUNNING):
        if job.lease_expires is None or job.lease_expires > now:
            continue
        last = job.attempts >= max_attempts
        values: dict[str, Any] = {"state": FAILED if last else QUEUED, "owner": None, "lease_expires": None}
        if last:
            values |= {
                "finished": now,
                "outcome": f"lease expired on attempt {job.attempts} of {max_attempts}: its process "
                "stopped before it finished",
            }
        with engine.begin() as connection:
            done = connection.execute(
                update(JOBS)
                .where(and_(JOBS.c.id == job.id, JOBS.c.state == RUNNING, JOBS.c.owner == job.owner))
                .values(**values)
            )
        if done.rowcount and last:
            failed.append(_job({**job.__dict__, **values}))
    return failed


def claim(engine: Engine, device: str, owner: str, now: datetime, lease_s: float) -> Job | None:
    """Lease the oldest queued job of `device` to `owner`, unless a job holds that device; or None."""
    with engine.connect() as connection:
        busy = connection.scalar(
            select(JOBS.c.id).where(
                and_(JOBS.c.device == device, JOBS.c.state == RUNNING, JOBS.c.lease_expires > now)
            )
        )
        if busy is not None:
            return None
        candidate = connection.scalar(
            select(JOBS.c.id)
            .where(and_(JOBS.c.device == device, JOBS.c.state == QUEUED))
            .order_by(JOBS.c.id)
            .limit(1)
        )
    if candidate is None:
        return None
    with engine.begin() as connection:
        taken = connection.execute(
            update(JOBS)
            .where(and_(JOBS.c.id == candidate, JOBS.c.state == QUEUED))
            .values(
                state=RUNNING,
                owner=owner,
                lease_expires=now + timedelta(seconds=lease_s),
                started=now,
                attempts=JOBS.c.attempts + 1,
            )
        )
    if taken.rowcount != 1:
        return None  # another process took it between the two statements
    with engine.connect() as connection:
        return _job(connection.execute(select(JOBS).where(JOBS.c.id == candidate)).mappings().one())


def finish(
    engine: Engine,
    job: Job,
    *,
    succeeded: bool,
    outcome: str,
    now: datetime,
    device_seconds: float | None = None,
    cost_usd: float | None = None,
    result: dict[str, Any] | None = None,
) -> bool:
    """Record the end of a job this owner still holds; False when its lease was lost meanwhile
    (another process may have started it again: this result is not the job's)."""
    with engine.begin() as connection:
        done = connection.execute(
            update(JOBS)
            .where(and_(JOBS.c.id == job.id, JOBS.c.state == RUNNING, JOBS.c.owner == job.owner))
            .values(
                state=SUCCEEDED if succeeded else FAILED,
                owner=None,
                lease_expires=None,
                finished=now,
                outcome=outcome,
                device_seconds=device_seconds,
                cost_usd=cost_usd,
                result=result,
            )
        )
    return done.rowcount == 1
