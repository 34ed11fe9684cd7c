"""Validation during RL: held-out task metrics every N steps, the best model kept, early stopping.

RL reward on the training prompts can rise while held-out accuracy falls (reward hacking, overfit
prompts), so the run is judged on problems it never trains on, with the task's own verifier. The
start model is scored first, so "best" means better than where the stage began; `best/` always
holds the best model seen and `best/validation.json` says when and why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from srl_rlvr.evaluate.generation import evaluate_task
from srl_rlvr.tasks import Problem, Task

log = logging.getLogger(__name__)

PRIMARY = "reward"


class ValidationCallback(TrainerCallback):
    def __init__(
        self,
        trainer: Any,
        task: Task,
        problems: Sequence[Problem],
        out_dir: str | Path,
        every: int,
        patience: int = 0,
        max_new_tokens: int = 128,
        batch_size: int = 32,
    ) -> None:
        self.trainer, self.task, self.problems = trainer, task, list(problems)
        self.best_dir = Path(out_dir) / "best"
        self.every, self.patience = every, patience
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.best: float | None = None
        self.stale = 0
        self._pending: dict[str, float] = {}
        record = self.best_dir / "validation.json"
        if record.is_file():  # a resumed run keeps its best so far
            saved = json.loads(record.read_text())
            self.best, self.stale = saved["metrics"][PRIMARY], saved.get("stale", 0)

    def _validate(self, state: TrainerState) -> dict[str, float]:
        metrics = evaluate_task(
            self.trainer.model,
            self.trainer.processing_class,
            self.task,
            self.problems,
            self.max_new_tokens,
            self.batch_size,
        )
        score = metrics[PRIMARY]
        if self.best is None or score > self.best:
            self.best, self.stale = score, 0
            self.trainer.save_model(str(self.best_dir))
            if state.is_world_process_zero:
                record = {"step": state.global_step, "metrics": metrics, "stale": 0}
                (self.best_dir / "validation.json").write_text(json.dumps(record, indent=2))
        else:
            self.stale += 1
        return {f"val/{k}": v for k, v in metrics.items()} | {"val/best_reward": self.best}

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.best is None:
            start = self._validate(state)
            self._pending = {k.replace("val/", "val_start/"): v for k, v in start.items()}
            log.info("validation at start: %s", start)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step % self.every:
            return
        self._pending = {**self._pending, **self._validate(state)}
        control.should_log = True  # the metrics ride on this step's log record
        if self.patience and self.stale >= self.patience:
            log.info(
                "early stop at step %d: no better validation reward in %d checks (best %.4f)",
                state.global_step,
                self.stale,
                self.best,
            )
            control.should_training_stop = True

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs is not None and self._pending:
            logs.update(self._pending)
            self._pending = {}
