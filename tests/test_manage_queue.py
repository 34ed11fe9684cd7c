"""The management layer's job queue: a job is queued once per key, started by one process at a time,
one per device, and a job whose process died is started again, then failed, never run twice at once.
Two engines over one database stand for two processes; the clock is passed in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from srl_rlvr.manage import jobs as queue
from srl_rlvr.manage.state import open_state

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)


def test_a_job_is_queued_once_and_started_by_one_process_one_device_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    one, two = open_state(url), open_state(url)
    first = queue.enqueue(one, "retrain", "a", "retrain:a:v1", "cpu", T0)
    assert first is not None and first.state == queue.QUEUED
    assert queue.enqueue(two, "retrain", "a", "retrain:a:v1", "cpu", T0) is None  # the same job
    queue.enqueue(two, "distill", "b", "distill:b:night", "cpu", T0)

    taken = queue.claim(one, "cpu", "process-1", T0, lease_s=60)
    assert taken is not None and taken.key == "retrain:a:v1" and taken.attempts == 1
    # the device is busy: the other process starts nothing, not even the other job
    assert queue.claim(two, "cpu", "process-2", T0, lease_s=60) is None
    assert queue.finish(one, taken, succeeded=True, outcome="promoted", now=T0, cost_usd=0.5)
    following = queue.claim(two, "cpu", "process-2", T0, lease_s=60)
    assert following is not None and following.key == "distill:b:night"
    assert queue.claim(one, "cpu", "process-1", T0, lease_s=60) is None  # nothing left
    assert queue.spend(one, "a", T0, T0 + timedelta(days=1)) == 0.5


def test_a_job_whose_process_died_is_started_again_then_failed_never_twice_at_once(tmp_path: Path) -> None:
    engine = open_state(f"sqlite:///{tmp_path / 'state.db'}")
    queue.enqueue(engine, "retrain", "a", "retrain:a:v1", "cpu", T0)
    dead = queue.claim(engine, "cpu", "killed", T0, lease_s=60)
    assert dead is not None

    # within its lease, nobody else may start it
    assert queue.expire_leases(engine, T0 + timedelta(seconds=59), max_attempts=2) == []
    assert queue.claim(engine, "cpu", "other", T0 + timedelta(seconds=59), lease_s=60) is None

    # its lease ran out: queued again, and the next process's start is its second attempt
    assert queue.expire_leases(engine, T0 + timedelta(seconds=61), max_attempts=2) == []
    again = queue.claim(engine, "cpu", "other", T0 + timedelta(seconds=61), lease_s=60)
    assert again is not None and again.attempts == 2
    # the first process, come back to life, cannot record an outcome for a job it no longer holds
    assert not queue.finish(engine, dead, succeeded=True, outcome="promoted", now=T0 + timedelta(seconds=62))

    # the second process dies too: out of attempts, the job fails and says why
    failed = queue.expire_leases(engine, T0 + timedelta(seconds=200), max_attempts=2)
    assert [j.key for j in failed] == ["retrain:a:v1"]
    assert "lease expired on attempt 2 of 2" in (failed[0].outcome or "")
    (job,) = queue.jobs(engine)
    assert job.state == queue.FAILED and job.attempts == 2
    assert queue.claim(engine, "cpu", "third", T0 + timedelta(seconds=201), lease_s=60) is None
