"""Validation during RL: held-out scores every N steps and at the end, the best model kept as `final/`.

RL reward on the training prompts can rise while held-out quality falls (reward hacking, overfit
prompts), so a run is judged on data it never trains on: RLVR by the task's verifier on held-out
problems, SRL by the mean step reward of greedy next-step predictions on held-out trajectories (the
SRL paper keeps the checkpoint that is best on its validation set, Deng et al. 2025 §5.1). The start
model is scored first, so "best" means better than where the stage began. During training `best/`
holds the best model so far (a resumed run continues from its record); when training ends the best
weights are loaded back, so the stage's `final/` is the best model, with `final/validation.json`
saying when and why.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from srl_rlvr.distributed import barrier, from_main, is_main

log = logging.getLogger(__name__)

Score = Callable[[Any, Any], dict[str, float]]  # (model, tokenizer) -> metrics


class ValidationCallback(TrainerCallback):
    def __init__(
        self,
        trainer: Any,
        score: Score,
        primary: str,
        out_dir: str | Path,
        every: int,
        patience: int = 0,
    ) -> None:
        self.trainer, self.score, self.primary = trainer, score, primary
        self.best_dir = Path(out_dir) / "best"
        self.every, self.patience = every, patience
        self.best: float | None = None
        self.best_step: int | None = None
        self.last_validated: int | None = None
        self.stale = 0
        self._pending: dict[str, float] = {}
        record = self.best_dir / "validation.json"
        if record.is_file():  # a resumed run keeps its best so far
            saved = json.loads(record.read_text())
            self.best, self.stale = saved["metrics"][primary], saved.get("stale", 0)
            self.best_step = saved["step"]

    def _validate(self, state: TrainerState) -> dict[str, float]:
        # Every rank scores (under FSDP the forward passes are collectives), and all keep the main
        # process's numbers, so they agree on which step is best and on early stopping.
        metrics = from_main(self.score(self.trainer.model, self.trainer.processing_class))
        self.last_validated = state.global_step
        score = metrics[self.primary]
        if self.best is None or score > self.best:
            self.best, self.best_step, self.stale = score, state.global_step, 0
            self.trainer.save_model(str(self.best_dir))
            if state.is_world_process_zero:
                record = {"step": state.global_step, "primary": self.primary, "metrics": metrics, "stale": 0}
                (self.best_dir / "validation.json").write_text(json.dumps(record, indent=2))
        else:
            self.stale += 1
        return {f"val/{k}": v for k, v in metrics.items()} | {f"val/best_{self.primary}": self.best}

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
                "early stop at step %d: no better validation %s in %d checks (best %.4f)",
                state.global_step,
                self.primary,
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

    def keep_best(self, state: TrainerState) -> None:
        """At the end of a finished run: validate the last step if it was not, then load the best
        weights back into the model, so what the caller saves as `final/` is the best model."""
        if self.last_validated != state.global_step:
            self._validate(state)
        if self.best_step is not None and self.best_step != state.global_step:
            barrier()  # the main process has finished writing best/
            log.info("keeping the best model: step %d (%s %.4f)", self.best_step, self.primary, self.best)
            self.trainer._load_from_checkpoint(str(self.best_dir))

    def record_into(self, final: Path) -> None:
        """Move the best model's record into `final/` and drop the copy in `best/` (main process)."""
        if not is_main():
            return
        record = self.best_dir / "validation.json"
        if record.is_file():
            shutil.copy(record, final / "validation.json")
        shutil.rmtree(self.best_dir, ignore_errors=True)
