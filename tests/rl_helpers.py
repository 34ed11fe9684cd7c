"""Pieces several RL test files use: a task a random model solves half the time, SIGTERM and NaN triggers."""

import os
import signal

from transformers import TrainerCallback

from srl_rlvr.tasks import Problem


class FirstCharacterTask:
    """Correct when the completion starts with an ASCII character. A random byte-level model's first
    byte is below 0x80 about half the time, so most prompts yield both a correct and a wrong sample."""

    name = "first_character"

    def prompt(self, problem: Problem) -> str:
        return f"Start your answer with an ASCII character. {problem.text}\n"

    def parse(self, completion: str) -> str | None:
        return completion[:1] or None

    def reward(self, completion: str, problem: Problem) -> float:
        first = self.parse(completion)
        return 1.0 if first is not None and first.isascii() else 0.0

    def metrics(self, completions: list[str], problems: list[Problem]) -> dict[str, float]:
        rewards = [self.reward(c, p) for c, p in zip(completions, problems, strict=True)]
        return {"accuracy": sum(rewards) / max(len(rewards), 1)}

    def sample(self, n: int, seed: int, split: str) -> list[Problem]:
        return [Problem(id=f"{split}-{seed}-{i}", text=f"Problem {i}.", answer=None) for i in range(n)]


class SigtermAtStep(TrainerCallback):
    """Sends this process SIGTERM as a step begins, like a scheduler preempting the job."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


class NaNGradientsAtStep(TrainerCallback):
    """Simulates a blown-up update: the optimizer step at `step` applies NaN gradients."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step + 1 == self.step:
            for parameter in model.parameters():
                if parameter.grad is not None:
                    parameter.grad.fill_(float("nan"))
