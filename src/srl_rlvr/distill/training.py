"""The student's training: each part of `distill.method` (SFT, on-policy distillation, or SFT then
on-policy), then RLVR when `distill.rlvr_after`, in its own folder of the distillation's run directory.

Every part runs through the pipeline's tracked stage runner, as `srl-rlvr run` and `train` do, so it
is an MLflow run (under the distillation's own) and the registered student names the run that trained
it. On-policy distillation is no pipeline stage (it needs the teacher's weights), so it goes through
the same tracked runner (`run_tracked`) with its own trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transformers import TrainerCallback

from srl_rlvr.config import Config
from srl_rlvr.data.versioning import load_dataset
from srl_rlvr.distill.traces import Teacher
from srl_rlvr.errors import ConfigError
from srl_rlvr.pipeline.stages import StageOutput, run_stage
from srl_rlvr.tasks import Task
from srl_rlvr.tracking.runs import run_tracked


def train_student(
    config: Config,
    task: Task,
    teacher: Teacher,
    run_dir: Path,
    callbacks: Sequence[TrainerCallback],
    dataset: str,
    parent_run_id: str | None,
) -> Path:
    """Train the student of `config.model` on the traces in `run_dir/data` (content id `dataset`),
    each part a run under `parent_run_id`; returns the last part's model folder."""
    method = config.distill.method
    folder = Path(config.model.name_or_path)
    if method in ("sft", "sft+on_policy"):
        folder = run_stage(
            config,
            "sft",
            {"generate": run_dir / "data"},
            callbacks=callbacks,
            parent_run_id=parent_run_id,
            out=run_dir / "sft",
            gate=False,
        ).path
    if method in ("on_policy", "sft+on_policy"):
        if teacher.folder is None:
            raise ConfigError(
                "distill.method on_policy needs a local teacher (a registry version or a folder)"
            )
        from srl_rlvr.tasks import problem_of
        from srl_rlvr.train.on_policy import train_on_policy

        start = config.model_copy(
            update={"model": config.model.model_copy(update={"name_or_path": str(folder)})}
        )
        problems = [problem_of(t) for t in load_dataset(run_dir / "data")[0]]
        out, teacher_folder = run_dir / "on_policy", teacher.folder
        folder = run_tracked(
            start,
            "on_policy",
            out,
            {"srl_rlvr.dataset": dataset},
            lambda tracking: StageOutput(
                train_on_policy(start, teacher_folder, task, problems, out, [*callbacks, *tracking])
            ),
            parent_run_id,
        ).path
    if config.distill.rlvr_after:
        folder = run_stage(
            config,
            "rlvr",
            {},
            parent_run_id=parent_run_id,
            out=run_dir / "rlvr",
            start=str(folder),
            gate=False,
        ).path
    return folder
