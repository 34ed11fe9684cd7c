"""One training stage on its own (`srl-rlvr train srl | sft | rlvr`), outside a pipeline run.

It goes through the pipeline's tracked stage runner (`stages.run_stage`), so it trains as
`srl-rlvr run` does and is an MLflow run like any pipeline stage; it only chooses its inputs
differently: SFT and SRL learn from a trajectory dataset named on the command line, and RLVR starts
from this run directory's SRL model when SRL ran there and no start model was named. It is never
gated: the user asked for this stage's model, whether or not it beats the one before.
"""

from __future__ import annotations

from pathlib import Path

from srl_rlvr.config import Config
from srl_rlvr.pipeline.runner import resolve_registry_model
from srl_rlvr.pipeline.stages import (
    Emit,
    StageEvent,
    StageOutput,
    fresh_problems,
    run_stage,
    stage_dir,
    start_model,
)


def train_single_stage(
    config: Config,
    stage: str,
    out: Path,
    data: Path | None = None,
    model: str | None = None,
    resume: bool = False,
    emit: Emit = lambda event: None,
) -> StageOutput:
    """Train `stage` into `out` from `model` (a model, stage folder or `registry:` reference; default
    `model.name_or_path`, or for RLVR this run's SRL model when there is one), SFT and SRL on `data`
    (default `data.trajectories`, else `<output_dir>/data`). `emit` gets a start event saying what
    trains on what, then the trainer's steps."""
    from srl_rlvr.data.versioning import load_dataset

    if model is not None:
        config = config.model_copy(update={"model": config.model.model_copy(update={"name_or_path": model})})
    config = resolve_registry_model(config)
    if stage == "rlvr":
        from srl_rlvr.tasks import load_task
        from srl_rlvr.train.rlvr import stage_model

        srl = stage_dir(config, "srl") / "final"
        upstream = {"srl": srl} if model is None and srl.is_dir() else {}
        task = load_task(config.task.name, config.task.options)
        problems = fresh_problems(task, config, set())
        what = f"{len(problems)} {task.name} problems ({config.rlvr.algorithm})"
        start = stage_model(start_model(config, upstream))
    else:
        data = data or Path(config.data.trajectories or stage_dir(config, "generate"))
        upstream = {"generate": data}
        trajectories, manifest = load_dataset(data)
        what = f"{len(trajectories)} trajectories (hash {manifest['hash'][:12]})"
        start = start_model(config, upstream)
    emit(StageEvent("start", stage, message=f"{what} -> {out}; model {start}"))
    return run_stage(config, stage, upstream, resume, emit, out=out, start=start, gate=False)
