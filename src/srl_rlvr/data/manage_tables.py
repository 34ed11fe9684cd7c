"""The management layer's tables: when each schedule last ran, the job queue, every model's last
monitor verdict, the alerts already sent and each discovery run.

Defined here, below both `manage` (which writes them) and the server (whose /admin/manage reads
them), so the two read one schema without the server importing the management layer. SQLAlchemy
Core, any SQLAlchemy URL; times are stored in UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone

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
)

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
    # job_failed, promoted, rolled_back, drift, budget, discovered
    Column("kind", String(32), nullable=False),
    Column("model", String(256), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("text", Text, nullable=False),
    Column("delivered", Integer, nullable=False),  # reached the webhook
    UniqueConstraint("key", name="manage_alerts_key"),
)
DISCOVERIES = Table(
    "manage_discoveries",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("source", Text, nullable=True),  # the Hub endpoint or the snapshot file
    Column("findings", Text, nullable=True),  # discovered.yaml
    Column("new", JSON, nullable=True),  # ids that pass the filter and the catalog lacks
    Column("proposals", JSON, nullable=True),  # the costbenefit commands proposed for them
    Column("error", Text, nullable=True),  # why the run found nothing (the Hub unreachable)
)


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)
