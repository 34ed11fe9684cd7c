"""What every training stage does around `trainer.train()`: logging, SIGTERM, resume, final save.

SRL, SFT and RLVR each build their own TRL trainer and hand it here, so checkpoints, metrics.jsonl
and resume behave the same in every stage.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerState

from srl_rlvr.config import Config, ModelConfig
from srl_rlvr.distributed import barrier, is_main, world_size
from srl_rlvr.errors import ConfigError
from srl_rlvr.modeling import autocast_bf16, load_model, materialize
from srl_rlvr.train.callbacks import (
    MetricsLogger,
    ProgressLog,
    SigtermCheckpoint,
    TimedCheckpoint,
    last_checkpoint,
)
from srl_rlvr.train.validation import ValidationCallback

log = logging.getLogger(__name__)
TrainingArgumentsT = TypeVar("TrainingArgumentsT", bound=TrainingArguments)


def run_settings(seed: int, model: ModelConfig) -> dict[str, object]:
    """TrainingArguments every stage shares: GPU when there is one, our own progress bar and
    metrics.jsonl instead of the libraries' reporting."""
    cuda = torch.cuda.is_available()
    checkpointing = model.gradient_checkpointing
    return {
        "seed": seed,
        "bf16": autocast_bf16(model),
        "gradient_checkpointing": cuda if checkpointing == "auto" else checkpointing,
        "use_cpu": not cuda,
        "report_to": "none",
        "disable_tqdm": True,
        # Under DDP every parameter gets a gradient each step (frozen ones are not DDP's), so the
        # extra autograd traversal that finds unused ones is pure cost.
        "ddp_find_unused_parameters": False,
    }


def device_batch(batch: int, what: str = "batch_size") -> int:
    """A global batch's share on each process: `batch_size` means the same update on 1 GPU or 8."""
    world = world_size()
    if batch % world:
        raise ConfigError(f"{what} ({batch}) must be a multiple of the number of processes ({world})")
    return batch // world


def one_gpu_per_process(args: TrainingArgumentsT) -> TrainingArgumentsT:
    """One process on a machine of several GPUs trains on one GPU. transformers would otherwise wrap
    the model in nn.DataParallel, which TRL's trainers refuse at construction (and which is slower
    than one GPU for these models); `--gpus N` starts one process a GPU."""
    if world_size() == 1 and args.n_gpu > 1:
        log.warning("%d GPUs visible to one process: training on one (--gpus N uses N)", args.n_gpu)
        args._n_gpu = 1
    return args


def stage_args(config: Config, section: Any, out_dir: Path) -> dict[str, object]:
    """The TRL arguments a stage section (`sft:`, `srl:`, `rlvr:`) names the same way in each
    trainer's config; each trainer adds its own (batch, lengths, its loss's keys)."""
    args: dict[str, object] = {
        "output_dir": str(out_dir),
        "learning_rate": section.learning_rate,
        "num_train_epochs": section.epochs,
        "max_steps": section.max_steps,
        "max_grad_norm": section.max_grad_norm,
        "save_steps": section.save_steps,
        "logging_steps": section.logging_steps,
        "logging_nan_inf_filter": False,  # a NaN loss must reach the logs and the stability guard
        **run_settings(config.seed, config.model),
    }
    if hasattr(section, "warmup_steps"):
        args["warmup_steps"] = section.warmup_steps
    return args


def start_model(config: Config, out_dir: Path) -> tuple[Any, Any]:
    """The stage's start model, given a folder of full weights first (`materialize`), and its tokenizer."""
    return load_model(materialize(config.model, out_dir / "base", seed=config.seed), seed=config.seed)


def avoid_cudnn_attention() -> None:
    """Turn PyTorch's cuDNN backend for scaled-dot-product attention off for the process.

    Measured on an H200 (torch 2.11, bfloat16 autocast, padded batches; `benchmarks/stability_probe.py`):
    on micro-batches from ordinary SRL and RLVR runs, the cuDNN backend's backward pass returned
    non-finite gradients for every weight, 3 times out of 3, while the forward loss matched the other
    backends to 4 digits; the memory-efficient and math backends, eager attention and float32 gave
    finite gradients on the same batches and weights. That was the source of the "non-finite weights"
    the stability guard kept restoring. SDPA then picks the memory-efficient kernel, about as fast at
    these sizes.
    """
    torch.backends.cuda.enable_cudnn_sdp(False)  # a flag: harmless where there is no GPU


class TrainingInterrupted(Exception):
    """Training stopped on SIGTERM after saving a checkpoint; rerun with resume to continue."""

    def __init__(self, checkpoint: str | None) -> None:
        super().__init__(f"interrupted; checkpoint saved at {checkpoint}; rerun with --resume to continue")
        self.checkpoint = checkpoint


def _step_of(checkpoint: str | None) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[-1]) if checkpoint else 0


def _trim_metrics(path: Path, keep_until_step: int) -> None:
    """Drop records after the step training restarts from, so a resumed run's log has no duplicates."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if json.loads(line).get("step", 0) <= keep_until_step))


def run_trainer(
    trainer: Trainer,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    resume: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
    save_minutes: float = 0.0,
) -> Path:
    """Train (from the last checkpoint in `out_dir` when `resume`), save to `out_dir/final`, return it.

    With a `ValidationCallback` among `callbacks`, `final/` is the best validated model. A checkpoint is
    also written every `save_minutes` of training (0: only the trainer's `save_steps`).

    `callbacks` run before the metrics logger, so values they add to the logs reach metrics.jsonl.
    """
    out_dir = Path(out_dir)
    avoid_cudnn_attention()
    stop = SigtermCheckpoint()
    trainer.remove_callback(PrinterCallback)  # the CLI shows progress; logs go to metrics.jsonl
    trainer.remove_callback(ProgressCallback)
    for callback in (
        *callbacks,
        TimedCheckpoint(save_minutes),
        MetricsLogger(out_dir / "metrics.jsonl"),
        ProgressLog(out_dir.name),
        stop,
    ):
        trainer.add_callback(callback)
    checkpoint = last_checkpoint(out_dir) if resume else None
    if resume and checkpoint is None:
        log.warning("resume: no checkpoint in %s, starting from the beginning", out_dir)
    if is_main():
        _trim_metrics(out_dir / "metrics.jsonl", _step_of(checkpoint))
    if checkpoint is not None and 0 < trainer.args.max_steps <= _step_of(checkpoint):
        # Stopped (SIGTERM) in its last step: all steps are done. The trainer would train one more
        # when the checkpoint falls mid-epoch (it only checks max_steps after a step), so load it instead.
        log.info("resume: %s is at max_steps %d; nothing left to train", checkpoint, trainer.args.max_steps)
        trainer._load_from_checkpoint(checkpoint)
        trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE_NAME))
    else:
        trainer.train(resume_from_checkpoint=checkpoint)
    if stop.interrupted:
        raise TrainingInterrupted(last_checkpoint(out_dir))
    validation = [c for c in callbacks if isinstance(c, ValidationCallback)]
    for callback in validation:
        callback.keep_best(trainer.state)
    final = out_dir / "final"
    trainer.save_model(str(final))  # the main process writes (gathering shards under FSDP/ZeRO-3)
    if is_main():
        tokenizer.save_pretrained(final)
    for callback in validation:
        callback.record_into(final)
    barrier()  # every rank returns once final/ is complete
    return final
