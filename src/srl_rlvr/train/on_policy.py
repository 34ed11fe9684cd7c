"""On-policy distillation (Agarwal et al. 2024, "On-Policy Distillation of Language Models: Learning
from Self-Generated Mistakes"): the student samples a completion for each prompt and is trained to
match the teacher's next-token distribution on it, under the generalized Jensen-Shannon divergence
(`distill.on_policy.beta`: 0 forward KL, 1 reverse KL). TRL's `DistillationTrainer` does all of it;
this file only builds its arguments from our config and runs it with our callbacks. It is the
paper's fully on-policy setting (their lambda = 1); the supervised alternative (lambda = 0 on the
teacher's own outputs) is `distill.method: sft`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset
from transformers import TrainerCallback

from srl_rlvr.config import Config, ModelConfig
from srl_rlvr.errors import ConfigError
from srl_rlvr.modeling import chat_prompt, load_model
from srl_rlvr.tasks import Problem, Task
from srl_rlvr.train.runner import device_batch, one_gpu_per_process, run_settings, run_trainer, start_model


def train_on_policy(
    config: Config,
    teacher_folder: str,
    task: Task,
    problems: Sequence[Problem],
    out_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> Path:
    """Distil the teacher into `config.model` on these problems' prompts; the student's folder."""
    from trl import DistillationConfig, DistillationTrainer

    student, tokenizer = start_model(config, out_dir)
    teacher, teacher_tokenizer = load_model(
        ModelConfig(name_or_path=teacher_folder, device=config.model.device)
    )
    if teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ConfigError(
            "distill.method on_policy compares token distributions: the teacher and the student need the same "
            "tokenizer; use distill.method sft for models with different ones"
        )
    teacher.eval()
    section = config.distill.on_policy
    args = DistillationConfig(
        output_dir=str(out_dir),
        learning_rate=section.learning_rate,
        per_device_train_batch_size=device_batch(section.batch_size, "distill.on_policy.batch_size"),
        max_steps=section.max_steps,
        max_completion_length=section.max_completion_length,
        temperature=section.temperature,
        beta=section.beta,
        lr_scheduler_type=section.lr_scheduler,
        logging_steps=max(1, section.max_steps // 50),
        save_steps=max(section.max_steps, 1),
        **{k: v for k, v in run_settings(config.seed, config.model).items() if k != "gradient_checkpointing"},
        gradient_checkpointing=False,
    )
    dataset = Dataset.from_dict({"prompt": [chat_prompt(tokenizer, task.prompt(p)) for p in problems]})
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=one_gpu_per_process(args),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    return run_trainer(trainer, tokenizer, out_dir, callbacks=callbacks)
