"""`srl-rlvr train srl | sft | rlvr`: one stage on its own, outside a pipeline run."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
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
    show_stages,
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
    """Any of the three stages, through the pipeline's tracked stage runner (`single_stage.py`)."""
    cfg = load_cli_config(config, overrides)
    quiet_libraries()
    from srl_rlvr.distributed import is_main
    from srl_rlvr.pipeline.single_stage import train_single_stage
    from srl_rlvr.progress import progress_bar
    from srl_rlvr.train.runner import TrainingInterrupted

    out = out or default_train_out(cfg, stage)
    progress = progress_bar(err_console)
    show = show_stages(progress) if is_main() else lambda event: None
    try:
        with progress if is_main() else nullcontext():
            final = train_single_stage(cfg, stage, out, data, model, resume, show).path
    except TrainingInterrupted as e:
        err_console.print(f"[yellow]{escape(str(e))}[/yellow]")
        raise SystemExit(143) from None
    if is_main():
        console.print(f"trained model: {final}\nmetrics: {out / 'metrics.jsonl'}")


HELP = {
    "srl": "SRL: reward each predicted step by its similarity to the expert's (Deng et al. 2025).",
    "sft": "SFT baseline: learn whole expert solutions token by token.",
}


def _trajectory_command(stage: str) -> Callable[..., None]:
    """`train srl` or `train sft`: the same options, for a stage that learns from trajectories."""

    def command(
        config: ConfigArg = None,
        overrides: OverridesArg = None,
        data: DataOpt = None,
        out: OutOpt = None,
        model: ModelOpt = None,
        resume: ResumeOpt = False,
        gpus: GpusOpt = 1,
        strategy: StrategyOpt = "ddp",
    ) -> None:
        launch_on_gpus(gpus, strategy)
        _train(stage, config, overrides, data, out, model, resume)

    command.__doc__ = HELP[stage]
    return command


for _stage in HELP:
    train_app.command(_stage)(_trajectory_command(_stage))


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
    _train("rlvr", config, overrides, None, out, model, resume)


def add_commands(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
