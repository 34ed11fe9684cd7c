"""Pieces several RL test files use: a task a random model solves half the time, SIGTERM and NaN
triggers, and the rollout trainer on the tiny model with every optimiser batch kept for inspection."""

import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import TrainerCallback

from srl_rlvr.config import build_config
from srl_rlvr.modeling import load_model, materialize
from srl_rlvr.tasks import Problem
from srl_rlvr.train.group_trainer import GroupTrainer, grpo_args


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


class StopAtStep(TrainerCallback):
    """Ends training after `step` (its checkpoint saved), as a preempted job does."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == self.step:
            control.should_save = control.should_training_stop = True


class NaNGradientsAtStep(TrainerCallback):
    """Simulates a blown-up update: the optimizer step at `step` applies NaN gradients."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step + 1 == self.step:
            for parameter in model.parameters():
                if parameter.grad is not None:
                    parameter.grad.fill_(float("nan"))


def half_constant_reward(completions: list[str], constant: list[bool], **_: Any) -> list[float]:
    """0.5 whatever the answer for the 'constant' prompts (no signal); else 1 for an ASCII first
    character, which a random byte-level model writes about half the time."""
    return [
        0.5 if fixed else float(c[:1].isascii() and c != "")
        for c, fixed in zip(completions, constant, strict=True)
    ]


class RecordingTrainer(GroupTrainer):
    """The rollout trainer, keeping each batch it hands to the optimiser so the test can look at it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[dict[str, Any]] = []

    def _generate_and_score_completions(self, inputs):  # type: ignore[no-untyped-def]
        output = super()._generate_and_score_completions(inputs)
        self.batches.append(output)
        return output


def recording_trainer(
    tmp_path: Path,
    *overrides: str,
    reward_funcs: Sequence[Callable[..., list[float]]] = (half_constant_reward,),
    trainer_class: type[GroupTrainer] = RecordingTrainer,
) -> Any:
    """The rollout trainer (`trainer_class`) on the tiny model: 8 completions a step in groups of 4,
    half the prompts 'constant' (their rewards never differ)."""
    config = build_config(
        overrides=[
            "rlvr.batch_size=8",
            "rlvr.num_generations=4",
            "rlvr.max_completion_length=4",
            "rlvr.learning_rate=1e-4",
            *overrides,
        ]
    )
    prompts = [f"Problem {i} (constant)." if i % 2 else f"Problem {i}. Start with ASCII." for i in range(16)]
    dataset = Dataset.from_dict({"prompt": prompts, "constant": [i % 2 == 1 for i in range(16)]})
    model, tokenizer = load_model(materialize(config.model, tmp_path / "base"))
    args = grpo_args(
        config, config.rlvr, tmp_path, config.rlvr.loss_type, entropy_coef=config.rlvr.entropy_coef or 0.0
    )
    return trainer_class(
        model=model,
        reward_funcs=list(reward_funcs),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        stage=config.rlvr,
    )
