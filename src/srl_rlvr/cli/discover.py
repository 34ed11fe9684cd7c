"""`srl-rlvr discover`: candidate base models from the Hugging Face Hub, judged by the spec's filter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from srl_rlvr.cli.common import ConfigArg, OverridesArg, console, load_cli_config


def discover_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    offline: Annotated[
        Path | None,
        typer.Option(
            "--offline", help="Judge the models of a snapshot file (hub-snapshot.json) instead of the Hub."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Where discovered.yaml (and the snapshot) go.")] = Path(
        "runs/discover"
    ),
) -> None:
    """List new base models worth a cost-benefit analysis, and why the others are not.

    Reads model_selection.discovery (Hub task, size range, recency, the 3-of-5 rule, the catalog to
    diff against). Uses HF_ENDPOINT when set. Idempotent: a scheduler runs it every
    model_selection.update_frequency_days.
    """
    cfg = load_cli_config(config, overrides)
    from srl_rlvr.selection.discovery import FINDINGS_FILE, run_discovery

    found = run_discovery(cfg, out, offline)
    settings = cfg.model_selection.discovery
    table = Table(
        "model", "params", "criteria", "verdict", "criteria not met", title=f"candidates from {found.source}"
    )
    for f in sorted(found.findings, key=lambda f: (not f.passed, -f.met)):
        size = f"{f.model.parameters_b:.1f}B" if f.model.parameters_b else "?"
        verdict = (
            ("in catalog" if f.in_catalog else "[green]new[/green]") if f.passed else "[dim]filtered[/dim]"
        )
        why = "; ".join(c.reason for c in f.criteria if not c.met) or "meets all five"
        table.add_row(escape(f.model.id), size, f"{f.met}/5", verdict, escape(why))
    console.print(table)
    console.print(
        f"{len(found.new)} new of {sum(f.passed for f in found.findings)} passing {settings.min_criteria} of 5 "
        f"({len(found.findings)} looked at); findings: {out / FINDINGS_FILE}"
    )
    for command in found.proposals:
        console.print(f"proposed: {escape(command)}", highlight=False, soft_wrap=True)


def add_commands(app: typer.Typer) -> None:
    app.command("discover")(discover_command)
