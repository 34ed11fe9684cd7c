"""`srl-rlvr experiment`: A/B of training recipes over seeds, with a decision."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from srl_rlvr.cli.common import (
    ConfigArg,
    OverridesArg,
    cli_config_source,
    console,
    err_console,
    load_cli_config,
    quiet_libraries,
)


def experiment_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    arm: Annotated[
        list[str],
        typer.Option(
            "--arm",
            help="An arm: its name, then key=value overrides of the config, quoted as one argument, e.g. "
            "--arm 'sft_rlvr pipeline.stages=\\[generate,sft,rlvr]'. Repeat; the first is the baseline.",
        ),
    ] = [],  # noqa: B006 - typer needs a literal default for a repeated option
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds 0..N-1 of every arm.")] = 3,
    out: Annotated[str, typer.Option("--out", help="The experiment folder.")] = "runs/experiment",
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="The arm the others are compared to (default: the first)."),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric", help="The metric that decides (default: pipeline.gate_metric, else the task's first)."
        ),
    ] = None,
    cost_margin: Annotated[
        float,
        typer.Option(
            "--cost-margin",
            min=0,
            help="Adopt only when an arm's device-seconds stay within (1 + this) x the baseline's.",
        ),
    ] = 0.2,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Jobs at once (default: one per GPU, else 1).")
    ] = None,
    search: Annotated[
        list[str],
        typer.Option(
            "--search",
            help="A range for an Optuna search: key=low..high, key=log:low..high, key=int:low..high or "
            "key=\\[a,b]; repeat for more keys. Each trial is one more arm against the baseline. Needs "
            "Optuna: pip install 'srl-rlvr\\[experiment]'.",
        ),
    ] = [],  # noqa: B006 - typer needs a literal default for a repeated option
    trials: Annotated[
        int, typer.Option("--trials", min=1, help="Search trials in all (with --search).")
    ] = 10,
) -> None:
    """Try recipes against the current one and adopt only on evidence.

    Every arm x seed trains through the pipeline in its own process and answers the same held-out
    problems; each arm is compared with the baseline by a paired bootstrap per metric. A rerun skips
    the finished jobs. Writes OUT/experiment.md, experiment.json and experiment.png. With --search,
    an Optuna study proposes the arms, one trial at a time, and keeps its state in OUT/search.db.
    """
    config, cfg_overrides = cli_config_source(config, overrides)
    load_cli_config(config, cfg_overrides)  # a bad config fails here, in one line
    quiet_libraries()
    from srl_rlvr.experiment.arms import Arm, parse_arm
    from srl_rlvr.experiment.runner import run_experiment

    study = None
    if search:
        from srl_rlvr.experiment.search import OptunaSearch, parse_range

        study = OptunaSearch([parse_range(r) for r in search], trials, out)

    def on_job(kind: str, name: str) -> None:
        colour = {"start": "bold", "done": "green", "failed": "red"}[kind]
        err_console.print(f"[{colour}]{kind}[/{colour}] {escape(name)}", highlight=False)

    result = run_experiment(
        config,
        cfg_overrides,
        [parse_arm(a) for a in arm] or ([Arm("base")] if study else []),
        list(range(seeds)),
        out,
        baseline=baseline,
        metric=metric,
        cost_margin=cost_margin,
        workers=workers,
        on_job=on_job,
        search=study,
    )
    if result.skipped:
        err_console.print(f"[dim]finished before, skipped: {', '.join(result.skipped)}[/dim]")
    table = Table(
        "arm", result.primary, "delta", "interval", "cost", "decision", title=f"vs {result.baseline}"
    )
    for c in result.comparisons:
        d = c.delta(result.primary)
        table.add_row(
            c.arm,
            f"{d.arm:.3f} vs {d.baseline:.3f}",
            f"{d.delta:+.3f}",
            f"[{d.low:+.3f}, {d.high:+.3f}]",
            f"x{c.cost_ratio:.2f}",
            c.decision,
        )
    console.print(table)
    console.print(f"report: {result.report} (plot {result.plot})")


def add_commands(app: typer.Typer) -> None:
    app.command("experiment")(experiment_command)
