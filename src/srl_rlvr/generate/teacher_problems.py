"""Problems the teacher writes for a test set (`srl-rlvr testdata build --generated N`), each kept
only when the task's verifier can score it.

The same `ProblemGenerator` as a generation run's `collaboration.problems.source: generate` (shown
examples, near-duplicate removal, `problems.jsonl` kept so a rerun asks for nothing it has), but
the teacher also answers each problem as a student should. A test problem is worth as much as its
reference answer, so the task checks it where it can:

- a task that works a problem's answer out from its text (`problem_from_text`, as arithmetic does)
  answers it itself: its answer replaces the teacher's, and a text it does not recognise is not
  one of its problems;
- any other task scores the teacher's solution (or, without one, the task's programmatic expert's)
  against the teacher's answer. At least `collaboration.min_verification_score` shows the answer is
  one the verifier scores and the teacher agrees with itself; no answer, a verifier that fails on
  the problem, or a lower score drops it.

Leakage against training data and difficulty are the test-set builder's (`evaluate/testdata.py`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.config import Config, EndpointConfig
from srl_rlvr.errors import ConfigError, UserError
from srl_rlvr.generate.orchestrator import add_usage, endpoint_client
from srl_rlvr.generate.problems import SOLUTION_KEY, ProblemGenerator
from srl_rlvr.tasks import Problem, Task, load_task


@dataclass
class TeacherProblems:
    problems: list[Problem]  # verified; metadata["answer_check"] says how
    unscorable: list[dict[str, str]]  # {id, text, reason} of each problem the verifier cannot score
    teacher: str  # model@base_url
    requests: int  # sent this run; 0 when every problem came from the folder's problems.jsonl
    near_duplicates: int  # proposals dropped as copies of an earlier problem or a shown example
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)  # tokens and cost per model

    def record(self) -> dict[str, Any]:
        """What a test set's manifest keeps about how its teacher problems were made."""
        return {
            "teacher": self.teacher,
            "verified": len(self.problems),
            "unscorable": self.unscorable,
            "near_duplicates": self.near_duplicates,
            "requests": self.requests,
            "usage": self.usage,
        }


def verified(task: Task, problem: Problem, min_score: float) -> tuple[Problem | None, str]:
    """`problem` with a reference answer the task stands behind, or None and why (module docstring)."""
    metadata = {k: v for k, v in problem.metadata.items() if k != SOLUTION_KEY}
    recognise = getattr(task, "problem_from_text", None)
    if recognise is not None:
        own = recognise(problem.text)
        if own is None:
            return None, f"the {task.name} task does not recognise it as one of its problems"
        return Problem(
            problem.id, problem.text, own.answer, {**own.metadata, **metadata, "answer_check": "task"}
        ), ""
    if problem.answer is None:
        return None, "no reference answer"
    solution, by = problem.metadata.get(SOLUTION_KEY), "teacher"
    try:
        if not isinstance(solution, str) and hasattr(task, "solve"):
            solution, by = task.solve(problem).solution_text(), "expert"
        if not isinstance(solution, str):
            return None, "no solution to check the answer with: the teacher gave none, the task has no expert"
        score = float(task.reward(solution, problem))
    except UserError:  # the verifier cannot run at all (a sandbox missing): the user must act
        raise
    except Exception as e:  # a generated answer of the wrong shape, or a user task's code
        return None, f"the task's verifier fails on it ({type(e).__name__}: {e})"
    if score < min_score:
        return (
            None,
            f"the task's verifier scores the {by}'s solution {score:.2f} against the reference answer",
        )
    return Problem(problem.id, problem.text, problem.answer, {**metadata, "answer_check": by}), ""


async def _propose(config: Config, out_dir: Path, n: int) -> TeacherProblems:
    collab = config.collaboration
    assert isinstance(collab.teacher, EndpointConfig)
    task = load_task(config.task.name, config.task.options)
    client = endpoint_client(collab.teacher, collab, "teacher", {})
    generator = ProblemGenerator.from_config(config, task, client, out_dir, n, with_solution=True)
    proposed: list[Problem] = []
    try:
        while len(proposed) < n and (problem := await generator.next()) is not None:
            proposed.append(problem)
    finally:
        await client.aclose()
    problems, unscorable = [], []
    for problem in proposed:
        kept, why = verified(task, problem, collab.min_verification_score)
        if kept is not None:
            problems.append(kept)
        else:
            unscorable.append({"id": problem.id, "text": problem.text, "reason": why})
    return TeacherProblems(
        problems,
        unscorable,
        f"{client.model}@{client.base_url}",
        generator.requests,
        generator.duplicates,
        add_usage({}, [client]),
    )


def teacher_problems(config: Config, out_dir: str | Path, n: int) -> TeacherProblems:
    """Up to `n` new problems from `collaboration.teacher`, kept in `out_dir/problems.jsonl`. Fewer
    when three requests in a row bring nothing new."""
    if not isinstance(config.collaboration.teacher, EndpointConfig):
        raise ConfigError(
            "testdata build --generated: the teacher writes the problems, so collaboration.teacher must be "
            "an endpoint {base_url, model, api_key_env}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_propose(config, out, n))
