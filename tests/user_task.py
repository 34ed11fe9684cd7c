"""A user's own task in one file, named `user_task:ShoutTask` the way a user names theirs: upper-case
a word, one letter a step. Its `name` holds characters a registry refuses, as a user's may."""

from __future__ import annotations

import random

from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.tasks.base import Problem, Split, split_of

WORDS = ["cat", "dog", "sun", "map", "cup", "pen", "box", "hat", "kit", "jar", "fog", "ink"]


class ShoutTask:
    name = "shout it: v1/beta"

    def sample(self, n: int, seed: int, split: Split) -> list[Problem]:
        words = [w for w in WORDS if split_of(w) == split] or WORDS
        rng = random.Random(f"shout-{seed}-{split}")
        return [
            Problem(id=f"{i}-{w}", text=w, answer=w.upper()) for i, w in enumerate(rng.choices(words, k=n))
        ]

    def prompt(self, problem: Problem) -> str:
        return f"Shout the word.\nWord: {problem.text}\n"

    def parse(self, completion: str) -> str | None:
        lines = [line for line in completion.splitlines() if line.startswith("Answer:")]
        return lines[-1].removeprefix("Answer:").strip() if lines else None

    def reward(self, completion: str, problem: Problem) -> float:
        return 1.0 if self.parse(completion) == problem.answer else 0.0

    def metrics(self, completions: list[str], problems: list[Problem]) -> dict[str, float]:
        n = max(len(problems), 1)
        return {"accuracy": sum(self.reward(c, p) for c, p in zip(completions, problems, strict=True)) / n}

    def solve(self, problem: Problem) -> Trajectory:
        steps = [Step(action=f"{c} -> {c.upper()}") for c in problem.text]
        steps.append(Step(action=f"Answer: {problem.answer}"))
        return Trajectory(problem=problem.text, steps=steps, expected_outcome=str(problem.answer))
