"""Production records: each served request with its answer, and the feedback users send about it.

SQLAlchemy Core over any database URL: a SQLite file by default, Postgres or another server by
config. Text arrives already redacted by the guardrails, and a key is stored by its id, never the key
itself. Writes are buffered and flushed in one transaction; when the store is locked or full the
flush raises a one-line `StoreError` and keeps every pending row for the next flush, so nothing
recorded is lost to a busy database. The server's store (`journal=True`) also appends each row to a
journal file beside the database before the reply goes out, and replays it when it starts again: a
process killed while the database was locked loses no answered request. A retention limit keeps the newest `max_records` requests; their
feedback goes with them.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
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

log = logging.getLogger(__name__)

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
    Column("checked", String(16), nullable=True),  # what `outcome` checks: "answer" or only "format"
    Column("features", JSON, nullable=False),  # the problem's metadata: what monitoring slices by
    Column("status", String(16), nullable=False),  # ok, refused (output guardrails) or error (no model)
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
    checked: str | None = None
    features: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    time: datetime = field(default_factory=_now)


@dataclass(frozen=True)
class Feedback:
    request_id: str
    rating: int
    correction: str | None = None
    key_id: str = "-"
    time: datetime = field(default_factory=_now)


class RecordStore:
    def __init__(
        self, url: str, max_records: int = 100_000, busy_timeout_s: float = 5.0, journal: bool = False
    ) -> None:
        """`url`: any SQLAlchemy URL (`sqlite:///records.db`); `busy_timeout_s`: how long a write waits
        for a lock another writer holds before the flush fails and keeps its rows; `journal`: the one
        writer (the server) keeps unflushed rows in the journal file, which only it replays."""
        if max_records < 1:
            raise StoreError(f"max_records must be at least 1, got {max_records}")
        self.url, self.max_records, self.journal = url, max_records, journal
        connect = {"timeout": busy_timeout_s} if url.startswith("sqlite") else {}
        self.engine = create_engine(url, connect_args=connect)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_foreign_keys)
        self.pending: list[Record] = []
        self._lock = threading.Lock()  # the server flushes from worker threads
        self._journal_lock = threading.Lock()  # `pending` and the journal change together
        try:
            METADATA.create_all(self.engine)
        except OperationalError as e:
            raise StoreError(f"record store {url}: {_first_line(e)}") from None
        if journal:
            self._load_saved()

    def save_pending(self) -> Path:
        """Write the buffered rows to the journal file beside the database (a server stopping while
        the store is still locked); the next journaling RecordStore on that database loads them back."""
        path = self._pending_file()
        if not self.journal:  # a journal already holds them
            with path.open("a") as f:
                for record in self.pending:
                    f.write(_line(record))
        self.pending = []
        return path

    def _rewrite_journal(self) -> None:
        """With `_journal_lock` held: the journal holds exactly the rows not yet in the database."""
        path = self._pending_file()
        if not self.pending:
            path.unlink(missing_ok=True)
            return
        partial = path.with_suffix(".partial")
        partial.write_text("".join(_line(r) for r in self.pending))
        partial.replace(path)

    def _pending_file(self) -> Path:
        database = self.engine.url.database if self.url.startswith("sqlite") else None
        return Path(f"{database}.pending.jsonl" if database else "records.pending.jsonl")

    def _load_saved(self) -> None:
        path = self._pending_file()
        if not path.is_file():
            return
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                row["time"] = datetime.fromisoformat(row["time"])
                self.pending.append(Record(**row))
            except (ValueError, TypeError, KeyError):  # the line a kill cut short
                log.warning("%s: skipped a line that is not a whole record", path)
        try:
            self.pending = self._not_stored(self.pending)
            self.flush()
        except (StoreError, OperationalError) as e:  # still locked: they stay journaled, and pending
            log.warning("record store %s: %d journaled records wait for the next flush (%s)", self.url,
                        len(self.pending), _first_line(e))  # fmt: skip

    def add(self, record: Record) -> None:
        """Buffer one served request (and journal it); `flush` writes it. Text that is not Unicode (a
        lone surrogate) is made safe first: no driver could store it, and one such row must not stop
        every flush."""
        record = replace(record, prompt=safe_text(record.prompt), completion=safe_text(record.completion))
        with self._journal_lock:  # not `_lock`: a flush waiting on a locked database must not block this
            if self.journal:
                with self._pending_file().open("a") as f:
                    f.write(_line(record))
            self.pending.append(record)

    def _not_stored(self, records: list[Record]) -> list[Record]:
        """The records whose request id the database does not hold yet (a journal replayed after a
        kill between the commit and the journal's rewrite holds some that it does)."""
        ids = [r.request_id for r in records]
        with self.engine.connect() as db:
            query = select(REQUESTS.c.request_id).where(REQUESTS.c.request_id.in_(ids))
            stored = {row[0] for row in db.execute(query)} if ids else set()
        return [r for r in records if r.request_id not in stored]

    def flush(self) -> int:
        """Write the buffered requests in one transaction and apply the retention limit; the number
        written. On a locked or full store: StoreError, and the rows stay buffered for the next flush."""
        with self._lock:
            return self._flush()

    def _flush(self) -> int:
        if not self.pending:
            return 0
        batch = list(self.pending)  # rows added while this transaction runs wait for the next flush
        rows = [asdict(r) for r in batch]
        try:
            try:
                self._insert(rows)
            except OperationalError:
                raise
            except Exception as e:  # a row the database refuses: write the others, set that one aside
                log.warning("record store %s refused a batch (%s); writing its rows one by one", self.url, e)
                rows = self._insert_each(rows)
        except OperationalError as e:
            raise StoreError(
                f"record store {self.url}: {_first_line(e)}; {len(rows)} records kept for the next flush"
            ) from None
        with self._journal_lock:
            del self.pending[: len(batch)]
            if self.journal:
                self._rewrite_journal()
        return len(rows)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
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

    def _insert_each(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows written; each refused one goes to the `.rejected.jsonl` file beside the database."""
        written = []
        for row in rows:
            try:
                self._insert([row])
            except OperationalError:
                raise
            except Exception as e:
                path = self._pending_file().with_suffix("").with_suffix(".rejected.jsonl")
                with path.open("a") as f:
                    f.write(json.dumps({"error": _first_line(e), **row}, default=str) + "\n")
                log.error("record %s refused by the store (%s); kept in %s", row["request_id"], e, path)
            else:
                written.append(row)
        return written

    def add_feedback(self, feedback: Feedback) -> None:
        """Store a rating (and optional correction) of a recorded request. A key has one rating per
        request, its latest: a key repeating itself must not outvote the others in the monitor."""
        if type(feedback.rating) is not int or feedback.rating not in (-1, 0, 1):
            raise StoreError(f"rating must be -1, 0 or 1, got {feedback.rating!r}")
        self.flush()  # the request it rates may still be in the buffer
        same = (FEEDBACK.c.request_id == feedback.request_id) & (FEEDBACK.c.key_id == feedback.key_id)
        try:
            with self.engine.begin() as db:
                db.execute(delete(FEEDBACK).where(same))
                db.execute(insert(FEEDBACK), [asdict(feedback)])
        except IntegrityError:
            raise StoreError(f"no recorded request '{feedback.request_id}' to give feedback on") from None
        except OperationalError as e:
            raise StoreError(f"record store {self.url}: {_first_line(e)}") from None

    def records(self, model: str | None = None, since: datetime | None = None) -> list[Record]:
        """The stored requests in arrival order, optionally of one requested role or model, and only
        those at or after `since`."""
        query = select(*[REQUESTS.c[k] for k in Record.__dataclass_fields__]).order_by(REQUESTS.c.seq)
        if model is not None:
            query = query.where(REQUESTS.c.model == model)
        if since is not None:
            query = query.where(REQUESTS.c.time >= since)
        try:
            with self.engine.connect() as db:
                return [_record(row._mapping) for row in db.execute(query)]
        except OperationalError as e:
            raise StoreError(f"record store {self.url}: {_first_line(e)}") from None

    def record(self, request_id: str) -> Record | None:
        """One request by id (buffered ones included), or None."""
        for pending in self.pending:
            if pending.request_id == request_id:
                return pending
        query = select(*[REQUESTS.c[k] for k in Record.__dataclass_fields__])
        try:
            with self.engine.connect() as db:
                row = db.execute(query.where(REQUESTS.c.request_id == request_id)).first()
        except OperationalError as e:
            raise StoreError(f"record store {self.url}: {_first_line(e)}") from None
        return None if row is None else _record(row._mapping)

    def feedback(self, since: datetime | None = None) -> list[Feedback]:
        """Every rating in arrival order, optionally only those at or after `since`."""
        query = select(*[FEEDBACK.c[k] for k in Feedback.__dataclass_fields__]).order_by(FEEDBACK.c.seq)
        if since is not None:
            query = query.where(FEEDBACK.c.time >= since)
        try:
            with self.engine.connect() as db:
                return [Feedback(**_utc(dict(row._mapping))) for row in db.execute(query)]
        except OperationalError as e:
            raise StoreError(f"record store {self.url}: {_first_line(e)}") from None


def open_existing(url: str) -> RecordStore:
    """The store a server wrote, for a reader (monitor, retrain, review): a SQLite file that is not
    there is an error, not a new empty store that would report no traffic."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise StoreError(
            f"no record store at {Path(url.removeprefix('sqlite:///')).absolute()}: set feedback.store to "
            "the server's serve.records.url"
        )
    return RecordStore(url)


def _line(record: Record) -> str:
    return json.dumps(asdict(record), default=str) + "\n"


def safe_text(text: str) -> str:
    """`text` with any lone UTF-16 surrogate replaced by U+FFFD (a valid pair is joined)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _utc(values: dict[str, Any]) -> dict[str, Any]:
    if values["time"].tzinfo is None:  # SQLite keeps no zone; every time written is UTC
        values["time"] = values["time"].replace(tzinfo=timezone.utc)
    return values


def _record(row: Any) -> Record:
    return Record(**_utc(dict(row)))


def _sqlite_foreign_keys(connection: object, _: object) -> None:
    """SQLite checks foreign keys (feedback on an unknown request, cascading deletes) only when asked."""
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _first_line(error: Exception) -> str:
    return str(getattr(error, "orig", error)).strip().splitlines()[0]
