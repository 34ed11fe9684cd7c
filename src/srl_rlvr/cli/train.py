"""`srl-rlvr train srl | sft | rlvr`: one stage on its own, outside a pipeline run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from srl_rlvr.cli.common import (
    ConfigArg,
    GpusOpt,
    OverridesArg,
    StrategyOpt,
    console,
    err_console,
    launch_on_gpus,
    load_cli_config,
    quiet_libraries,
)

if TYPE_CHECKING:
    from srl_rlvr.config import Config

train_app = typer.Typer(
    help="Train a model: SRL (step-wise RL), RLVR (outcome RL), SFT (baseline).", no_args_is_help=True
)


DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Trajectory JSONL or dataset folder (default: data.trajectories, else <output_dir>/data).",
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Stage folder (default: <output_dir>/<stage>; <output_dir>/train-<stage> when output_dir "
        "is a pipeline run, whose own stage folders `train` leaves alone).",
    ),
]


def default_train_out(cfg: Config, stage: str) -> Path:
    """Beside a pipeline's own stage folder, never over it: `run` would keep a model it did not train."""
    run_dir = Path(cfg.output_dir)
    return run_dir / (f"train-{stage}" if (run_dir / "pipeline.json").is_file() else stage)


ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Start from this model (overrides model.name_or_path).")
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.")]


def _train(
    stage: str,
    config: str | None,
    overrides: list[str] | None,
    data: Path | None,
    out: Path | None,
    model: str | None,
    resume: bool,
) -> None:
    from srl_rlvr.pipeline.runner import resolve_registry_model

    cfg = resolve_registry_model(
        load_cli_config(config, [*(overrides or []), *([f"model.name_or_path={model}"] if model else [])])
    )
    from srl_rlvr.data.versioning import load_dataset

    data = data or Path(cfg.data.trajectories or Path(cfg.output_dir) / "data")
    out = out or default_train_out(cfg, stage)
    trajectories, manifest = load_dataset(data)
    quiet_libraries()
    from srl_rlvr.distributed import is_main
    from srl_rlvr.train.callbacks import RichProgress
    from srl_rlvr.train.runner import TrainingInterrupted

    if is_main():
        err_console.print(
            f"{stage}: {len(trajectories)} trajectories (hash {manifest['hash'][:12]}) "
            f"-> {out}; model {cfg.model.name_or_path}"
        )
    if stage == "srl":
        from srl_rlvr.train.srl import train_srl as train
    else:
        from srl_rlvr.train.sft import train_sft as train
    from srl_rlvr.pipeline.stages import StageOutput
    from srl_rlvr.tracking.runs import run_tracked

    def work(tracking: list) -> StageOutput:
        callbacks = [RichProgress(stage), *tracking]
        return StageOutput(train(cfg, trajectories, out, resume=resume, callbacks=callbacks))

    try:
        final = run_tracked(cfg, stage, out, {"srl_rlvr.dataset": f"dataset:{manifest['hash']}"}, work).path
    except TrainingInterrupted as e:
        err_console.print(f"[yellow]{escape(str(e))}[/yellow]")
        raise SystemExit(143) from None
    if is_main():
        console.print(f"trained model: {final}\nmetrics: {out / 'metrics.jsonl'}")


@train_app.command("srl")
def train_srl_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    data: DataOpt = None,
    out: OutOpt = None,
    model: ModelOpt = None,
    resume: ResumeOpt = False,
    gpus: GpusOpt = 1,
    strategy: StrategyOpt = "ddp",
) -> None:
    """SRL: reward each predicted step by its similarity to the expert's (Deng et al. 2025)."""
    launch_on_gpus(gpus, strategy)
    _train("srl", config, overrides, data, out, model, resume)


@train_app.command("sft")
def train_sft_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    data: DataOpt = None,
    out: OutOpt = None,
    model: ModelOpt = None,
    resume: ResumeOpt = False,
    gpus: GpusOpt = 1,
    strategy: StrategyOpt = "ddp",
) -> None:
    """SFT baseline: learn whole expert solutions token by token."""
    launch_on_gpus(gpus, strategy)
    _train("sft", config, overrides, data, out, model, resume)


@train_app.command("rlvr")
def train_rlvr_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    out: OutOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Start model or stage folder (default: <output_dir>/srl when SRL ran, else model.name_or_path).",
        ),
    ] = None,
    resume: ResumeOpt = False,
    gpus: GpusOpt = 1,
    strategy: StrategyOpt = "ddp",
) -> None:
    """RLVR: reward outcomes the task verifies (rlvr.algorithm: grpo, dr_grpo, dapo, ppo, dpo)."""
    launch_on_gpus(gpus, strategy)
    from srl_rlvr.pipeline.runner import resolve_registry_model
    from srl_rlvr.tracking.registry import resolve_source
    from srl_rlvr.tracking.runs import tracking_uri

    cfg = resolve_registry_model(load_cli_config(config, overrides))
    from srl_rlvr.tasks import load_task

    task = load_task(cfg.task.name, cfg.task.options)
    problems = task.sample(cfg.data.train_size, cfg.data.seed, "train")
    out = out or default_train_out(cfg, "rlvr")
    quiet_libraries()
    from srl_rlvr.distributed import is_main
    from srl_rlvr.train.callbacks import RichProgress
    from srl_rlvr.train.rlvr import default_start_model, stage_model, train_rlvr
    from srl_rlvr.train.runner import TrainingInterrupted

    start = stage_model(resolve_source(model, tracking_uri(cfg))) if model else default_start_model(cfg)
    if is_main():
        err_console.print(
            f"rlvr ({cfg.rlvr.algorithm}): {len(problems)} {task.name} problems -> {out}; model {start}"
        )
    from srl_rlvr.pipeline.stages import StageOutput, stage_data
    from srl_rlvr.tracking.runs import run_tracked

    def work(tracking: list) -> StageOutput:
        callbacks = [RichProgress("rlvr"), *tracking]
        return StageOutput(
            train_rlvr(cfg, problems, out, task=task, model=start, resume=resume, callbacks=callbacks)
        )

    try:
        result = run_tracked(cfg, "rlvr", out, {"srl_rlvr.dataset": stage_data(cfg, "rlvr", {})}, work).path
    except TrainingInterrupted as e:
        err_console.print(f"[yellow]{escape(str(e))}[/yellow]")
        raise SystemExit(143) from None
    if is_main():
        console.print(f"trained model: {result}\nmetrics: {out / 'metrics.jsonl'}")


def add_commands(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
