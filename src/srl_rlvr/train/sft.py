"""Supervised fine-tuning on whole expert solutions: the baseline every SRL claim is measured against.

Same trajectories as SRL, but the target is the full solution (every action, one a line) after the
task prompt, learned token by token. TRL's SFTTrainer does the work; the loss covers only the
completion, as in SRL, so the two differ only in how the expert is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import TrainerCallback
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from srl_rlvr.config import Config
from srl_rlvr.data.trajectory import Trajectory
from srl_rlvr.errors import DataError
from srl_rlvr.modeling import chat_prompt
from srl_rlvr.tasks import Task, load_task, problem_of
from srl_rlvr.train.runner import device_batch, one_gpu_per_process, run_trainer, stage_args, start_model


def build_sft_dataset(trajectories: Sequence[Trajectory], task: Task, tokenizer: Any = None) -> Dataset:
    """One (prompt, completion) row per trajectory: the task prompt (in the model's chat template when
    it has one) and the whole expert solution."""
    if not trajectories:
        raise DataError("no trajectories to train on: the dataset is empty")
    prompts = [task.prompt(problem_of(t)) for t in trajectories]
    if tokenizer is not None:
        prompts = [chat_prompt(tokenizer, prompt) for prompt in prompts]
    return Dataset.from_dict({"prompt": prompts, "completion": [t.solution_text() for t in trajectories]})


def train_sft(
    config: Config,
    trajectories: Sequence[Trajectory],
    out_dir: str | Path | None = None,
    task: Task | None = None,
    resume: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
) -> Path:
    """Fine-tune on `trajectories`; return the folder of the trained model (`out_dir/final`)."""
    out_dir = Path(out_dir or Path(config.output_dir) / "sft")
    task = task or load_task(config.task.name, config.task.options)
    model, tokenizer = start_model(config, out_dir)
    dataset = build_sft_dataset(trajectories, task, tokenizer)
    sft = config.sft
    args = TRLSFTConfig(
        **stage_args(config, sft, out_dir),  # type: ignore[arg-type]
        per_device_train_batch_size=device_batch(sft.batch_size, "sft.batch_size"),
        max_length=sft.max_length,
        lr_scheduler_type=sft.lr_scheduler,
    )
    trainer = SFTTrainer(
        model=model, args=one_gpu_per_process(args), train_dataset=dataset, processing_class=tokenizer
    )
    return run_trainer(
        trainer, tokenizer, out_dir, resume=resume, callbacks=callbacks, save_minutes=config.sft.save_minutes
    )
