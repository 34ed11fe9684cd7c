"""What every command shares: the two consoles, the config argument and its loader, quieting the
libraries' own output, the stages' progress display, and the evaluation tables `eval` and `run` both
print."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID
    from rich.table import Table

    from srl_rlvr.config import Config
    from srl_rlvr.evaluate.run import EvalRun
    from srl_rlvr.pipeline.stages import StageEvent

# A log file or pipe gets a width that fits the evaluation table; a terminal keeps its own.
console = Console(width=None if sys.stdout.isatty() else 120)
# Errors and warnings are never wrapped, whatever the terminal's width or its absence (rich's 80 columns):
# a message stays one line that cron logs, `grep` and the tests can match.
err_console = Console(stderr=True, soft_wrap=True)

# A string, not a Path: the first argument may be an override (`teacher.base_url=http://...`), and a
# Path would fold its '//' into '/'.
ConfigArg = Annotated[
    str | None,
    typer.Argument(help="YAML config; omit for the built-in defaults, with the packaged `embedded` model."),
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Dotted overrides, e.g. srl.learning_rate=3e-6 task.name=sentiment."),
]


def cli_config_source(config: str | Path | None, overrides: list[str] | None) -> tuple[str | None, list[str]]:
    """(config file, overrides) as a command means them: a first argument with '=' that names no file
    is an override, and a command with no config works on the packaged `embedded` model."""
    config = str(config) if config is not None else None
    overrides = list(overrides or [])
    if config is not None and "=" in config and not Path(config).exists():  # overrides with no config file
        config, overrides = None, [config, *overrides]
    if config is None and not any(o.startswith("model.name_or_path=") for o in overrides):
        # A command with no config works on the quickstart's model: the packaged pretrained `embedded`
        # one, not the library's default `tiny` (random weights, for tests), which learns nothing.
        overrides = ["model.name_or_path=embedded", *overrides]
    return config, overrides


def load_cli_config(config: str | Path | None, overrides: list[str] | None) -> Config:
    from srl_rlvr.config import load_config

    loaded = load_config(*cli_config_source(config, overrides))
    # MLflow calls that take no config (the registry's) use the config's store, unless the environment
    # names one
    os.environ.setdefault("MLFLOW_TRACKING_URI", loaded.registry.tracking_uri)
    return loaded


def print_evaluation(run: EvalRun, cfg: Config, title: str) -> None:
    """The comparison tables `eval` and `run` both end with, and where the report is."""
    from srl_rlvr.evaluate.report import comparison_table

    console.print(comparison_table(run.results, cfg.eval, title=title))
    if run.generalization:
        console.print(comparison_table(run.generalization, cfg.eval, title="never-seen problem family"))
    console.print(f"report: {run.report} and {run.report.with_name('report.json')}")


def encoder_table(report: dict[str, Any], title: str) -> Table:
    """An encoder report (`evaluate/encoders.py`) as one row a model: each metric's mean with its
    interval, and under it the paired delta to the baseline (the first row that is a model)."""
    from rich.table import Table

    results, deltas = report["results"], report.get("deltas", {})
    metrics = list(next(iter(results.values()))["metrics"])
    table = Table(
        title=f"{title}: {report['n']} held-out {'prompts' if report['model_type'] == 'classifier' else 'queries'}",
        caption=f"delta: minus {report['baseline']}, paired interval",
    )
    table.add_column("model")
    for name in metrics:
        table.add_column(name, justify="right")
    for label, result in results.items():
        from srl_rlvr.evaluate.encoder_run import metric_cells

        cells = metric_cells(result, deltas.get(label, {}), metrics, "\ndelta {}")
        table.add_row(label, *cells)
    return table


# What a stage's bar counts; training stages count steps.
UNITS = {"generate": "trajectories", "evaluate": "problems"}


def show_stages(progress: Progress) -> Callable[[StageEvent], None]:
    """The one progress display of training and the pipeline: stage events (`run`, `train`) as
    one live bar per running stage and a line per skipped, started or finished one."""
    bars: dict[str, TaskID] = {}

    def show(event: StageEvent) -> None:
        if event.kind == "skip":
            progress.console.print(f"[dim]skip {event.stage}: {escape(event.message)}[/dim]")
        elif event.kind == "start":
            progress.console.print(f"[bold]{event.stage}[/bold]: {escape(event.message)}")
            bars[event.stage] = progress.add_task(
                event.stage, total=None, note="", unit=UNITS.get(event.stage, "steps")
            )
        elif event.kind == "step":
            progress.update(bars[event.stage], completed=event.step, total=event.total, note=event.message)
        else:
            progress.remove_task(bars.pop(event.stage))
            progress.console.print(f"[green]done[/green] {event.stage}: {escape(event.message)}")

    return show


def show_progress_lines() -> None:
    """The progress lines (done/total, rate, time left; `progress.ProgressLines`) of training, `generate`
    and evaluation on stderr: for logs, and for commands that draw no bar."""
    import logging

    from srl_rlvr.progress import PROGRESS_LOG

    logging.getLogger(PROGRESS_LOG).setLevel(logging.INFO)


def quiet_libraries() -> None:
    """Our progress bar replaces the libraries' per-step bars and weight-loading chatter."""
    import warnings

    import datasets
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


