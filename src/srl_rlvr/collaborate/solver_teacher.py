"""Trajectories from a task's programmatic expert (`Task.solve`), verified by the task's own reward.

This is the offline teacher: no endpoint, no cost, exact. The verifier check is still run, so a
buggy solver (or a user task whose `solve` disagrees with its `reward`) is caught, not trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from srl_rlvr.config import Config
from srl_rlvr.data.trajectory import Trajectory
from srl_rlvr.data.versioning import save_dataset
from srl_rlvr.errors import TaskError
from srl_rlvr.tasks import Problem, Task, load_task
from srl_rlvr.tasks.base import Split


def solve_and_verify(
    task: Task, problems: list[Problem], on_row: Callable[[], None] | None = None
) -> Iterator[tuple[Trajectory, float]]:
    """Yield (trajectory, verifier score) for each problem; score is the task reward of the solution."""
    solve = getattr(task, "solve", None)
    if solve is None:
        raise TaskError(f"task '{task.name}' has no programmatic solver; configure an LLM teacher instead")
    for problem in problems:
        trajectory = solve(problem)
        score = task.reward(trajectory.solution_text(), problem)
        trajectory.provenance.setdefault("teacher", f"solver:{task.name}")
        trajectory.provenance["verifier_score"] = score
        trajectory.provenance["attempts"] = 1
        if on_row is not None:
            on_row()
        yield trajectory, score


def generate_dataset(
    config: Config,
    out_dir: str | Path,
    n: int | None = None,
    split: Split = "train",
    on_row: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Solve `n` (default `data.train_size`) problems of the configured task, keep those the verifier
    scores at or above `collaboration.min_verification_score`, and save them as a dataset version in
    `out_dir`; return its manifest. `on_row(done, total)` reports progress.
    """
    task = load_task(config.task.name, config.task.options)
    problems = task.sample(n or config.data.train_size, seed=config.data.seed, split=split)
    results: list[tuple[Trajectory, float]] = []
    for row in solve_and_verify(task, problems):
        results.append(row)
        if on_row is not None:
            on_row(len(results), len(problems))
    kept = [t for t, score in results if score >= config.collaboration.min_verification_score]
    return save_dataset(
        kept,
        out_dir,
        source=f"solver:{task.name}",
        task=task.name,
        split=split,
        rejected=len(results) - len(kept),
    )
