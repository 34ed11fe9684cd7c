"""The production record store on a real SQLite file: requests, feedback, retention, and a locked
database that loses nothing."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from srl_rlvr.data.records import Feedback, Record, RecordStore, StoreError


def served(i: int, model: str = "arithmetic") -> Record:
    return Record(
        f"chatcmpl-{i}", "alice", model, "arith-v2", f"Start with {i}.", f"Answer: {i}", 12.5, 1.0, "answer"
    )


def test_requests_and_their_feedback_are_kept_and_read_back(tmp_path: Path) -> None:
    store = RecordStore(f"sqlite:///{tmp_path / 'records.db'}")
    store.add(served(1))
    store.add(served(2, model="chat"))
    assert store.flush() == 2
    store.add_feedback(Feedback("chatcmpl-1", -1, correction="Answer: 7", key_id="alice"))
    again = RecordStore(f"sqlite:///{tmp_path / 'records.db'}")  # another process, the same file
    assert [r.request_id for r in again.records()] == ["chatcmpl-1", "chatcmpl-2"]
    assert [r.request_id for r in again.records(model="chat")] == ["chatcmpl-2"]
    assert again.records()[0].outcome == 1.0 and again.records()[0].served_by == "arith-v2"
    (rating,) = again.feedback()
    assert (rating.request_id, rating.rating, rating.correction) == ("chatcmpl-1", -1, "Answer: 7")


def test_feedback_for_an_unknown_request_or_with_a_bad_rating_is_a_one_line_error(tmp_path: Path) -> None:
    store = RecordStore(f"sqlite:///{tmp_path / 'records.db'}")
    store.add(served(1))
    with pytest.raises(StoreError, match="no recorded request 'chatcmpl-9'"):
        store.add_feedback(Feedback("chatcmpl-9", 1))
    with pytest.raises(StoreError, match="rating must be -1, 0 or 1"):
        store.add_feedback(Feedback("chatcmpl-1", 5))
    assert [r.request_id for r in store.records()] == ["chatcmpl-1"] and store.feedback() == []


def test_retention_keeps_the_newest_requests_and_drops_the_feedback_of_the_rest(tmp_path: Path) -> None:
    store = RecordStore(f"sqlite:///{tmp_path / 'records.db'}", max_records=3)
    store.add(served(1))
    store.flush()
    store.add_feedback(Feedback("chatcmpl-1", -1))
    for i in range(2, 6):
        store.add(served(i))
    store.flush()
    assert [r.request_id for r in store.records()] == ["chatcmpl-3", "chatcmpl-4", "chatcmpl-5"]
    assert store.feedback() == []


def test_a_locked_store_fails_the_flush_and_keeps_every_pending_record(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    store = RecordStore(f"sqlite:///{path}", busy_timeout_s=0.05)
    store.add(served(1))
    other = sqlite3.connect(path)
    other.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        with pytest.raises(StoreError, match=r"locked.*1 records kept for the next flush"):
            store.flush()
        assert len(store.pending) == 1
    finally:
        other.rollback()
        other.close()
    assert store.flush() == 1 and [r.request_id for r in store.records()] == ["chatcmpl-1"]


def test_one_unstorable_row_neither_blocks_the_others_nor_is_lost(tmp_path: Path) -> None:
    # A lone surrogate made every flush raise UnicodeEncodeError (not StoreError): the probe's server
    # stopped recording while it kept answering 200.
    store = RecordStore(f"sqlite:///{tmp_path / 'records.db'}")
    store.add(Record("chatcmpl-1", "alice", "chat", "tiny", "\ud800 hi", "ok \udfff", 1.0))
    assert store.flush() == 1
    assert [(r.prompt, r.completion) for r in store.records()] == [("\ufffd hi", "ok \ufffd")]
    store.add(served(2))
    store.add(served(1))  # a request id the database already holds: refused, set aside
    store.add(served(3))
    assert store.flush() == 2 and store.pending == []
    assert [r.request_id for r in store.records()] == ["chatcmpl-1", "chatcmpl-2", "chatcmpl-3"]
    (rejected,) = (tmp_path / "records.db.rejected.jsonl").read_text().splitlines()
    assert '"request_id": "chatcmpl-1"' in rejected and "UNIQUE" in rejected


def test_a_key_has_one_rating_per_request_the_latest(tmp_path: Path) -> None:
    store = RecordStore(f"sqlite:///{tmp_path / 'records.db'}")
    store.add(served(1))
    for rating in (-1, -1, 1, -1, 0):
        store.add_feedback(Feedback("chatcmpl-1", rating, key_id="alice"))
    store.add_feedback(Feedback("chatcmpl-1", 1, key_id="review"))
    assert sorted((f.key_id, f.rating) for f in store.feedback()) == [("alice", 0), ("review", 1)]
    with pytest.raises(StoreError, match="rating must be -1, 0 or 1"):
        store.add_feedback(Feedback("chatcmpl-1", True, key_id="alice"))  # type: ignore[arg-type]


KILLED_WRITER = """
import os, sys
from srl_rlvr.data.records import Record, RecordStore, StoreError
store = RecordStore(sys.argv[1], busy_timeout_s=0.05, journal=True)
print("open", flush=True)
sys.stdin.readline()  # the test has locked the database
for i in range(1, 6):
    store.add(Record(f"chatcmpl-{i}", "alice", "chat", "tiny", "hi", "hello", 1.0))  # then answered
try:
    store.flush()
except StoreError:
    os.kill(os.getpid(), 9)  # killed while another process holds the database
"""


def test_records_answered_before_a_kill_9_are_replayed_on_the_next_start(tmp_path: Path) -> None:
    # What a probe found: kill -9 while another process held the lock lost 5 of 5 answered records.
    path = tmp_path / "records.db"
    url = f"sqlite:///{path}"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline() == "open\n"
    other = sqlite3.connect(path)
    other.execute("BEGIN EXCLUSIVE")
    try:
        writer.communicate("go\n", timeout=120)
    finally:
        other.rollback()
        other.close()
    assert writer.returncode == -9
    assert [r.request_id for r in RecordStore(url).records()] == []  # a reader does not replay
    restarted = RecordStore(url, journal=True)
    assert [r.request_id for r in restarted.records()] == [f"chatcmpl-{i}" for i in range(1, 6)]
    assert restarted.pending == [] and not (tmp_path / "records.db.pending.jsonl").exists()
    RecordStore(url, journal=True)  # nothing replayed twice
    assert len(RecordStore(url).records()) == 5
