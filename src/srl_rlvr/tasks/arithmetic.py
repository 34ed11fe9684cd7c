"""Synthetic multi-step arithmetic: the embedded default task.

Each problem is a chain of operations on a running value ("Start with 7. Add 5. Multiply by 3.").
The programmatic solver writes one step per operation (`7+5=12`) and a final `Answer: 32`, so the
task has exact expert trajectories for SRL, an exact verifier for RLVR, and a difficulty knob (the
number of steps) for generalisation checks. Splits are assigned by hashing the problem text, so
train and test never share a problem.
"""

from __future__ import annotations

import random
import re

from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.tasks.base import Problem, Split, sample_synthetic

_OPS = {
    "add": ("Add {x}.", "+", lambda a, x: a + x),
    "sub": ("Subtract {x}.", "-", lambda a, x: a - x),
    "mul": ("Multiply by {x}.", "*", lambda a, x: a * x),
}
_ANSWER = re.compile(r"Answer:\s*(-?\d+)")
_STATED = re.compile(r"=\s*(-?\d+)\s*$")
_START = re.compile(r"^Start with (-?\d+)\.")
_STEP = re.compile(r" (Add|Subtract|Multiply by) (-?\d+)\.")
_STEP_OPS = {"Add": "add", "Subtract": "sub", "Multiply by": "mul"}


def _problem(start: int, chain: list[tuple[str, int]]) -> Problem:
    text = f"Start with {start}. " + " ".join(_OPS[op][0].format(x=x) for op, x in chain)
    value = start
    for op, x in chain:
        value = _OPS[op][2](value, x)
    metadata = {
        "num_steps": len(chain),
        "ops": ",".join(sorted({op for op, _ in chain})),
        "start": start,
        "chain": [[op, x] for op, x in chain],
    }
    return Problem(id=text, text=text, answer=value, metadata=metadata)


class ArithmeticTask:
    name = "arithmetic"
    instruction = "Solve step by step. End with Answer: N\n"

    def __init__(
        self,
        min_steps: int = 2,
        max_steps: int = 4,
        max_operand: int = 20,
        max_multiplier: int = 5,
        ops: tuple[str, ...] | list[str] = ("add", "sub", "mul"),
    ) -> None:
        unknown = set(ops) - set(_OPS)
        if unknown or not ops:
            raise ValueError(f"arithmetic ops must be a non-empty subset of {sorted(_OPS)}, got {list(ops)}")
        if not 1 <= min_steps <= max_steps:
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
        self.min_steps, self.max_steps = min_steps, max_steps
        self.max_operand, self.max_multiplier = max_operand, max_multiplier
        self.ops = tuple(ops)

    def _random_problem(self, rng: random.Random) -> Problem:
        start = rng.randint(1, self.max_operand)
        chain = []
        for _ in range(rng.randint(self.min_steps, self.max_steps)):
            op = rng.choice(self.ops)
            x = rng.randint(2, self.max_multiplier) if op == "mul" else rng.randint(1, self.max_operand)
            chain.append((op, x))
        return _problem(start, chain)

    def problem_from_text(self, text: str) -> Problem | None:
        """The problem a production request states, with its answer worked out, or None when the
        text is not one of this task's problems: the server verifies answers with it."""
        text = text.strip()
        start = _START.match(text)
        if start is None:
            return None
        rest = text[start.end() :]
        chain = [(_STEP_OPS[op], int(x)) for op, x in _STEP.findall(rest)]
        if not chain or _STEP.sub("", rest).strip():
            return None
        return _problem(int(start[1]), chain)

    def sample(self, n: int, seed: int, split: Split) -> list[Problem]:
        return sample_synthetic("arithmetic", self._random_problem, n, seed, split)

    def prompt(self, problem: Problem) -> str:
        return f"{self.instruction}{problem.text}\n"

    def parse(self, completion: str) -> int | None:
        found = _ANSWER.findall(completion)
        return int(found[-1]) if found else None

    def reward(self, completion: str, problem: Problem) -> float:
        return 1.0 if self.parse(completion) == int(problem.answer) else 0.0

    def metrics(self, completions: list[str], problems: list[Problem]) -> dict[str, float]:
        parsed = [self.parse(c) for c in completions]
        n = max(len(problems), 1)
        return {
            "accuracy": sum(p == int(q.answer) for p, q in zip(parsed, problems, strict=True)) / n,
            "parse_rate": sum(p is not None for p in parsed) / n,
        }

    def check_step(self, problem: Problem, index: int, action: str) -> float | None:
        """Whether step `index` (0-based) states the running value after that many operations: SRL's
        optional step check. None past the operations (the answer line, judged by the verifier)."""
        full = self.problem_from_text(problem.text)
        if full is None or index >= len(full.metadata["chain"]):
            return None
        value = full.metadata["start"]
        for op, x in full.metadata["chain"][: index + 1]:
            value = _OPS[op][2](value, x)
        stated = _STATED.search(action)
        return 1.0 if stated is not None and int(stated[1]) == value else 0.0

    def solve(self, problem: Problem) -> Trajectory:
        value = problem.metadata["start"]
        steps = []
        for op, x in problem.metadata["chain"]:
            new = _OPS[op][2](value, x)
            steps.append(Step(action=f"{value}{_OPS[op][1]}{x}={new}", reasoning=_OPS[op][0].format(x=x)))
            value = new
        steps.append(Step(action=f"Answer: {value}", reasoning="The last value is the answer."))
        return Trajectory(
            problem=problem.text,
            steps=steps,
            expected_outcome=str(problem.answer),
            metadata={"id": problem.id, **{k: v for k, v in problem.metadata.items() if k != "chain"}},
            provenance={"teacher": "solver:arithmetic"},
        )
