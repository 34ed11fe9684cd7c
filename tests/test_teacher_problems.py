"""Teacher-written problems as a test-set source: proposed over a real HTTP chat server on 127.0.0.1,
kept only when the task's verifier can score them, and kept out when training data holds them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chat_server import ScriptedChatServer
from typer.testing import CliRunner

from srl_rlvr.cli import app, main
from srl_rlvr.data.testsets import load_testset
from srl_rlvr.generate.teacher_problems import verified
from srl_rlvr.tasks import Problem, load_task

ARITHMETIC = load_task("arithmetic")


def test_teacher_problems_are_checked_by_the_task_and_kept_out_of_training_data(tmp_path: Path) -> None:
    # the 7th training problem: in the training data, but not among the 5 the teacher is shown
    in_training = ARITHMETIC.sample(8, seed=0, split="train")[6].text
    proposals = [
        {
            "text": "Start with 4. Add 6. Multiply by 2.",
            "answer": 20,
            "solution": "4+6=10\n10*2=20\nAnswer: 20",
        },
        # the teacher's answer is wrong: the task works out its own (14)
        {"text": "Start with 3. Multiply by 5. Subtract 1.", "answer": 99, "solution": "Answer: 99"},
        # not an arithmetic problem the task can check: dropped
        {
            "text": "A farmer has 12 cows and buys 7 more. How many cows?",
            "answer": 19,
            "solution": "Answer: 19",
        },
        {"text": in_training, "answer": 0, "solution": "Answer: 0"},
    ]

    def respond(request: dict[str, Any]) -> str:
        assert '"solution"' in request["messages"][0]["content"]  # the teacher is asked to answer too
        return json.dumps({"problems": proposals})

    root = tmp_path / "testsets"
    with ScriptedChatServer(respond) as server:
        settings = [
            "data.train_size=8",
            f"data.testsets={root}",
            f"collaboration.teacher={{base_url: '{server.base_url}', model: teacher-m, api_key_env: null}}",
            f"collaboration.requests.cache_dir={tmp_path / 'cache'}",
            "collaboration.num_examples_per_request=4",
        ]
        command = [
            "testdata",
            "build",
            *settings,
            "--name",
            "t",
            "--no-task",
            "--no-difficulty",
            "--generated",
            "4",
        ]
        built = CliRunner().invoke(app, command)
        assert built.exit_code == 0, built.output
        assert len(server.requests) == 1
        # a rebuild asks for nothing: the problems are kept beside the test set
        again = CliRunner().invoke(app, command)
        assert again.exit_code == 0, again.output
        assert len(server.requests) == 1

    assert "does not recognise it as one of its problems: A farmer" in built.output
    assert "exact duplicate of training data" in built.output
    rows, manifest = load_testset(root, "t")
    assert {r.text: r.answer for r in rows} == {
        "Start with 4. Add 6. Multiply by 2.": 20,
        "Start with 3. Multiply by 5. Subtract 1.": 14,
    }
    for row in rows:
        assert row.metadata["source"] == "teacher" and row.metadata["answer_check"] == "task"
        assert "teacher_solution" not in row.metadata
    assert manifest["sources"] == {"teacher": 2}
    assert manifest["generation"]["teacher"] == f"teacher-m@{server.base_url}"
    assert [d["reason"] for d in manifest["generation"]["unscorable"]] == [
        "the arithmetic task does not recognise it as one of its problems"
    ]
    assert f"t@{manifest['version']}" in again.output


def test_a_task_without_its_own_answers_scores_the_teachers_solution_against_the_teachers_answer() -> None:
    sentiment = load_task("sentiment")

    def proposed(answer: Any, solution: str | None = None) -> Problem:
        metadata = {"source": "generated"} | ({"teacher_solution": solution} if solution else {})
        return Problem("p", "The battery died after an hour.", answer, metadata)

    right = json.dumps({"sentiment": "negative", "confidence": 1.0})
    kept, _ = verified(sentiment, proposed("negative", right), min_score=0.7)
    assert kept is not None and kept.metadata == {"source": "generated", "answer_check": "teacher"}
    # an answer that is no label of the task never scores, whatever the student writes
    unlabelled = json.dumps({"sentiment": "annoyed", "confidence": 1.0})
    assert verified(sentiment, proposed("annoyed", unlabelled), 0.7) == (
        None,
        "the task's verifier scores the teacher's solution 0.00 against the reference answer",
    )
    assert verified(sentiment, proposed(None, right), 0.7) == (None, "no reference answer")
    # without the teacher's solution, the task's expert needs metadata a new problem lacks
    dropped, why = verified(sentiment, proposed("negative"), 0.7)
    assert dropped is None and why.startswith("the task's verifier fails on it (KeyError")


def test_generated_problems_need_an_endpoint_teacher(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["testdata", "build", f"data.testsets={tmp_path}", "--generated", "3", "--no-difficulty"])
    assert exited.value.code == 2
    assert "collaboration.teacher must be an endpoint" in capsys.readouterr().err
