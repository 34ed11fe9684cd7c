"""Where the management layer keeps what must survive a restart: when each schedule last ran, the
job queue, every model's last monitor verdict and the alerts already sent.

SQLAlchemy Core over the records store's URL by default (any SQLAlchemy URL works), so the server's
records and what was done about them live in one database and one backup. Times are stored in UTC;
every function takes `now` from its caller, never from the wall clock, so a pass can be replayed.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

METADATA = MetaData()
SCHEDULES = Table(
    "manage_schedules",
    METADATA,
    Column("name", String(64), primary_key=True),
    Column("last_run", DateTime(timezone=True), nullable=False),
    Column("next_run", DateTime(timezone=True), nullable=True),  # for status pages that lack the config
)
JOBS = Table(
    "manage_jobs",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # retrain, distill
    Column("model", String(256), nullable=False),
    Column("key", String(512), nullable=False),  # what makes it the same job: enqueued once
    Column("state", String(16), nullable=False),  # queued, running, succeeded, failed
    Column("device", String(64), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("owner", String(128), nullable=True),  # the process holding the lease
    Column("lease_expires", DateTime(timezone=True), nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True), nullable=True),
    Column("finished", DateTime(timezone=True), nullable=True),
    Column("outcome", Text, nullable=True),  # in words: promoted, rejected, rolled back, the error
    Column("device_seconds", Float, nullable=True),
    Column("cost_usd", Float, nullable=True),
    Column("result", JSON, nullable=True),
    UniqueConstraint("key", name="manage_jobs_key"),
)
VERDICTS = Table(
    "manage_verdicts",
    METADATA,
    Column("model", String(256), primary_key=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("production", String(512), nullable=True),
    Column("due", Integer, nullable=False),
    Column("drift", Integer, nullable=False),
    Column("signals", Integer, nullable=False),
    Column("outcome_rate", Float, nullable=True),  # the latest window's verified-outcome rate
    Column("verdict", Text, nullable=False),
)
ALERTS = Table(
    "manage_alerts",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(512), nullable=False),  # the same alert is sent once
    Column("kind", String(32), nullable=False),  # job_failed, promoted, rolled_back, drift, budget
    Column("model", String(256), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("text", Text, nullable=False),
    Column("delivered", Integer, nullable=False),  # reached the webhook
    UniqueConstraint("key", name="manage_alerts_key"),
)


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def open_state(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    METADATA.create_all(engine)
    return engine


def last_run(engine: Engine, name: str) -> datetime | None:
    with engine.connect() as connection:
        return utc(connection.scalar(select(SCHEDULES.c.last_run).where(SCHEDULES.c.name == name)))


def set_last_run(engine: Engine, name: str, when: datetime, next_run: datetime | None) -> None:
    values = {"last_run": when, "next_run": next_run}
    with engine.begin() as connection:
        done = connection.execute(update(SCHEDULES).where(SCHEDULES.c.name == name).values(**values))
        if done.rowcount == 0:
            connection.execute(insert(SCHEDULES).values(name=name, **values))


def schedules(engine: Engine) -> dict[str, dict[str, datetime | None]]:
    with engine.connect() as connection:
        rows = connection.execute(select(SCHEDULES)).mappings().all()
    return {r["name"]: {"last_run": utc(r["last_run"]), "next_run": utc(r["next_run"])} for r in rows}


def save_verdict(engine: Engine, model: str, values: dict[str, Any]) -> None:
    with engine.begin() as connection:
        done = connection.execute(update(VERDICTS).where(VERDICTS.c.model == model).values(**values))
        if done.rowcount == 0:
            connection.execute(insert(VERDICTS).values(model=model, **values))


def verdicts(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(select(VERDICTS)).mappings().all()
    return {r["model"]: {**r, "time": utc(r["time"])} for r in rows}
