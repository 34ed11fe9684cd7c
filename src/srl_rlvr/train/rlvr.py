"""RLVR: optimise the model for the outcome, rewarded by the task's verifier (`Task.reward`).

One entry point, `train_rlvr`, whatever `rlvr.algorithm` says:

- `grpo`, `dr_grpo`, `dapo`: TRL's GRPOTrainer with our advantage rule (`train/group_trainer.py`); the
  algorithm picks TRL's loss aggregation and presets (see `RLVRConfig`).
- `ppo`: the same trainer with a value head and GAE (`train/ppo.py`).
- `dpo`: TRL's DPOTrainer on pairs of the model's own verified-correct and verified-wrong samples
  (`train/dpo.py`).

Every algorithm gets the same machinery: the reference is the model RLVR starts from (the SRL
output, or the base model when RLVR runs alone), KL to it is logged and held under `rlvr.max_kl` by
the adaptive controller, validation on held-out problems keeps the best model as `final/` and stops early, the
stability guard undoes diverged steps, and checkpoints/SIGTERM/resume come from `train/runner.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import TrainerCallback

from srl_rlvr.config import Config
from srl_rlvr.errors import DataError
from srl_rlvr.evaluate.evaluation import evaluate_task
from srl_rlvr.modeling import chat_prompt, load_model, materialize
from srl_rlvr.tasks import Problem, Task, load_task
from srl_rlvr.train.group_trainer import GroupTrainer, grpo_args, stage_callbacks
from srl_rlvr.train.rewards import reward_functions
from srl_rlvr.train.runner import run_trainer

log = logging.getLogger(__name__)


def stage_model(path: str | Path) -> str:
    """A stage folder (`runs/x/srl`) means the model it produced (`runs/x/srl/final`)."""
    final = Path(path) / "final"
    has_model = any((final / name).is_file() for name in ("config.json", "adapter_config.json"))
    return str(final if has_model else path)


def default_start_model(config: Config) -> str:
    """The SRL output of the same run directory when there is one, else the configured base model."""
    srl = Path(config.output_dir) / "srl"
    return stage_model(srl) if (srl / "final").is_dir() else config.model.name_or_path


def build_rlvr_dataset(problems: Sequence[Problem], task: Task, tokenizer: Any = None) -> Dataset:
    """One row per problem: its prompt (in the model's chat template when it has one) and its id."""
    if not problems:
        raise DataError("no problems to train on: the RLVR problem set is empty")
    prompts = [
        task.prompt(p) if tokenizer is None else chat_prompt(tokenizer, task.prompt(p)) for p in problems
    ]
    return Dataset.from_dict({"prompt": prompts, "problem_id": [p.id for p in problems]})


def _rollout_trainer(config: Config, problems: Sequence[Problem], task: Task, out_dir: Path) -> Any:
    from srl_rlvr.train.ppo import PPOTrainer

    cfg = config.rlvr
    model, tokenizer = load_model(config.model, seed=config.seed)
    functions, weights = reward_functions(task, problems, cfg)
    args = grpo_args(config, cfg, out_dir, cfg.loss_type, entropy_coef=cfg.entropy_coef or 0.0)
    args.reward_weights = weights
    trainer_class = PPOTrainer if cfg.algorithm == "ppo" else GroupTrainer
    return trainer_class(
        model=model,
        reward_funcs=functions,
        args=args,
        train_dataset=build_rlvr_dataset(problems, task, tokenizer),
        processing_class=tokenizer,
        stage=cfg,
    )


def train_rlvr(
    config: Config,
    problems: Sequence[Problem],
    out_dir: str | Path | None = None,
    task: Task | None = None,
    model: str | None = None,
    val_problems: Sequence[Problem] | None = None,
    resume: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
) -> Path:
    """Train on `problems` with `rlvr.algorithm`; return the model folder, `out_dir/final`: the best
    validated model, or the last one when validation is off.

    `model` is the start model (default: this run's SRL output, else `model.name_or_path`);
    `val_problems` default to the task's `val` split when `rlvr.eval_steps` > 0.
    """
    cfg = config.rlvr
    out_dir = Path(out_dir or Path(config.output_dir) / "rlvr")
    task = task or load_task(config.task.name, config.task.options)
    start = stage_model(model) if model else default_start_model(config)
    model_config = materialize(
        config.model.model_copy(update={"name_or_path": start}), out_dir / "base", seed=config.seed
    )
    config = config.model_copy(update={"model": model_config})
    if not problems:
        raise DataError("no problems to train on: the RLVR problem set is empty")
    if val_problems is None and cfg.eval_steps:
        val_problems = task.sample(config.data.val_size, config.data.seed, "val")

    held_out = list(val_problems or [])

    def score(model: Any, tokenizer: Any) -> dict[str, float]:
        return evaluate_task(
            model, tokenizer, task, held_out, cfg.max_completion_length, config.eval.batch_size
        )

    if cfg.algorithm == "dpo":
        from srl_rlvr.train.dpo import build_dpo_trainer

        trainer, tokenizer = build_dpo_trainer(config, problems, out_dir, task, resume=resume)
    else:
        trainer = _rollout_trainer(config, problems, task, out_dir)
        tokenizer = trainer.processing_class
    from srl_rlvr.tasks import headline_metric

    metric = headline_metric(task, config.pipeline.gate_metric)
    shared = stage_callbacks(
        trainer, out_dir, cfg, score if held_out else None, metric, adaptive_kl=cfg.algorithm != "dpo"
    )
    log.info("RLVR (%s) on %d problems from %s", cfg.algorithm, len(problems), start)
    return run_trainer(
        trainer,
        tokenizer,
        out_dir,
        resume=resume,
        callbacks=[*shared, *callbacks],
        save_minutes=cfg.save_minutes,
    )
