"""Production records: each served request with its answer, and the feedback users send about it.

SQLAlchemy Core over any database URL: a SQLite file by default, Postgres or another server by
config. Text arrives already redacted by the guardrails, and a key is stored by its id, never the key
itself. Writes are buffered and flushed in one transaction; when the store is locked or full the
flush raises a one-line `StoreError` and keeps every pending row for the next flush, so nothing
recorded is lost to a busy database. A retention limit keeps the newest `max_records` requests; their
feedback goes with them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from srl_rlvr.errors import UserError

METADATA = MetaData()
REQUESTS = Table(
    "requests",
    METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # arrival order, for retention
    Column("request_id", String(64), unique=True, nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("key_id", String(128), nullable=False),
    Column("model", String(256), nullable=False),  # the role or model the client asked for
    Column("served_by", String(256), nullable=False),  # the model version that answered
    Column("prompt", Text, nullable=False),
    Column("completion", Text, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("outcome", Float, nullable=True),  # the task's own check of the answer, where it has one
    Column("refused", Boolean, nullable=False),
)
FEEDBACK = Table(
    "feedback",
    METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), ForeignKey("requests.request_id", ondelete="CASCADE"), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("key_id", String(128), nullable=False),
    Column("rating", Integer, nullable=False),  # -1 bad, 0 neutral, 1 good
    Column("correction", Text, nullable=True),
)


class StoreError(UserError):
    """The record store cannot be written or read (locked, full, unreachable) or was asked for
    something it does not hold."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Record:
    request_id: str
    key_id: str
    model: str
    served_by: str
    prompt: str
    completion: str
    latency_ms: float
    outcome: float | None = None
    refused: bool = False
    time: datetime = field(default_factory=_now)


@dataclass(frozen=True)
class Feedback:
    request_id: str
    rating: int
    correction: str | None = None
    key_id: str = "-"
    time: datetime = field(default_factory=_now)


class RecordStore:
    def __init__(self, url: str, max_records: int = 100_000, busy_timeout_s: float = 5.0) -> None:
        """`url`: any SQLAlchemy URL (`sqlite:///records.db`); `busy_timeout_s`: how long a write waits
        for a lock another writer holds before the flush fails and keeps its rows."""
        if max_records < 1:
            raise StoreError(f"max_records must be at least 1, got {max_records}")
        self.url, self.max_records = url, max_records
        connect = {"timeout": busy_timeout_s} if url.startswith("sqlite") else {}
        self.engine = create_engine(url, connect_args=connect)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_foreign_keys)
        self.pending: list[Record] = []
        try:
            METADATA.create_all(self.engine)
        except OperationalError as e:
            raise StoreError(f"record store {url}: {_first_line(e)}") from None

    def add(self, record: Record) -> None:
        """Buffer one served request; `flush` writes it."""
        self.pending.append(record)

    def flush(self) -> int:
        """Write the buffered requests in one transaction and apply the retention limit; the number
        written. On a locked or full store: StoreError, and the rows stay buffered for the next flush."""
        if not self.pending:
            return 0
        rows = [asdict(r) for r in self.pending]
        try:
            with self.engine.begin() as db:
                db.execute(insert(REQUESTS), rows)
                total = db.execute(select(func.count()).select_from(REQUESTS)).scalar_one()
                if total > self.max_records:
                    cutoff = (
                        select(REQUESTS.c.seq)
                        .order_by(REQUESTS.c.seq.desc())
                        .offset(self.max_records - 1)
                        .limit(1)
                        .scalar_subquery()
                    )
                    db.execute(delete(REQUESTS).where(REQUESTS.c.seq < cutoff))
        except OperationalError as e:
            raise StoreError(
                f"record store {self.url}: {_first_line(e)}; {len(rows)} records kept for the next flush"
            ) from None
        written, self.pending = len(rows), []
        return written

    def add_feedback(self, feedback: Feedback) -> None:
        """Store a rating (and optional correction) of a recorded request."""
        if feedback.rating not in (-1, 0, 1):
            raise StoreError(f"rating must be -1, 0 or 1, got {feedback.rating}")
        self.flush()  # the request it rates may still be in the buffer
        try:
            with self.engine.begin() as db:
                db.execute(insert(FEEDBACK), [asdict(feedback)])
        except IntegrityError:
            raise StoreError(f"no recorded request '{feedback.request_id}' to give feedback on") from None
        except OperationalError as e:
            raise StoreError(f"record store {self.url}: {_first_line(e)}") from None

    def records(self, model: str | None = None) -> list[Record]:
        """The stored requests in arrival order, optionally of one requested role or model."""
        query = select(*[REQUESTS.c[k] for k in Record.__dataclass_fields__]).order_by(REQUESTS.c.seq)
        if model is not None:
            query = query.where(REQUESTS.c.model == model)
        with self.engine.connect() as db:
            return [Record(**row._mapping) for row in db.execute(query)]

    def feedback(self) -> list[Feedback]:
        query = select(*[FEEDBACK.c[k] for k in Feedback.__dataclass_fields__]).order_by(FEEDBACK.c.seq)
        with self.engine.connect() as db:
            return [Feedback(**row._mapping) for row in db.execute(query)]


def _sqlite_foreign_keys(connection: object, _: object) -> None:
    """SQLite checks foreign keys (feedback on an unknown request, cascading deletes) only when asked."""
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _first_line(error: Exception) -> str:
    return str(getattr(error, "orig", error)).strip().splitlines()[0]
