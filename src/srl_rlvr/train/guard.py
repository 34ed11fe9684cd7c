"""Stability guard: undo a blown-up RL step instead of training on from corrupted weights.

RL on language models diverges suddenly: NaN weights after an update, a NaN loss, a KL that jumps
far past its target and stays there, or a reward that collapses. A KL spike must last two logged
steps: the k3 estimator TRL logs is heavy-tailed, and one sampled token the policy has learned to
avoid but the reference still likes (the habit being trained away) spikes a single batch. Continuing from there wastes the run. After each
update the guard checks the trainable weights are finite, and after each logged step it checks the
logs; on a hit it cancels that step's checkpoint, restores the model, optimizer and scheduler from
the last good checkpoint (checkpoints are only written on steps that passed), lowers the learning
rate, puts the adaptive KL weight back to the checkpoint's, and writes why to `stability.jsonl`. The scheduler restarts from the checkpoint's position,
so the restored steps are re-run at the lower rate. The rollouts TRL buffered for later minibatches
and passes (with their old log-probs, reference log-probs and PPO's old values) came from the
diverged weights' run-up and are dropped: the next step samples afresh from the restored weights.
`global_step` keeps counting the steps spent (the run's step budget and its log), so a checkpoint's
number is the steps taken, not the updates its weights hold. After `max_restores` it stops with an error
that says what to change. A step-0 checkpoint is written at the start so there is always one.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from srl_rlvr.config import PolicyRLConfig
from srl_rlvr.errors import UserError
from srl_rlvr.train.adaptive_kl import AdaptiveKLCallback, AdaptiveKLController
from srl_rlvr.train.callbacks import last_checkpoint

log = logging.getLogger(__name__)

WATCHED = ("loss", "grad_norm", "kl", "reward")


class TrainingUnstable(UserError):
    """The guard restored `max_restores` times and the run still diverges."""


def instability(
    logs: dict[str, float], kl_history: list[float], reward_history: list[float], factor: float, max_kl: float
) -> str | None:
    """Why this step's logs look diverged, or None. Needs a few steps of history before spike checks."""
    for key in WATCHED:
        if key in logs and not math.isfinite(float(logs[key])):
            return f"{key} is {logs[key]}"
    if "kl" in logs and len(kl_history) >= 3:
        limit = factor * max(statistics.fmean(kl_history), max_kl)
        if logs["kl"] > limit:
            return f"kl spike: {logs['kl']:.4g} > {factor:g} x max(recent mean, max_kl) = {limit:.4g}"
    if "reward" in logs and len(reward_history) >= 5:
        mean, std = statistics.fmean(reward_history), statistics.pstdev(reward_history)
        floor = mean - factor * max(std, 0.05)
        if logs["reward"] < floor:
            return (
                f"reward drop: {logs['reward']:.4g} < recent mean {mean:.4g} - {factor:g} x std = {floor:.4g}"
            )
    return None


def stability_guard(
    trainer: Any, out_dir: Path, stage: PolicyRLConfig, kl: AdaptiveKLController | None = None
) -> StabilityGuard:
    """The guard with a stage section's settings (`srl:` or `rlvr:`); `kl` is the stage's adaptive KL
    controller, whose weight a restore rolls back with the model."""
    return StabilityGuard(
        trainer,
        out_dir,
        spike_factor=stage.spike_factor,
        max_kl=stage.max_kl,
        lr_factor=stage.restore_lr_factor,
        max_restores=stage.max_restores,
        kl=kl,
    )


