"""Adaptive KL: the controller that moves the KL weight toward a target, and the callback that
feeds it each logged KL and keeps its weight across checkpoints (the RL stages' `adaptive_kl`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


@dataclass
class AdaptiveKLController:
    """Proportional KL controller (Ziegler et al. 2019, "Fine-Tuning LMs from Human Preferences", §2.2).

    The weight grows when measured KL is above `target` and shrinks below it, by at most
    `max_error / horizon` per update, so one noisy step cannot swing it.
    """

    weight: float
    target: float
    horizon: int = 10
    max_error: float = 0.2
    min_weight: float = 1e-6

    def update(self, kl: float) -> float:
        if math.isfinite(kl):
            error = max(-self.max_error, min(self.max_error, kl / self.target - 1.0))
            self.weight = max(self.min_weight, self.weight * (1.0 + error / self.horizon))
        return self.weight


class AdaptiveKLCallback(TrainerCallback):
    """Feeds each logged KL to the controller and writes the new weight into the trainer's `beta`.

    TRL's GRPO loss reads `trainer.beta` at every step, so setting it is all the control needed.
    Must run before MetricsLogger so `kl_weight` lands in metrics.jsonl. The weight is saved with
    each checkpoint, so a resumed run continues with the weight it had, not the initial one.
    """

    FILE = "kl_controller.json"

    def __init__(self, trainer: Any, controller: AdaptiveKLController) -> None:
        self.trainer, self.controller = trainer, controller

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        saved = Path(args.output_dir) / f"checkpoint-{state.global_step}" / self.FILE
        if state.global_step > 0 and saved.is_file():
            self.controller.weight = json.loads(saved.read_text())["weight"]
            self.trainer.beta = self.controller.weight

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            (folder / self.FILE).write_text(json.dumps({"weight": self.controller.weight}))

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        # A step whose groups were all filtered measured no KL: leave the weight alone.
        if logs is not None and "kl" in logs and logs.get("filtered_group_frac", 0.0) < 1.0:
            self.trainer.beta = self.controller.update(float(logs["kl"]))
            logs["kl_weight"] = self.trainer.beta
