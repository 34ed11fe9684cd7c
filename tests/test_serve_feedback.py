"""Recording and feedback on the real server: each answer is kept with the task's own check of it,
users rate answers through POST /v1/feedback, a canary that answers worse is rolled back, and a
locked database delays the records without losing one."""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import event

from srl_rlvr.data.records import Record, RecordStore, StoreError
from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.run import serve_in_thread
from srl_rlvr.tasks.arithmetic import ArithmeticTask

ALICE, BOB = "sk-test-alice", "sk-test-bob"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("serve-feedback")
    keys = tmp / "keys"
    keys.write_text(f"alice: {ALICE}\nbob: {BOB}\n")
    database = tmp / "records.db"
    config = build_serve_config(
        {
            "port": 0,
            "device": "cpu",
            "cpu_threads": 1,
            "models": {"good": {"path": "embedded"}, "bad": {"path": "tiny"}},
            "roles": {"arithmetic": {"primary": "good", "task": "arithmetic"}},
            "auth": {"api_keys_env": None, "keys_file": str(keys), "admin_keys": ["alice"]},
            # judged on scores only: latency on a loaded CI machine says nothing about the models
            "canary": {"min_requests": 4, "latency_margin": 1000},
            "limits": {"max_tokens": 48, "default_max_tokens": 48},
            "audit_log": str(tmp / "audit.jsonl"),
            "records": {"url": f"sqlite:///{database}", "busy_timeout_s": 0.05},
        }
    )
    with serve_in_thread(config, ALICE) as url:
        yield url, database


def post(url: str, path: str, body: dict[str, Any], key: str = ALICE) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ask(url: str, problem: str, key: str = ALICE) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(model="arithmetic", messages=[{"role": "user", "content": problem}])


def stored(database: Path) -> dict[str, Record]:
    return {r.request_id: r for r in RecordStore(f"sqlite:///{database}").records()}


def test_each_answer_is_recorded_with_the_tasks_check_and_its_slice(served: tuple[str, Path]) -> None:
    url, database = served
    reply = ask(url, "Start with 3. Add 4. Multiply by 2.")
    post(url, "/v1/feedback", {"request_id": reply.id, "rating": 1})  # a flush point: the row is written
    record = stored(database)[reply.id]
    problem = ArithmeticTask().problem_from_text("Start with 3. Add 4. Multiply by 2.")
    expected = ArithmeticTask().reward(reply.choices[0].message.content, problem)
    assert (record.model, record.served_by, record.key_id, record.status) == (
        "arithmetic",
        "good",
        "alice",
        "ok",
    )
    assert (record.outcome, record.checked) == (expected, "answer")
    assert record.features == {"num_steps": 2, "ops": "add,mul", "start": 3}
    assert record.completion == reply.choices[0].message.content and record.latency_ms > 0


def test_feedback_is_stored_and_a_wrong_correction_or_an_unknown_id_is_refused(
    served: tuple[str, Path],
) -> None:
    url, database = served
    reply = ask(url, "Start with 5. Add 6.")
    status, body = post(
        url, "/v1/feedback", {"request_id": reply.id, "rating": -1, "correction": "Answer: 12"}
    )
    assert status == 400 and body["error"]["message"] == (
        "correction refused: its answer 12 is not the problem's (11)"
    )
    status, body = post(url, "/v1/feedback", {"request_id": "chatcmpl-nope", "rating": -1})
    assert status == 404 and body["error"]["message"] == "no recorded request 'chatcmpl-nope'"
    status, body = post(url, "/v1/feedback", {"request_id": reply.id, "rating": 1}, key=BOB)
    assert status == 403 and "only its own requests" in body["error"]["message"]
    for rating in (2, True, 1.0, "1"):  # strict: a boolean or a float is no rating
        status, body = post(url, "/v1/feedback", {"request_id": reply.id, "rating": rating})
        assert status == 400 and body["error"]["param"] == "rating", rating
    status, body = post(
        url, "/v1/feedback", {"request_id": reply.id, "rating": -1, "correction": "9" * 900_000}
    )
    assert status == 400 and body["error"]["param"] == "correction"

    status, _ = post(
        url, "/v1/feedback", {"request_id": reply.id, "rating": -1, "correction": "5+6=11\nAnswer: 11"}
    )
    assert status == 200
    ratings = [f for f in RecordStore(f"sqlite:///{database}").feedback() if f.request_id == reply.id]
    assert [(f.rating, f.correction, f.key_id) for f in ratings] == [(-1, "5+6=11\nAnswer: 11", "alice")]
    for _ in range(5):  # the probe stored 86 ratings of one request from one key
        assert post(url, "/v1/feedback", {"request_id": reply.id, "rating": 1})[0] == 200
    ratings = [f for f in RecordStore(f"sqlite:///{database}").feedback() if f.request_id == reply.id]
    assert [(f.rating, f.correction, f.key_id) for f in ratings] == [(1, None, "alice")]


