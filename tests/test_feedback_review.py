"""The human review queue out to Label Studio and Argilla and back, and the drift measures monitor uses."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from srl_rlvr.cli import app
from srl_rlvr.data.records import Feedback, Record, RecordStore
from srl_rlvr.feedback.drift import input_drift
from srl_rlvr.tasks.arithmetic import ArithmeticTask


def production(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    store = RecordStore(url)
    rows = [
        ("r1", "Start with 2. Add 3.", "Answer: 5", 1.0),  # right: nothing to review
        ("r2", "Start with 4. Multiply by 3.", "Answer: 7", 0.0),  # the task's check failed
        ("r3", "Start with 1. Add 1.", "Answer: 2", 1.0),  # right, but a user rated it -1
        ("r4", "Start with 9. Subtract 2.", "Answer: 8", 0.0),
    ]
    for rid, prompt, answer, outcome in rows:
        store.add(Record(rid, "alice", "arithmetic", "v1", prompt, answer, 10.0, outcome, "answer"))
    store.flush()
    store.add_feedback(Feedback("r3", -1))
    return url


def test_cases_go_out_to_label_studio_and_reviewed_corrections_come_back_checked(tmp_path: Path) -> None:
    url = production(tmp_path)
    args = [f"feedback.store={url}", "feedback.role=arithmetic", "task.name=arithmetic"]
    queue = tmp_path / "queue.json"
    exported = CliRunner().invoke(app, ["review", "export", *args, "--out", str(queue)])
    assert exported.exit_code == 0, exported.output
    tasks = json.loads(queue.read_text())
    assert [(t["data"]["request_id"], t["data"]["reason"]) for t in tasks] == [
        ("r4", "the task's check failed"),
        ("r3", "rated -1"),
        ("r2", "the task's check failed"),
    ]
    # what a reviewer's Label Studio export looks like: a textarea named `correction` per task
    answers = {"r4": "9-2=7\nAnswer: 7", "r3": "Answer: 3", "r2": "4*3=12\nAnswer: 12"}
    for t in tasks:
        text = answers[t["data"]["request_id"]]
        t["annotations"] = [
            {"result": [{"from_name": "correction", "type": "textarea", "value": {"text": [text]}}]}
        ]
    reviewed = tmp_path / "reviewed.json"
    reviewed.write_text(json.dumps(tasks))
    imported = CliRunner().invoke(app, ["review", "import", str(reviewed), *args])
    assert imported.exit_code == 2  # one correction was wrong: said, and the others kept
    assert "task 2: correction refused: its answer 3 is not the problem's (2)" in imported.output
    assert "2 corrections stored, 1 refused" in imported.output
    stored = {f.request_id: f.correction for f in RecordStore(url).feedback() if f.correction}
    assert stored == {"r4": "9-2=7\nAnswer: 7", "r2": "4*3=12\nAnswer: 12"}


def test_argilla_records_and_plain_rows_import_and_an_unknown_request_is_named(tmp_path: Path) -> None:
    url = production(tmp_path)
    args = [f"feedback.store={url}", "task.name=arithmetic"]
    queue = tmp_path / "queue.jsonl"
    CliRunner().invoke(app, ["review", "export", *args, "--format", "argilla", "--out", str(queue)])
    records = [json.loads(line) for line in queue.read_text().splitlines()]
    assert [r["id"] for r in records] == ["r4", "r3", "r2"] and records[0][
        "prompt"
    ] == "Start with 9. Subtract 2."
    reviewed = tmp_path / "reviewed.jsonl"
    rows = [
        {"id": "r4", "responses": {"correction": [{"value": "Answer: 7"}]}},  # Argilla's shape
        {"request_id": "r2", "correction": "Answer: 12"},  # plain
        {"request_id": "r9", "correction": "Answer: 1"},
        {"id": "r3"},  # looked at, not corrected
    ]
    reviewed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    imported = CliRunner().invoke(app, ["review", "import", str(reviewed), *args])
    assert "row 3: no recorded request 'r9'" in imported.output
    assert "2 corrections stored, 1 refused, 1 rows without one" in imported.output


def test_input_drift_is_large_for_a_new_kind_of_problem_and_small_for_more_of_the_same() -> None:
    training = [p.text for p in ArithmeticTask(min_steps=1, max_steps=4).sample(500, 0, "train")]
    same = input_drift(
        training, [p.text for p in ArithmeticTask(min_steps=1, max_steps=4).sample(200, 1, "test")]
    )
    longer = input_drift(
        training, [p.text for p in ArithmeticTask(min_steps=5, max_steps=6).sample(200, 1, "test")]
    )
    assert same.length_ks < same.ks_critical(0.01) and same.psi < 0.25
    assert longer.length_ks > longer.ks_critical(0.01) and longer.length_psi > 1.0
