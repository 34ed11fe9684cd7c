"""`srl-rlvr select` and `srl-rlvr costbenefit`: choose a model for a role, decide whether to replace it.

`add_commands(app)` registers both on the main app. The library under `srl_rlvr.selection` returns
values; these commands print them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from srl_rlvr.cli.common import console, err_console, load_cli_config

if TYPE_CHECKING:
    from srl_rlvr.selection.mcda import Selection, Validation


MARK = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: "[yellow]?[/yellow]"}


def _validation_cell(v: Validation) -> str:
    bench = "" if v.benchmark_match is None else f" {v.benchmark_match:.2f}"
    return (
        f"hw {MARK[v.hardware_compatible]} budget {MARK[v.cost_within_budget]} "
        f"latency {MARK[v.latency_verified]} bench {MARK[v.benchmark_within_10pct]}{bench}"
    )


def selection_table(selection: Selection) -> Table:
    """Ranked candidates (score, per-criterion scores, validation), then the rejected ones and why."""
    branch = selection.branch
    table = Table(
        title=f"{selection.profile.role}: {branch.tier.upper()} tier ({branch.rule}, {branch.size})",
        caption="criteria: 1 = best candidate on it; validation ?: not yet measured by our evaluation",
    )
    table.add_column("#", justify="right")
    table.add_column("model")
    table.add_column("params", justify="right")
    table.add_column("score", justify="right")
    for name, weight in selection.weights.items():
        table.add_column(f"{name}\n×{weight:.2f}", justify="right")
    table.add_column("validation")
    for rank, s in enumerate(selection.ranked, start=1):
        name = (
            f"[bold green]{escape(s.candidate.name)}[/bold green]" if rank == 1 else escape(s.candidate.name)
        )
        table.add_row(
            str(rank),
            name,
            s.candidate.parameters,
            f"{s.score:.3f}",
            *(f"{s.criteria[n]:.2f}" for n in selection.weights),
            _validation_cell(s.validation),
        )
    for r in selection.rejected:
        table.add_row(
            "-",
            f"[dim]{escape(r.candidate.name)}[/dim]",
            f"[dim]{r.candidate.parameters}[/dim]",
            "[dim]-[/dim]",
            *("" for _ in selection.weights),
            f"[dim]rejected: {escape('; '.join(r.reasons))}[/dim]",
        )
    return table


def select_command(
    role_profile: Annotated[Path, typer.Argument(help="Role profile YAML (requirements, weights, load).")],
    catalog: Annotated[Path, typer.Option("--catalog", help="Candidate catalog YAML or JSON.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Selection record YAML (default: selections/<role>-<UTC time>.yaml)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Run config whose model_selection: cost_weight and performance_weight weigh a role that "
            "names no weights (default: their built-in 0.3 and 0.7).",
        ),
    ] = None,
) -> None:
    """Choose the model for a role and write down why (a selection record, `selection/record.py`).

    The decision tree (`selection/decision_tree.py`) picks the tier (gold: 3-8B real-time, silver: 7-13B interactive, bronze:
    50B+ async) and its size range; hard requirements (latency, accuracy floor, cost, hardware, SLA,
    context, tool use) filter next; the rest are scored on the role's weighted criteria, each 0..1
    relative to the best candidate. Catalog entries with `measured:` use our own evaluation's numbers.
    """
    from srl_rlvr.selection.catalog import load_catalog, load_role
    from srl_rlvr.selection.mcda import select_model
    from srl_rlvr.selection.record import build_record, write_record

    profile = load_role(role_profile)
    defaults = load_cli_config(config, None).model_selection
    selection = select_model(profile, load_catalog(catalog), defaults)
    console.print(selection_table(selection))
    now = datetime.now(timezone.utc)
    record = build_record(selection, now)
    out = out or Path("selections") / f"{profile.role}-{now.strftime('%Y%m%dT%H%M%SZ')}.yaml"
    write_record(record, out)
    console.print(
        f"selected [bold]{escape(record.selected_model)}[/bold] (score {record.selection_score:.3f}, "
        f"{record.tier} tier) out of {record.candidates_evaluated} candidates\nrecord: {out}"
    )


def costbenefit_command(
    role: Annotated[Path, typer.Option("--role", help="Role profile YAML.")],
    current: Annotated[
        str, typer.Option("--current", help="The model in the role now (catalog id or name).")
    ],
    new: Annotated[str, typer.Option("--new", help="The challenger (catalog id or name).")],
    catalog: Annotated[Path, typer.Option("--catalog", help="Candidate catalog YAML or JSON.")],
    load_requests_per_day: Annotated[
        float | None,
        typer.Option("--load-requests-per-day", help="Expected load (default: the profile's load).", min=1),
    ] = None,
    tokens_per_request: Annotated[
        float | None, typer.Option("--tokens-per-request", help="Prompt+completion tokens.", min=1)
    ] = None,
    write_run_config: Annotated[
        Path | None,
        typer.Option(
            "--write-run-config", help="On 'adopt', write the `srl-rlvr run` config that trains it."
        ),
    ] = None,
) -> None:
    """Should the new model replace the current one? Performance, monthly cost, break-even, risk, decision.

    Decision score = 0.4 performance + 0.3 savings + 0.2 (1 - risk) + 0.1 break-even favourability
    (`selection/costbenefit.py`); 'adopt' above 0.7 when the new model also meets the role's hard
    requirements.
    """
    from srl_rlvr.selection.catalog import find_candidate, load_catalog, load_role
    from srl_rlvr.selection.costbenefit import DECISION_WEIGHTS, analyse, describe_months, trainable
    from srl_rlvr.selection.costbenefit import write_run_config as write_config

    profile = load_role(role)
    candidates = load_catalog(catalog)
    old, fresh = find_candidate(candidates, current), find_candidate(candidates, new)
    changes = {
        k: v
        for k, v in {
            "requests_per_day": load_requests_per_day,
            "tokens_per_request": tokens_per_request,
        }.items()
        if v is not None
    }
    result = analyse(profile, old, fresh, profile.load.model_copy(update=changes))

    table = Table("", escape(old.name), escape(fresh.name), title=f"{profile.role}: cost-benefit")
    table.add_row(
        "monthly inference", f"${result.monthly_cost_current:,.0f}", f"${result.monthly_cost_new:,.0f}"
    )
    table.add_row("training", "", f"${result.training_cost:,.0f}")
    table.add_row("break-even", "", describe_months(result.break_even.months))
    for name, delta in result.performance_delta.items():
        table.add_row(f"{name} change", "", f"{delta:+.1%}")
    console.print(table)

    terms = Table("term", "weight", "value", "weighted", title="decision score")
    values = {
        "performance": result.performance_score,
        "savings": result.savings_score,
        "risk": 1.0 - result.risk,
        "break_even": result.break_even.favourability,
    }
    for name, weight in DECISION_WEIGHTS.items():
        label = "1 - risk" if name == "risk" else name
        terms.add_row(label, f"{weight:.1f}", f"{values[name]:.3f}", f"{weight * values[name]:.3f}")
    terms.add_row("[bold]total", "", "", f"[bold]{result.decision_score:.3f}")
    console.print(terms)
    for line in result.reasoning:
        console.print(f"- {escape(line)}", highlight=False)
    colour = "green" if result.decision == "adopt" else "yellow"
    console.print(f"decision: [bold {colour}]{result.decision}[/bold {colour}]")
    if write_run_config is not None:
        if result.decision == "adopt" and not trainable(fresh):
            err_console.print(f"[yellow]no run config written: {escape(fresh.name)} is not ours to fine-tune")
        elif result.decision == "adopt":
            path = write_config(profile, fresh, result, write_run_config)
            console.print(f"run config: {path} (train with `srl-rlvr run {path}`)")
        else:
            err_console.print("[yellow]no run config written: the decision is reject")


def add_commands(app: typer.Typer) -> None:
    """Register `select` and `costbenefit` on `app`."""
    app.command("select")(select_command)
    app.command("costbenefit")(costbenefit_command)