def test_a_locked_store_delays_the_records_and_loses_none(served: tuple[str, Path]) -> None:
    url, database = served
    other = sqlite3.connect(database)
    other.execute("BEGIN EXCLUSIVE")  # another writer (a monitor job, a backup) holds the database
    try:
        first = ask(url, "Start with 2. Add 2.")  # still answered: recording never blocks a reply
        status, body = post(url, "/v1/feedback", {"request_id": first.id, "rating": 1})
        assert status == 503 and "locked" in body["error"]["message"]
    finally:
        other.rollback()
        other.close()
    second = ask(url, "Start with 1. Add 1.")
    assert post(url, "/v1/feedback", {"request_id": second.id, "rating": 1})[0] == 200
    assert {first.id, second.id} <= set(stored(database))


def test_a_canary_whose_answers_check_worse_is_rolled_back(served: tuple[str, Path]) -> None:
    url, _ = served
    problems = [f"Start with {i}. Add {j}." for i in range(1, 11) for j in range(1, 11)]
    for problem in problems[:4]:  # the primary's record: these one-step sums it gets right
        ask(url, problem)
    status, _ = post(url, "/admin/shift", {"role": "arithmetic", "to": "bad", "percent": 50})
    assert status == 200
    for problem in problems[4:]:
        ask(url, problem)
        roles = json.loads(urllib.request.urlopen(_get(url, "/admin/roles")).read())["arithmetic"]
        if roles["canary"] is None:
            break
    assert roles["canary"] is None and roles["primary"] == "good"
    assert roles["last_rollback"]["model"] == "bad"
    assert re.fullmatch(
        r"verified outcome rate 0\.0% of \d+ vs primary \d+\.\d% of \d+", roles["last_rollback"]["reason"]
    )


def _get(url: str, path: str) -> urllib.request.Request:
    return urllib.request.Request(url + path, headers={"Authorization": f"Bearer {ALICE}"})


def test_a_full_store_fails_the_flush_and_keeps_the_rows(tmp_path: Path) -> None:
    store = RecordStore(f"sqlite:///{tmp_path / 'records.db'}")
    store.engine.dispose()
    # the file may not grow (SQLite keeps it at its present size): the disk is full
    event.listen(store.engine, "connect", lambda c, _: c.execute("PRAGMA max_page_count=1"))
    long_answer = "1+1=2\n" * 20_000  # more than the free pages hold
    store.add(Record("chatcmpl-1", "alice", "arithmetic", "good", "Start with 1. Add 1.", long_answer, 3.0))
    with pytest.raises(StoreError, match=r"full.*1 records kept for the next flush"):
        store.flush()
    assert len(store.pending) == 1


def test_secrets_in_requests_and_corrections_never_reach_the_records(served: tuple[str, Path]) -> None:
    # What a probe found: API keys (the server's own too), AWS keys and passwords stored verbatim.
    url, database = served
    reply = ask(url, f"Start with 5. Add 6. My password is hunter2hunter, key AKIAIOSFODNN7EXAMPLE, {BOB}")
    correction = f"5+6=11 (ask jane@example.com, token {ALICE})\nAnswer: 11"
    status, _ = post(url, "/v1/feedback", {"request_id": reply.id, "rating": -1, "correction": correction})
    assert status == 200
    record = stored(database)[reply.id]
    (rating,) = [f for f in RecordStore(f"sqlite:///{database}").feedback() if f.request_id == reply.id]
    kept = record.prompt + record.completion + (rating.correction or "")
    for secret in ("hunter2", "AKIAIOSFODNN7EXAMPLE", BOB, ALICE):
        assert secret not in kept
    assert record.prompt.startswith("Start with 5. Add 6. My password is [SECRET]")
    assert "[SECRET]" in rating.correction and "Answer: 11" in rating.correction
