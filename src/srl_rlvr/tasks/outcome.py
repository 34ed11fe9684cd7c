"""The task's own check of a production answer: the outcome the server records and monitoring counts.

A production request has no reference answer, so a task verifies what it can by itself. A task with
`problem_from_text(text)` (arithmetic works its answer out from the problem's wording) checks the
answer itself: `checked == "answer"`. Any other task checks the format only (`parse()` finds an
answer): `checked == "format"`, a weaker signal that monitoring reports apart. The problem's metadata
(number of steps, operations) comes along as the request's features, so monitoring can slice
production traffic the way evaluation slices a test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from srl_rlvr.tasks import Problem, Task, safe_reward


@dataclass(frozen=True)
class Outcome:
    value: float | None
    checked: str | None  # "answer", "format", or None when the task could not be run
    features: dict[str, Any] = field(default_factory=dict)


def problem_from_text(task: Task, text: str) -> Problem | None:
    """The problem a request states, with its reference answer, when the task can work it out."""
    recognise = getattr(task, "problem_from_text", None)
    return recognise(text) if recognise is not None else None


def scalar_features(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata values a slice can be made of (lists and dicts are not categories)."""
    return {k: v for k, v in metadata.items() if isinstance(v, str | int | float | bool)}


def check_answer(task: Task, text: str, completion: str) -> Outcome:
    problem = problem_from_text(task, text)
    if problem is not None:
        return Outcome(safe_reward(task, completion, problem), "answer", scalar_features(problem.metadata))
    return Outcome(1.0 if task.parse(completion) is not None else 0.0, "format")


def correction_error(task: Task, text: str, correction: str) -> str | None:
    """Why a user's correction cannot be a training example, or None when it passes the task's check."""
    if task.parse(correction) is None:
        return f"the {task.name} task finds no answer in it"
    problem = problem_from_text(task, text)
    if problem is not None and safe_reward(task, correction, problem) < 1.0:
        return f"its answer {task.parse(correction)!r} is not the problem's ({problem.answer!r})"
    return None
