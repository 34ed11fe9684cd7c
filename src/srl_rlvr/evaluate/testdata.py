"""`srl-rlvr testdata build`: a versioned test set from several sources, free of training data, with
each problem's difficulty for the base model.

Sources, in order (a problem already taken is not taken twice): the task's own test split
(`data.test_size` problems), problem files, problems the teacher wrote (`generate/teacher_problems.py`
proposes them and keeps those the task's verifier can score; the caller passes them in, as this
floor does not call the teacher), and production failures (answers the task verified wrong in the
record store, `feedback.store`). Every problem the training data holds, exactly or
nearly, is removed (`data/testsets.py`). Difficulty is the base model's pass rate: the mean reward
of `eval.samples` sampled answers when set, else its greedy answer's reward; the bucket (easy,
medium, hard) goes into the metadata, so `eval` slices by it like any other metadata key.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.config import Config
from srl_rlvr.data.testsets import (
    HeldOutProblem,
    Leak,
    find_leaks,
    normalise,
    read_problem_file,
    save_testset,
)
from srl_rlvr.errors import DataError
from srl_rlvr.tasks import Problem, Task, load_task

log = logging.getLogger(__name__)

# Pass-rate buckets: "hard" is what the base model almost never solves, "easy" what it almost always does.
HARD_BELOW, EASY_FROM = 0.2, 0.8


@dataclass
class BuiltTestset:
    folder: Path
    version: str
    counts: dict[str, int]  # kept problems per source
    leaks: list[Leak] = field(default_factory=list)
    difficulty: dict[str, int] = field(default_factory=dict)


TEACHER_SOURCE = "teacher"  # the `source` metadata of a problem the teacher wrote


def as_problem(row: HeldOutProblem) -> Problem:
    return Problem(row.id, row.text, row.answer, dict(row.metadata))


def _row(problem: Problem, source: str) -> HeldOutProblem:
    return HeldOutProblem(problem.id, problem.text, problem.answer, {**problem.metadata, "source": source})


def production_failures(config: Config, task: Task) -> list[Problem]:
    """Problems production answered wrong, as the task's own check says, newest first."""
    from srl_rlvr.data.records import open_existing

    # a task that works a request's problem (and its answer) out of the text; others have no failures
    # with a reference answer to test against
    recognise = getattr(task, "problem_from_text", None)
    if recognise is None:
        return []
    failures: dict[str, Problem] = {}
    for record in reversed(open_existing(config.feedback.store).records(model=config.feedback.role)):
        if record.checked == "answer" and record.status != "error" and (record.outcome or 0.0) < 1.0:
            problem = recognise(record.prompt)
            if problem is not None:
                failures.setdefault(normalise(problem.text), problem)
    return list(failures.values())


def training_texts(config: Config, task: Task, extra: Sequence[str | Path] = ()) -> list[str]:
    """What training sees: the task's train split as the pipeline samples it, the trajectories of
    `data.trajectories`, and any further trajectory or problem files."""
    from srl_rlvr.data.versioning import load_dataset

    texts = [p.text for p in task.sample(config.data.train_size, config.data.seed, "train")]
    for path in [*([config.data.trajectories] if config.data.trajectories else []), *extra]:
        try:
            texts += [t.problem for t in load_dataset(path)[0]]
        except DataError:  # not trajectories: a problem file
            texts += [r.text for r in read_problem_file(path)]
    return texts


def pass_rates(config: Config, task: Task, problems: Sequence[Problem]) -> list[float]:
    """The base model's pass rate on each problem (see the module docstring)."""
    from srl_rlvr.evaluate.evaluation import evaluate_model
    from srl_rlvr.modeling import load_model

    model, tokenizer = load_model(config.model, seed=config.seed)
    result = evaluate_model(model, tokenizer, task, problems, config.eval, "base", config.model.name_or_path)
    return [
        sum(r.sample_rewards) / len(r.sample_rewards) if r.sample_rewards else r.reward
        for r in result.records
    ]


def bucket(rate: float) -> str:
    return "hard" if rate < HARD_BELOW else "easy" if rate >= EASY_FROM else "medium"


def build_testset(
    config: Config,
    name: str,
    files: Sequence[str | Path] = (),
    from_task: bool = True,
    production: bool = False,
    training_files: Sequence[str | Path] = (),
    difficulty: bool = True,
    generated: Sequence[Problem] = (),
    generation: dict[str, Any] | None = None,
) -> BuiltTestset:
    """`generated`: problems the teacher wrote, already verified (`generate.teacher_problems`);
    `generation`: what to record in the manifest about how they were made (teacher, requests, drops)."""
    task = load_task(config.task.name, config.task.options)
    rows: dict[str, HeldOutProblem] = {}  # by normalised text: a problem two sources hold counts once
    if from_task:
        for p in task.sample(config.data.test_size, config.data.seed, "test"):
            rows.setdefault(normalise(p.text), _row(p, "task"))
    for path in files:
        for r in read_problem_file(path):
            rows.setdefault(
                normalise(r.text), HeldOutProblem(r.id, r.text, r.answer, {**r.metadata, "source": str(path)})
            )
    for p in generated:
        rows.setdefault(normalise(p.text), _row(p, TEACHER_SOURCE))
    if production:
        for p in production_failures(config, task):
            rows.setdefault(normalise(p.text), _row(p, "production"))
    candidates = list(rows.values())
    leaks = find_leaks(
        candidates, training_texts(config, task, training_files), config.data.near_duplicate_threshold
    )
    leaked = {leak.id for leak in leaks}
    kept = [r for r in candidates if r.id not in leaked]
    spread: dict[str, int] = {}
    if difficulty and kept:
        for row, rate in zip(kept, pass_rates(config, task, [as_problem(r) for r in kept]), strict=True):
            row.metadata |= {"base_pass_rate": round(rate, 3), "difficulty": bucket(rate)}
            spread[bucket(rate)] = spread.get(bucket(rate), 0) + 1
    counts: dict[str, int] = {}
    for r in kept:
        counts[r.metadata["source"]] = counts.get(r.metadata["source"], 0) + 1
    folder = save_testset(
        config.data.testsets,
        name,
        kept,
        task={"name": config.task.name, "options": config.task.options},
        sources=counts,
        removed=[asdict(leak) for leak in leaks],
        difficulty_model=config.model.name_or_path if difficulty else None,
        **({"generation": generation} if generation is not None else {}),
    )
    return BuiltTestset(folder, folder.name, counts, leaks, spread)