class StabilityGuard(TrainerCallback):
    """Restores the last good checkpoint when a step diverges (see module docstring)."""

    def __init__(
        self,
        trainer: Any,
        out_dir: str | Path,
        spike_factor: float = 5.0,
        max_kl: float = 0.1,
        lr_factor: float = 0.5,
        max_restores: int = 3,
        window: int = 20,
        kl: AdaptiveKLController | None = None,
    ) -> None:
        self.trainer, self.out_dir, self.kl = trainer, Path(out_dir), kl
        self.spike_factor, self.max_kl = spike_factor, max_kl
        self.lr_factor, self.max_restores = lr_factor, max_restores
        self.kl_history: deque[float] = deque(maxlen=window)
        self.reward_history: deque[float] = deque(maxlen=window)
        self.restores = 0
        self.kl_spikes = 0  # consecutive logged steps with a KL spike
        self.lr_scale = 1.0
        self._weights_finite = True
        self._last_restore_step = -1
        self._base_lrs: list[float] | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        scheduler = self.trainer.lr_scheduler
        self._base_lrs = list(getattr(scheduler, "base_lrs", [])) or None
        if last_checkpoint(self.out_dir) is None:
            self.trainer._save_checkpoint(self.trainer.model, trial=None)
            if self.kl is not None and state.is_world_process_zero:  # callbacks' on_save does not run here
                saved = self.out_dir / f"checkpoint-{state.global_step}" / AdaptiveKLCallback.FILE
                saved.write_text(json.dumps({"weight": self.kl.weight}))

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        parameters = (p for p in self.trainer.model.parameters() if p.requires_grad)
        self._weights_finite = all(bool(torch.isfinite(p).all()) for p in parameters)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self._weights_finite:
            self._weights_finite = True
            self._recover("non-finite (nan/inf) weights after the update", state, control)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs:
            return
        reason = instability(
            logs, list(self.kl_history), list(self.reward_history), self.spike_factor, self.max_kl
        )
        if reason is not None and reason.startswith("kl spike"):
            self.kl_spikes += 1
            if self.kl_spikes < 2:
                log.info("step %d: %s (restores if the next step spikes too)", state.global_step, reason)
                return
        self.kl_spikes = 0 if reason is None else self.kl_spikes
        if reason is not None and not self._restored_this_step(state):
            self._recover(reason, state, control)
            logs["stability_restores"] = self.restores
        elif reason is None:
            if "kl" in logs:
                self.kl_history.append(float(logs["kl"]))
            if "reward" in logs:
                self.reward_history.append(float(logs["reward"]))

    def _restored_this_step(self, state: TrainerState) -> bool:
        return self._last_restore_step == state.global_step

    def _recover(self, reason: str, state: TrainerState, control: TrainerControl) -> None:
        control.should_save = False  # never checkpoint the diverged weights
        self._last_restore_step = state.global_step
        self.kl_spikes = 0
        self.restores += 1
        if self.restores > self.max_restores:
            raise TrainingUnstable(
                f"training diverged again at step {state.global_step} ({reason}) after {self.max_restores} "
                f"restores; lower the learning rate or raise the KL weight. Checkpoints are in {self.out_dir}"
            )
        checkpoint = self._restore()
        event = {
            "time": time.time(),
            "step": state.global_step,
            "reason": reason,
            "restored_from": checkpoint,
            "learning_rate_scale": self.lr_scale,
            "kl_weight": None if self.kl is None else self.kl.weight,
        }
        log.warning(
            "step %d: %s; restored %s, learning rate x%g",
            state.global_step,
            reason,
            checkpoint,
            self.lr_scale,
        )
        if state.is_world_process_zero:
            with (self.out_dir / "stability.jsonl").open("a") as f:
                f.write(json.dumps(event) + "\n")

    def _restore(self) -> str:
        checkpoint = last_checkpoint(self.out_dir)
        assert checkpoint is not None, "the guard writes a checkpoint at train begin"
        trainer = self.trainer
        trainer._load_from_checkpoint(checkpoint)
        trainer._load_optimizer_and_scheduler(checkpoint)
        self.lr_scale *= self.lr_factor
        scheduler = trainer.lr_scheduler
        loaded = list(getattr(scheduler, "base_lrs", []))
        for i, group in enumerate(trainer.optimizer.param_groups):
            if self._base_lrs and loaded:
                wanted = self._base_lrs[i] * self.lr_scale
                group["lr"] *= wanted / loaded[i] if loaded[i] else 1.0
                scheduler.base_lrs[i] = wanted
            else:
                group["lr"] *= self.lr_factor
        if hasattr(scheduler, "_last_lr"):  # what the Trainer logs as learning_rate until the next step
            scheduler._last_lr = [group["lr"] for group in trainer.optimizer.param_groups]
        if hasattr(trainer, "_buffered_inputs"):  # TRL's GRPOTrainer: start a fresh rollout batch
            trainer._buffered_inputs = None
            trainer._step = 0
        saved_kl = Path(checkpoint) / AdaptiveKLCallback.FILE
        if self.kl is not None and saved_kl.is_file():  # the KL weight the restored weights trained with
            self.kl.weight = json.loads(saved_kl.read_text())["weight"]
            trainer.beta = self.kl.weight
        return checkpoint
