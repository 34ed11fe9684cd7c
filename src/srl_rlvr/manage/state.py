"""Where the management layer keeps what must survive a restart: when each schedule last ran, the
job queue, every model's last monitor verdict, the alerts already sent and the discovery runs.

SQLAlchemy Core over the records store's URL by default (any SQLAlchemy URL works), so the server's
records and what was done about them live in one database and one backup. Times are stored in UTC;
every function takes `now` from its caller, never from the wall clock, so a pass can be replayed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import create_engine, insert, select, update
from sqlalchemy.engine import Engine

from srl_rlvr.data.manage_tables import (  # noqa: F401  (re-exported: manage's modules import them here)
    ALERTS,
    DISCOVERIES,
    JOBS,
    METADATA,
    SCHEDULES,
    VERDICTS,
    utc,
)


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
