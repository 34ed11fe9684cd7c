"""The Task contract: what a job is, how to ask for it, and how to check an answer.

A user adapts srl-rlvr to their project by writing one class with these methods (see
examples/custom_task.py) and naming it in the config as `my_module:MyTask`. `reward` must be
verifiable and deterministic: RLVR optimises it and evaluation reports it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from srl_rlvr.data.trajectory import Trajectory

Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class Problem:
    """One instance of a task: the input text, the reference answer, and metadata to slice results by."""

    id: str
    text: str
    answer: Any
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    name: str

    def prompt(self, problem: Problem) -> str:
        """The text the model sees (instruction + problem)."""
        ...

    def parse(self, completion: str) -> Any:
        """The answer in a completion, or None when there is none."""
        ...

    def reward(self, completion: str, problem: Problem) -> float:
        """Verifiable outcome reward in [0, 1]."""
        ...

    def metrics(self, completions: list[str], problems: list[Problem]) -> dict[str, float]:
        """Task metrics over a set of completions (accuracy, F1, ...)."""
        ...

    def sample(self, n: int, seed: int, split: Split) -> list[Problem]:
        """Up to `n` problems of a split; the same (n, seed, split) always gives the same problems."""
        ...


@runtime_checkable
class SolvableTask(Task, Protocol):
    def solve(self, problem: Problem) -> Trajectory:
        """A programmatic expert: a correct step-by-step trajectory for `problem`."""
        ...


def split_of(problem_id: str, val_fraction: float = 0.15, test_fraction: float = 0.25) -> Split:
    """Stable split assignment by hashing the id, so adding rows never moves old ones between splits."""
    bucket = int(hashlib.sha256(problem_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + val_fraction:
        return "val"
    return "train"


def sample_synthetic(
    task_name: str, make: Callable[[random.Random], Problem], n: int, seed: int, split: Split
) -> list[Problem]:
    """Up to `n` distinct problems of `split` from a generator of random problems: how every
    synthetic task samples. The same (n, seed, split) always gives the same problems, and a problem's
    split comes from its id (`split_of`), so train and test never share one."""
    rng = random.Random(f"{task_name}-{seed}-{split}")
    seen: set[str] = set()
    problems: list[Problem] = []
    for _ in range(n * 200):
        if len(problems) == n:
            break
        problem = make(rng)
        if problem.id in seen or split_of(problem.id) != split:
            continue
        seen.add(problem.id)
        problems.append(problem)
    return problems


def problem_of(trajectory: Trajectory) -> Problem:
    """The problem a trajectory solves, enough to build its prompt (SRL needs no reference answer)."""
    return Problem(
        id=str(trajectory.metadata.get("id", trajectory.problem)),
        text=trajectory.problem,
        answer=trajectory.expected_outcome,
        metadata=trajectory.metadata,
    )
