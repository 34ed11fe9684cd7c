from __future__ import annotations

import json
from pathlib import Path

import pytest

from srl_rlvr.errors import DataError
from srl_rlvr.tasks import SolvableTask, Task, load_task, problem_of
from srl_rlvr.tasks.base import Problem
from srl_rlvr.tasks.moderation import ModerationTask

SPLITS = ("train", "val", "test")
CLEAN = '{"flags": [], "severity": "none"}'


@pytest.fixture(scope="module")
def task() -> ModerationTask:
    return ModerationTask()


def message(flags: list[str], severity: str) -> Problem:
    return Problem(id="c1", text="Keep talking, idiot.", answer={"flags": flags, "severity": severity})


def answer(flags: list[str], severity: str) -> str:
    return json.dumps({"flags": flags, "severity": severity})


def write_rows(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_loads_by_name_and_satisfies_the_task_protocol() -> None:
    task = load_task("moderation")
    assert isinstance(task, Task) and isinstance(task, SolvableTask)
    assert task.name == "moderation"


def test_prompt_lists_every_flag_and_the_clean_answer(task: ModerationTask) -> None:
    prompt = task.prompt(message([], "none"))
    for flag in ("harassment", "hate", "violence", "self_harm", "sexual", "spam", "pii"):
        assert flag in prompt
    assert CLEAN in prompt
    assert prompt.rstrip().endswith("Keep talking, idiot.")


def test_exact_answer_scores_one_for_flagged_and_clean_content(task: ModerationTask) -> None:
    assert (
        task.reward(answer(["harassment", "violence"], "high"), message(["harassment", "violence"], "high"))
        == 1.0
    )
    assert (
        task.reward(answer(["violence", "harassment"], "high"), message(["harassment", "violence"], "high"))
        == 1.0
    )
    assert task.reward(CLEAN, message([], "none")) == 1.0


def test_partial_flags_earn_jaccard_credit_and_severity_earns_the_rest(task: ModerationTask) -> None:
    gold = message(["harassment", "violence"], "high")
    assert task.reward(answer(["harassment"], "high"), gold) == pytest.approx(0.7 * 0.5 + 0.3)
    assert task.reward(answer(["harassment", "spam"], "low"), gold) == pytest.approx(0.7 * 1 / 3)
    assert task.reward(answer(["harassment", "violence"], "medium"), gold) == pytest.approx(0.7)
    assert task.reward(answer(["spam"], "high"), gold) == pytest.approx(0.3)


def test_flagging_clean_content_or_missing_a_flag_costs_all_the_flag_credit(task: ModerationTask) -> None:
    assert task.reward(answer(["spam"], "low"), message([], "none")) == 0.0
    assert task.reward(CLEAN, message(["spam"], "low")) == 0.0


def test_reasoning_may_precede_the_answer_and_the_last_json_object_wins(task: ModerationTask) -> None:
    completion = (
        'evidence: "idiot" (harassment)\n'
        'draft {"flags": ["harassment", "hate"], "severity": "high"}\n'
        'flags: harassment\nseverity: low\n{"flags": ["harassment"], "severity": "low"}'
    )
    assert task.parse(completion).flags == ["harassment"]
    assert task.reward(completion, message(["harassment"], "low")) == 1.0


@pytest.mark.parametrize(
    "completion",
    [
        "flags: harassment, severity: low",
        '{"flags": ["harassment"], "severity": "low"',
        '{"flags": ["insult"], "severity": "low"}',
        '{"flags": "harassment", "severity": "low"}',
        '{"flags": ["harassment"], "severity": "critical"}',
        '{"flags": ["harassment"]}',
        '{"flags": ["harassment"], "severity": "low", "explanation": "rude"}',
    ],
)
def test_malformed_answers_do_not_parse_and_score_zero(task: ModerationTask, completion: str) -> None:
    assert task.parse(completion) is None
    assert task.reward(completion, message(["harassment"], "low")) == 0.0


@pytest.mark.parametrize("split", SPLITS)
def test_solver_trajectories_score_full_reward_on_every_problem(task: ModerationTask, split: str) -> None:
    problems = task.sample(10_000, seed=0, split=split)
    assert problems
    for problem in problems:
        trajectory = task.solve(problem)
        assert task.reward("\n".join(step.action for step in trajectory.steps), problem) == 1.0
        assert task.reward(trajectory.solution_text(), problem_of(trajectory)) == 1.0
        assert trajectory.provenance == {"teacher": "solver:moderation"}
        assert trajectory.metadata["id"] == problem.id
        assert trajectory.metadata["label"] in ("clean", "flagged")


def test_solver_quotes_evidence_then_flags_severity_and_answer(task: ModerationTask) -> None:
    problem = Problem(
        id="p1",
        text="Buy cheap followers now!!! click here",
        answer={"flags": ["spam"], "severity": "low"},
        metadata={"evidence": [["click here", "spam"]], "note": ""},
    )
    actions = [step.action for step in task.solve(problem).steps]
    assert actions == [
        'evidence: "click here" (spam)',
        "flags: spam",
        "severity: low",
        answer(["spam"], "low"),
    ]


def test_metrics_match_hand_computed_values(task: ModerationTask) -> None:
    problems = [
        message([], "none"),
        message([], "none"),
        message(["harassment", "violence"], "high"),
        message(["spam"], "low"),
    ]
    completions = [CLEAN, answer(["spam"], "low"), answer(["harassment"], "high"), "looks like spam"]
    # Flags: tp 1 (harassment), fp 1 (spam on clean), fn 2 (violence, unparsed spam) -> F1 = 2/5.
    assert task.metrics(completions, problems) == pytest.approx(
        {
            "detection_accuracy": 0.5,
            "false_positive_rate": 0.5,
            "flag_f1": 0.4,
            "severity_accuracy": 0.5,
            "parse_rate": 0.75,
        }
    )


def test_metrics_are_perfect_when_every_answer_is_right(task: ModerationTask) -> None:
    problems = task.sample(30, seed=1, split="val")
    completions = [task.solve(p).solution_text() for p in problems]
    assert task.metrics(completions, problems) == {
        "detection_accuracy": 1.0,
        "false_positive_rate": 0.0,
        "flag_f1": 1.0,
        "severity_accuracy": 1.0,
        "parse_rate": 1.0,
    }


def test_shipped_data_is_half_clean_and_uses_every_flag(task: ModerationTask) -> None:
    clean = sum(not row.flags for row in task.rows)
    assert len(task.rows) >= 300
    assert 0.4 <= clean / len(task.rows) <= 0.6
    assert {flag for row in task.rows for flag in row.flags} == {
        "harassment",
        "hate",
        "violence",
        "self_harm",
        "sexual",
        "spam",
        "pii",
    }


def test_user_data_path_replaces_the_shipped_data(tmp_path: Path) -> None:
    row = {"id": "a", "text": "See you at noon.", "flags": [], "severity": "none"}
    task = ModerationTask(data_path=str(write_rows(tmp_path / "mine.jsonl", [row])))
    problems = [p for split in SPLITS for p in task.sample(5, seed=0, split=split)]
    assert [p.text for p in problems] == ["See you at noon."]
    assert task.solve(problems[0]).steps[0].action == "evidence: none"


@pytest.mark.parametrize(
    ("bad_row", "message_part"),
    [
        ('{"id": "b", "text": "hi", "flags": ["rude"], "severity": "low"}', "flags"),
        ('{"id": "b", "text": "hi", "flags": [], "severity": "low"}', "severity 'none' goes with no flags"),
        ('{"id": "b", "text": "hi idiot", "flags": ["harassment"], "severity": "none"}', "severity 'none'"),
        ('{"id": "b", "text": "hi", "flags": ["spam", "spam"], "severity": "low"}', "flags repeat"),
        (
            '{"id": "b", "text": "hi", "flags": ["spam"], "severity": "low",'
            ' "evidence": [{"phrase": "click here", "flag": "spam"}]}',
            "does not occur",
        ),
        (
            '{"id": "b", "text": "hi idiot", "flags": ["spam"], "severity": "low",'
            ' "evidence": [{"phrase": "idiot", "flag": "harassment"}]}',
            "not among the flags",
        ),
        ('{"id": "a", "text": "hi", "flags": [], "severity": "none"}', "already used on line 1"),
        ("not json", "invalid JSON"),
    ],
)
def test_malformed_data_file_raises_data_error_naming_file_and_line(
    tmp_path: Path, bad_row: str, message_part: str
) -> None:
    good = {"id": "a", "text": "See you at noon.", "flags": [], "severity": "none"}
    path = write_rows(tmp_path / "bad.jsonl", [good, bad_row])
    with pytest.raises(DataError, match=rf"bad\.jsonl:2: .*{message_part}"):
        ModerationTask(data_path=str(path))
