"""The SRL parser: cut a free-text expert solution into numbered steps, checked by reassembling them.

SRL trains on step-wise trajectories (Deng et al. 2025, arXiv 2510.25992, section 3.1 parses each
expert solution into steps before building its step-wise prompts); when a teacher writes prose, a
model has to do that cutting. This task teaches a small model the job: the input is a solution as
one paragraph, the output its steps as `1. ...`, `2. ...` lines. Verified, not judged: the steps,
their numbers removed and joined by spaces, must give back the solution word for word (nothing
dropped, added or reworded), and the reward is then the F1 of the step boundaries against the
reference cut (1.0 for the same cut). A completion that does not reassemble scores 0.

Solutions come from the arithmetic task's programmatic expert (each step its reason and its
calculation, `Add 4. 3+4=7.`: a sentence splitter would cut twice as often as it should), or from a
user's JSONL of `{id, solution, steps}` rows (option `path`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.errors import DataError
from srl_rlvr.tasks.arithmetic import ArithmeticTask
from srl_rlvr.tasks.base import Problem, Split, split_of

_NUMBERED = re.compile(r"^\s*(\d+)[.)]\s+(.*\S)\s*$")


def _words(text: str) -> list[str]:
    return text.split()


def boundaries(steps: list[str]) -> set[int]:
    """Word offsets where a new step starts (after the first): the cut, independent of spacing."""
    cuts, offset = set(), 0
    for step in steps[:-1]:
        offset += len(_words(step))
        cuts.add(offset)
    return cuts


def boundary_f1(predicted: list[str], reference: list[str]) -> float:
    p, r = boundaries(predicted), boundaries(reference)
    if not p and not r:
        return 1.0
    hits = len(p & r)
    return 2 * hits / (len(p) + len(r)) if hits else 0.0


class SrlParserTask:
    name = "srl_parser"
    instruction = (
        "Split this solution into its steps. Write each step as a numbered line ('1. ...'), copying the "
        "solution's words exactly and in order.\n\nSolution: "
    )

    def __init__(self, path: str | None = None, **arithmetic_options: int) -> None:
        self.path = path
        self.source = ArithmeticTask(**arithmetic_options)

    def prompt(self, problem: Problem) -> str:
        return self.instruction + problem.text + "\nSteps:\n"

    def parse(self, completion: str) -> list[str] | None:
        """The numbered lines, in order; None when there are none or their numbers skip."""
        steps = []
        for line in completion.splitlines():
            match = _NUMBERED.match(line)
            if match is None:
                continue
            if int(match.group(1)) != len(steps) + 1:
                return None
            steps.append(match.group(2))
        return steps or None

    def reward(self, completion: str, problem: Problem) -> float:
        steps = self.parse(completion)
        if steps is None or _words(" ".join(steps)) != _words(problem.text):
            return 0.0
        return boundary_f1(steps, list(problem.answer))

    def metrics(self, completions: list[str], problems: list[Problem]) -> dict[str, float]:
        rewards = [self.reward(c, p) for c, p in zip(completions, problems, strict=True)]
        reassembled = [
            (steps := self.parse(c)) is not None and _words(" ".join(steps)) == _words(p.text)
            for c, p in zip(completions, problems, strict=True)
        ]
        n = max(len(problems), 1)
        return {
            "exact_cut": sum(r == 1.0 for r in rewards) / n,
            "boundary_f1": sum(rewards) / n,
            "reassembled": sum(reassembled) / n,
        }

    def sample(self, n: int, seed: int, split: Split) -> list[Problem]:
        if self.path is not None:
            return [p for p in self._file_problems() if split_of(p.id) == split][:n]
        problems = []
        for source in self.source.sample(n, seed, split):
            steps = [f"{s.reasoning} {s.action}." for s in self.source.solve(source).steps]
            text = " ".join(steps)
            problems.append(
                Problem(id=f"parse-{source.id}", text=text, answer=steps, metadata=source.metadata)
            )
        return problems

    def _file_problems(self) -> list[Problem]:
        path = Path(self.path or "")
        if not path.is_file():
            raise DataError(f"srl_parser: solutions file not found: {path}")
        problems = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                steps = [str(s) for s in row["steps"]]
                problems.append(Problem(id=str(row["id"]), text=str(row["solution"]), answer=steps))
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{path}:{number}: a row needs id, solution and steps ({e})") from None
            if _words(" ".join(steps)) != _words(problems[-1].text):
                raise DataError(f"{path}:{number}: the steps do not reassemble into the solution")
        return problems

    def solve(self, problem: Problem) -> Trajectory:
        steps = list(problem.answer)
        return Trajectory(
            problem=problem.text,
            steps=[Step(action=f"{i}. {step}") for i, step in enumerate(steps, 1)],
            expected_outcome="\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1)),
            metadata={"id": problem.id},
            provenance={"teacher": "solver:srl_parser"},
        )
