"""`srl-rlvr monitor`, `srl-rlvr retrain` and `srl-rlvr review`: the self-learning loop.

Exit codes a scheduler can act on: monitor 0 (nothing due), 3 (retraining due; with --auto-retrain,
the retrain's own code instead); retrain 0 (the candidate was promoted), 4 (it was not: rejected by
validation, rolled back or withdrawn in its canary; production is unchanged). 2 is a user error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from srl_rlvr.cli.common import (
    ConfigArg,
    OverridesArg,
    console,
    err_console,
    load_cli_config,
    quiet_libraries,
    show_progress_lines,
)

DUE = 3
NOT_PROMOTED = 4

review_app = typer.Typer(
    help="The human review queue: export cases for Label Studio or Argilla, import the corrections.",
    no_args_is_help=True,
)


def monitor_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    auto_retrain: Annotated[
        bool,
        typer.Option("--auto-retrain", help="When retraining is due, run `srl-rlvr retrain` right away."),
    ] = False,
) -> None:
    """Check production (feedback.store) against the retrain criteria; write a report; exit 3 when due."""
    cfg = load_cli_config(config, overrides)
    from srl_rlvr.feedback.monitor import monitor
    from srl_rlvr.feedback.monitor_report import write_monitor_report
    from srl_rlvr.feedback.monitor_run import record_monitoring

    found = monitor(cfg)
    report = write_monitor_report(found, cfg.feedback.report_dir)
    record_monitoring(cfg, found, report)
    for c in found.criteria:
        mark = "[red]yes[/red]" if c.holds else "no "
        console.print(f"{mark} {c.name}: {c.detail}", highlight=False)
    console.print(f"{found.verdict}; report {report}", highlight=False)
    if found.due and auto_retrain:
        retrain_command(config, overrides)
    elif found.due:
        raise typer.Exit(DUE)


def retrain_command(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """Learn from production's failures and corrections, validate against production, roll out; exit 4 if not promoted."""
    cfg = load_cli_config(config, overrides)
    quiet_libraries()
    show_progress_lines()  # no bar here: a line every few training steps
    from srl_rlvr.feedback.retrain import retrain

    result = retrain(cfg, on_step=lambda message: err_console.print(message, highlight=False))
    console.print(f"gate: {result.verdict}", highlight=False)
    console.print(
        f"{result.candidate}: {result.deployed}; report {result.run_dir / 'retrain.md'}", highlight=False
    )
    if not result.promoted:
        raise typer.Exit(NOT_PROMOTED)


@review_app.command("export")
def export_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    out: Annotated[Path, typer.Option("--out", help="File to write.")] = Path("review-queue.json"),
    fmt: Annotated[
        str, typer.Option("--format", help="labelstudio (JSON tasks) or argilla (JSONL records).")
    ] = "labelstudio",
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many cases, newest first.")
    ] = 500,
) -> None:
    """Negative and low-confidence production cases, for people to correct."""
    if fmt not in ("labelstudio", "argilla"):
        raise typer.BadParameter(f"'{fmt}': use labelstudio or argilla", param_hint="--format")
    cfg = load_cli_config(config, overrides)
    from srl_rlvr.data.records import open_existing
    from srl_rlvr.feedback.review import export_queue, review_cases

    cases = review_cases(open_existing(cfg.feedback.store), cfg.feedback.role, limit)
    path = export_queue(cases, out, fmt)  # type: ignore[arg-type]
    console.print(f"{len(cases)} cases to review -> {path}", highlight=False)


@review_app.command("import")
def import_command(
    reviewed: Annotated[Path, typer.Argument(help="Label Studio JSON export, or Argilla / plain JSONL.")],
    config: ConfigArg = None,
    overrides: OverridesArg = None,
) -> None:
    """Store reviewed corrections (each checked by its role's task) for the next retrain."""
    cfg = load_cli_config(config, overrides)
    from srl_rlvr.data.records import open_existing
    from srl_rlvr.feedback.review import import_reviews
    from srl_rlvr.tasks import load_task

    task = load_task(cfg.task.name, cfg.task.options)
    store = open_existing(cfg.feedback.store)
    roles = {r.model for r in store.records(model=cfg.feedback.role)}
    result = import_reviews(store, reviewed, {role: task for role in roles})
    for line in result.refused:
        err_console.print(escape(line), highlight=False)
    console.print(
        f"{result.stored} corrections stored, {len(result.refused)} refused, {result.skipped} rows without one",
        highlight=False,
    )
    if result.refused:
        raise typer.Exit(2)


def add_commands(app: typer.Typer) -> None:
    app.command("monitor")(monitor_command)
    app.command("retrain")(retrain_command)
    app.add_typer(review_app, name="review")
