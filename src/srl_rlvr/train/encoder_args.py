"""The training arguments the three encoder trainers share (embedding, reranker, classifier).

sentence-transformers' trainers subclass transformers' Trainer, so one set of arguments fits all
three; each passes them to its own TrainingArguments class. Checkpoints are off: a few hundred
steps of a small encoder take minutes, and a rerun of the stage is cheaper than resuming.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from srl_rlvr.model_types import EncoderConfig


def trainer_arguments(
    config: EncoderConfig, scratch: str | Path, seed: int, device: str, rows: int
) -> dict[str, Any]:
    """Keyword arguments of a TrainingArguments; the batch never exceeds the rows there are."""
    return {
        "output_dir": str(scratch),
        "max_steps": config.steps,
        "per_device_train_batch_size": max(2, min(config.batch_size, rows)),
        "learning_rate": config.learning_rate,
        "warmup_steps": int(config.warmup_ratio * config.steps),
        "seed": seed,
        "data_seed": seed,
        "report_to": [],
        "save_strategy": "no",
        "logging_steps": max(1, config.steps // 20),
        "disable_tqdm": True,
        "use_cpu": device == "cpu",
        "dataloader_num_workers": 0,
    }


def without_printing(trainer: Any) -> Any:
    """Library code never prints: with tqdm off, transformers' Trainer prints every log record instead
    (metrics.jsonl and the tracking callbacks keep them)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer
