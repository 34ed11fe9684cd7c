"""`srl-rlvr distill`: train a small student on a teacher's verified answers, tier by tier."""

from __future__ import annotations

from typing import Annotated

import typer

from srl_rlvr.cli.common import (
    ConfigArg,
    OverridesArg,
    console,
    err_console,
    load_cli_config,
    quiet_libraries,
    show_progress_lines,
)

NOT_REGISTERED = 4


def distill_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    cascade: Annotated[
        str | None,
        typer.Option(
            "--cascade",
            help="Tiers in order, e.g. bronze,silver,gold: each tier's student teaches the next "
            "(students from distill.students).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="'last': only what is new since the last distillation (nightly runs)."),
    ] = None,
) -> None:
    """Distil distill.teacher into distill.student; register it when it keeps min_quality_ratio (exit 4 if not)."""
    if since not in (None, "last"):
        raise typer.BadParameter(f"'{since}': the only value is 'last'", param_hint="--since")
    cfg = load_cli_config(config, overrides)
    quiet_libraries()
    show_progress_lines()  # no bar here: a line every few training steps
    from srl_rlvr.distill.run import cascade as run_cascade
    from srl_rlvr.distill.run import distill_once

    def say(message: str) -> None:
        err_console.print(message, highlight=False)

    if cascade:
        results = run_cascade(cfg, [t.strip() for t in cascade.split(",") if t.strip()], since == "last", say)
    else:
        results = [
            distill_once(
                cfg, cfg.distill.teacher, cfg.distill.student, cfg.distill.tier, since == "last", say
            )
        ]
    for r in results:
        label = r.tier or "student"
        if r.skipped is not None:
            console.print(f"{label}: {r.skipped}", highlight=False)
        elif r.validation is not None:
            outcome = f"registered {r.registered}" if r.registered else "NOT registered"
            console.print(
                f"{label}: {outcome} (parent {r.teacher}); {r.validation.why}; agreement "
                f"{r.validation.agreement:.1%}, {r.validation.speed}; report {r.run_dir}/distill.md",
                highlight=False,
            )
    if not all(r.ok for r in results):
        raise typer.Exit(NOT_REGISTERED)


def add_commands(app: typer.Typer) -> None:
    app.command("distill")(distill_command)
