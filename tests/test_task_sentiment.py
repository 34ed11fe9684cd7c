from __future__ import annotations

import json
from pathlib import Path

import pytest

from srl_rlvr.errors import DataError
from srl_rlvr.tasks import SolvableTask, Task, load_task, problem_of
from srl_rlvr.tasks.base import Problem
from srl_rlvr.tasks.sentiment import SentimentTask

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def task() -> SentimentTask:
    return SentimentTask()


def review(label: str) -> Problem:
    return Problem(id="r1", text="The battery died after a day.", answer=label)


def write_rows(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_loads_by_name_and_satisfies_the_task_protocol() -> None:
    task = load_task("sentiment")
    assert isinstance(task, Task) and isinstance(task, SolvableTask)
    assert task.name == "sentiment"


def test_prompt_states_the_json_format_and_the_text(task: SentimentTask) -> None:
    prompt = task.prompt(review("negative"))
    assert '"sentiment"' in prompt and '"confidence"' in prompt
    assert prompt.rstrip().endswith("The battery died after a day.")


def test_right_label_scores_half_plus_half_the_confidence(task: SentimentTask) -> None:
    problem = review("negative")
    assert task.reward('{"sentiment": "negative", "confidence": 1.0}', problem) == 1.0
    assert task.reward('{"sentiment": "negative", "confidence": 0.6}', problem) == pytest.approx(0.8)
    assert task.reward('{"sentiment": "negative", "confidence": 0}', problem) == 0.5


def test_wrong_label_scores_zero_whatever_the_confidence(task: SentimentTask) -> None:
    assert task.reward('{"sentiment": "positive", "confidence": 1.0}', review("negative")) == 0.0
    assert task.reward('{"sentiment": "neutral", "confidence": 0.1}', review("negative")) == 0.0


def test_reasoning_may_precede_the_answer_and_the_last_json_object_wins(task: SentimentTask) -> None:
    completion = (
        "cues: died after a day (-)\n"
        'first guess: {"sentiment": "neutral", "confidence": 0.3}\n'
        "label: negative\n"
        '{"sentiment": "negative", "confidence": 0.9}'
    )
    assert task.parse(completion).sentiment == "negative"
    assert task.reward(completion, review("negative")) == pytest.approx(0.95)


@pytest.mark.parametrize(
    "completion",
    [
        "negative",
        "Answer: negative (confidence 0.9)",
        '{"sentiment": "negative", "confidence": 0.9',
        '{"sentiment": "Negative", "confidence": 0.9}',
        '{"sentiment": "angry", "confidence": 0.9}',
        '{"sentiment": "negative", "confidence": 1.5}',
        '{"sentiment": "negative", "confidence": "0.9"}',
        '{"sentiment": "negative", "confidence": true}',
        '{"sentiment": "negative"}',
        '{"sentiment": "negative", "confidence": 0.9, "reason": "sad"}',
        '["negative", 0.9]',
    ],
)
def test_malformed_answers_do_not_parse_and_score_zero(task: SentimentTask, completion: str) -> None:
    assert task.parse(completion) is None
    assert task.reward(completion, review("negative")) == 0.0


def test_a_hedged_right_answer_beats_a_confident_wrong_one(task: SentimentTask) -> None:
    hedged = task.reward('{"sentiment": "negative", "confidence": 0.0}', review("negative"))
    confident = task.reward('{"sentiment": "positive", "confidence": 1.0}', review("negative"))
    assert hedged > confident


@pytest.mark.parametrize("split", SPLITS)
def test_solver_trajectories_score_full_reward_on_every_problem(task: SentimentTask, split: str) -> None:
    problems = task.sample(10_000, seed=0, split=split)
    assert problems
    for problem in problems:
        trajectory = task.solve(problem)
        assert task.reward("\n".join(step.action for step in trajectory.steps), problem) == 1.0
        assert task.reward(trajectory.solution_text(), problem_of(trajectory)) == 1.0
        assert trajectory.provenance == {"teacher": "solver:sentiment"}
        assert trajectory.metadata["id"] == problem.id
        assert trajectory.metadata["label"] == problem.answer


def test_solver_names_cues_then_label_then_answers(task: SentimentTask) -> None:
    problem = Problem(
        id="p1",
        text="Great camera, but the battery dies by noon.",
        answer="negative",
        metadata={"cues": [["Great camera", "+"], ["battery dies by noon", "-"]], "note": ""},
    )
    actions = [step.action for step in task.solve(problem).steps]
    assert actions == [
        "cues: Great camera (+), battery dies by noon (-)",
        "label: negative",
        '{"sentiment": "negative", "confidence": 1.0}',
    ]


def test_metrics_match_hand_computed_values(task: SentimentTask) -> None:
    problems = [review("positive"), review("positive"), review("negative"), review("neutral")]
    completions = [
        '{"sentiment": "positive", "confidence": 0.9}',
        '{"sentiment": "negative", "confidence": 0.9}',
        'thinking... {"sentiment": "negative", "confidence": 0.5}',
        "no idea",
    ]
    # F1: positive tp1 fn1 -> 2/3; negative tp1 fp1 -> 2/3; neutral fn1 -> 0.
    assert task.metrics(completions, problems) == pytest.approx(
        {"accuracy": 0.5, "macro_f1": 4 / 9, "parse_rate": 0.75}
    )


def test_metrics_are_perfect_when_every_answer_is_right(task: SentimentTask) -> None:
    problems = task.sample(30, seed=1, split="val")
    completions = [task.solve(p).solution_text() for p in problems]
    assert task.metrics(completions, problems) == {"accuracy": 1.0, "macro_f1": 1.0, "parse_rate": 1.0}


def test_shipped_data_is_balanced_and_has_hard_cases(task: SentimentTask) -> None:
    labels = [row.label for row in task.rows]
    counts = {label: labels.count(label) for label in ("positive", "negative", "neutral")}
    assert len(task.rows) >= 300
    assert min(counts.values()) >= 0.8 * max(counts.values())
    assert {row.hard for row in task.rows} >= {"negation", "sarcasm", "mixed"}


def test_user_data_path_replaces_the_shipped_data(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "mine.jsonl", [{"id": "a", "text": "Loved it.", "label": "positive"}])
    task = SentimentTask(data_path=str(path))
    problems = [p for split in SPLITS for p in task.sample(5, seed=0, split=split)]
    assert [p.text for p in problems] == ["Loved it."]
    assert task.solve(problems[0]).steps[0].action == "cues: none"


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ('{"id": "b", "text": "Meh.", "label": "happy"}', "label"),
        (
            '{"id": "b", "text": "Meh.", "label": "neutral", "cues": [{"phrase": "awful", "polarity": "-"}]}',
            "awful",
        ),
        ('{"id": "b", "text": "Meh.", "lable": "neutral"}', "label"),
        ('{"id": "b", "text": "Meh.", "label": "neutral"', "invalid JSON"),
        ('{"id": "a", "text": "Meh.", "label": "neutral"}', "already used on line 1"),
    ],
)
def test_malformed_data_file_raises_data_error_naming_file_and_line(
    tmp_path: Path, bad_row: str, message: str
) -> None:
    path = write_rows(
        tmp_path / "bad.jsonl", [{"id": "a", "text": "Loved it.", "label": "positive"}, bad_row]
    )
    with pytest.raises(DataError, match=rf"bad\.jsonl:2: .*{message}"):
        SentimentTask(data_path=str(path))


def test_missing_or_empty_data_file_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        SentimentTask(data_path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="no rows"):
        SentimentTask(data_path=str(write_rows(tmp_path / "empty.jsonl", [])))
