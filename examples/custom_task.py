"""A user task in one file: reverse a word, step by step.

Use it with `task.name: custom_task:ReverseTask` (run from this folder, or put the module on
PYTHONPATH), e.g. `srl-rlvr tasks show custom_task:ReverseTask` or
`srl-rlvr generate task.name=custom_task:ReverseTask --n 100`.
"""

from __future__ import annotations

import random

from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.tasks.base import Problem, Split, split_of

WORDS = ["model", "reward", "policy", "trajectory", "gradient", "sandbox", "verifier", "teacher", "adapter"]


class ReverseTask:
    name = "reverse"

    def sample(self, n: int, seed: int, split: Split) -> list[Problem]:
        words = [w for w in WORDS if split_of(w) == split] or WORDS
        rng = random.Random(f"reverse-{seed}-{split}")
        return [Problem(id=f"{i}-{w}", text=w, answer=w[::-1]) for i, w in enumerate(rng.choices(words, k=n))]

    def prompt(self, problem: Problem) -> str:
        return f"Reverse the word, one letter a step, then write 'Answer: ...'.\nWord: {problem.text}\n"

    def parse(self, completion: str) -> str | None:
        lines = [line for line in completion.splitlines() if line.startswith("Answer:")]
        return lines[-1].removeprefix("Answer:").strip() if lines else None

    def reward(self, completion: str, problem: Problem) -> float:
        return 1.0 if self.parse(completion) == problem.answer else 0.0

    def metrics(self, completions: list[str], problems: list[Problem]) -> dict[str, float]:
        n = max(len(problems), 1)
        return {"accuracy": sum(self.reward(c, p) for c, p in zip(completions, problems, strict=True)) / n}

    def solve(self, problem: Problem) -> Trajectory:
        letters = list(reversed(problem.text))
        steps = [
            Step(action="".join(letters[: i + 1]), reasoning=f"take letter {len(problem.text) - i}")
            for i in range(len(letters))
        ]
        steps.append(Step(action=f"Answer: {problem.answer}"))
        return Trajectory(
            problem=problem.text,
            steps=steps,
            expected_outcome=problem.answer,
            metadata={"id": problem.id, "length": len(problem.text)},
        )
