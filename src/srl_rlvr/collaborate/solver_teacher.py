"""Trajectories from a task's programmatic expert (`Task.solve`), verified by the task's own reward.

This is the offline teacher: no endpoint, no cost, exact. The verifier check is still run, so a
buggy solver (or a user task whose `solve` disagrees with its `reward`) is caught, not trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from srl_rlvr.data.trajectory import Trajectory
from srl_rlvr.errors import TaskError
from srl_rlvr.tasks import Problem, Task


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
