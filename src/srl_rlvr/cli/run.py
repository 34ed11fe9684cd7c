"""`srl-rlvr run`: the whole pipeline over one run directory, with a live bar per stage."""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from srl_rlvr.cli.common import (
    ConfigArg,
    GpusOpt,
    OverridesArg,
    StrategyOpt,
    console,
    encoder_table,
    err_console,
    launch_on_gpus,
    load_cli_config,
    print_evaluation,
    quiet_libraries,
    show_stages,
)

if TYPE_CHECKING:
    from srl_rlvr.config import Config


def run_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    from_stage: Annotated[
        str | None, typer.Option("--from", help="Rerun this stage and every later one, even if unchanged.")
    ] = None,
    only: Annotated[
        str | None, typer.Option("--only", help="Run just this stage; the ones before it must have run.")
    ] = None,
    gpus: GpusOpt = 1,
    strategy: StrategyOpt = "ddp",
) -> None:
    """The whole job in one run directory: trajectories -> SRL -> RLVR -> evaluation against the base model.

    Stages whose inputs did not change are skipped; an interrupted stage resumes from its checkpoint
    when you rerun the same command. An encoder (model.type embedding, reranker or classifier) runs
    generate -> train -> evaluate -> register instead, every stage each time (docs/model-types.md).
    """
    launch_on_gpus(gpus, strategy)
    cfg = load_cli_config(config, overrides)
    quiet_libraries()
    if cfg.model.type != "causal_lm":
        _run_encoder(cfg)
        return
    from srl_rlvr.distributed import is_main
    from srl_rlvr.pipeline import run_pipeline
    from srl_rlvr.progress import progress_bar
    from srl_rlvr.train.runner import TrainingInterrupted

    progress = progress_bar(err_console)
    try:
        with progress if is_main() else nullcontext():
            result = run_pipeline(cfg, from_stage, only, on_event=show_stages(progress))
    except TrainingInterrupted as e:
        err_console.print(
            f"[yellow]interrupted; checkpoint saved at {escape(str(e.checkpoint))}. "
            "Rerun the same command to resume.[/yellow]"
        )
        raise SystemExit(143) from None
    evaluation = result.evaluation
    if not is_main():
        return
    if evaluation is None:
        console.print(f"run directory: {result.run_dir} (no evaluation in this run)")
        return
    print_evaluation(evaluation, cfg, title=f"held-out test split: {' -> '.join(evaluation.results)}")
    registered = result.run_dir / "register" / "registered.json"
    if "register" in cfg.pipeline.stages and registered.is_file():
        import json

        from srl_rlvr.tracking.runs import tracking_uri

        versions = json.loads(registered.read_text())["versions"]
        alias = f" ({cfg.registry.alias_on_register})" if cfg.registry.alias_on_register else ""
        shown = ", ".join(f"{v['reference']} ({v['stage']})" for v in versions)
        console.print(f"registered {shown}{alias} in {tracking_uri(cfg)}; browse runs with `srl-rlvr ui`")


def _run_encoder(cfg: Config) -> None:
    """An embedding model, reranker or intent router: generate -> train -> evaluate -> register."""
    from srl_rlvr.pipeline.encoders import run_encoder_pipeline

    run = run_encoder_pipeline(cfg, on_stage=lambda stage, what: err_console.print(f"{stage}: {what}"))
    if run.report:
        console.print(encoder_table(run.report, "held-out split"))
    console.print(f"run directory: {cfg.output_dir}")
    if run.registered:
        console.print(f"registered {run.registered}")


def add_commands(app: typer.Typer) -> None:
    app.command("run")(run_command)