STRATEGIES = ("ddp", "fsdp2", "zero2", "zero3")
GpusOpt = Annotated[
    int,
    typer.Option(
        "--gpus",
        min=1,
        help="Train on N GPUs of this machine: starts `accelerate launch` with the shipped config of "
        "--strategy (srl_rlvr/assets/accelerate/). On a machine without GPUs, N CPU processes over gloo.",
    ),
]
StrategyOpt = Annotated[
    str,
    typer.Option(
        "--strategy",
        help="With --gpus: ddp (the model fits one GPU), fsdp2 (it does not: weights, gradients and "
        "optimiser states sharded), zero2 or zero3 (DeepSpeed; needs deepspeed installed).",
    ),
]


def accelerate_config(strategy: str) -> Path:
    """The shipped accelerate config for `strategy`."""
    if strategy not in STRATEGIES:
        raise typer.BadParameter(f"--strategy {strategy}: one of {', '.join(STRATEGIES)}")
    return Path(__file__).resolve().parent.parent / "assets" / "accelerate" / f"{strategy}.yaml"


def without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """`argv` without the options `names` and their values (`--gpus 2` and `--gpus=2`)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not arg.startswith(tuple(f"{name}=" for name in names)):
            kept.append(arg)
    return kept


def launch_on_gpus(gpus: int, strategy: str) -> None:
    """Re-run this command as `gpus` processes under accelerate, and exit with their status; a
    no-op inside a process accelerate already started (WORLD_SIZE is set) or for one GPU."""
    if gpus == 1 or "WORLD_SIZE" in os.environ:
        return
    import torch

    config = accelerate_config(strategy)
    found = torch.cuda.device_count()
    if found == 0 and strategy != "ddp":
        raise typer.BadParameter(f"--strategy {strategy} needs CUDA GPUs; this machine has none")
    if 0 < found < gpus:
        raise typer.BadParameter(f"--gpus {gpus}: this machine has {found} CUDA GPU(s)")
    if found == 0:
        err_console.print(f"[yellow]no CUDA GPU: {gpus} CPU processes over gloo[/yellow]")
    command = [
        *(sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)),
        *("--num_processes", str(gpus), "--num_machines", "1"),
        *("--main_process_port", os.environ.get("MASTER_PORT", "29500")),
        *("-m", "srl_rlvr", *without_options(sys.argv[1:], ("--gpus", "--strategy"))),
    ]
    sys.stdout.flush()
    os.execv(sys.executable, command)  # accelerate (torchrun) forwards SIGTERM to every process
