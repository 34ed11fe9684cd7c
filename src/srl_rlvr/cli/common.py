"""What every command shares: the two consoles, the config argument and its loader, quieting the
libraries' own output, and the evaluation tables `eval` and `run` both print."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from srl_rlvr.config import Config
    from srl_rlvr.evaluate.run import EvalRun

# A log file or pipe gets a width that fits the evaluation table; a terminal keeps its own.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True)

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


def load_cli_config(config: str | Path | None, overrides: list[str] | None) -> Config:
    from srl_rlvr.config import load_config

    config = str(config) if config is not None else None
    overrides = list(overrides or [])
    if config is not None and "=" in config and not Path(config).exists():  # overrides with no config file
        config, overrides = None, [config, *overrides]
    if config is None and not any(o.startswith("model.name_or_path=") for o in overrides):
        # A command with no config works on the quickstart's model: the packaged pretrained `embedded`
        # one, not the library's default `tiny` (random weights, for tests), which learns nothing.
        overrides = ["model.name_or_path=embedded", *overrides]
    loaded = load_config(config, overrides)
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


def quiet_libraries() -> None:
    """Our progress bar replaces the libraries' per-step bars and weight-loading chatter."""
    import warnings

    import datasets
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
