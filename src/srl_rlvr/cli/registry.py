"""`srl-rlvr registry ...` and `srl-rlvr ui`: the MLflow model registry and tracking UI from our CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from srl_rlvr.cli.common import console
from srl_rlvr.errors import UserError

registry_app = typer.Typer(
    help="Registered models: versions with lineage, aliases (staging/production/backup), promotion gate.",
    no_args_is_help=True,
)

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."
    ),
]


@registry_app.callback()
def _store(ctx: typer.Context, store: StoreOpt = None) -> None:
    """Which store every subcommand reads; a sqlite file that is not there is an error (reading would
    create an empty one and show an empty table), except for `register`, which may start a store."""
    from srl_rlvr.tracking.runs import tracking_uri

    if store:
        os.environ["MLFLOW_TRACKING_URI"] = store
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and ctx.invoked_subcommand != "register":
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise UserError(
                f"no registry at {path.absolute()}: run this where you trained (the run's "
                "registry.tracking_uri), or name the store with --store"
            )


def _reference(model: str) -> str:
    """NAME, NAME@ALIAS or NAME/VERSION, with or without the registry: prefix."""
    from srl_rlvr.tracking.registry import PREFIX

    model = model if model.startswith(PREFIX) else PREFIX + model
    return model if ("@" in model or "/" in model.removeprefix(PREFIX)) else model + "@production"


@registry_app.command("list")
def list_command() -> None:
    """Every registered model, its latest version and where its aliases point."""
    from srl_rlvr.tracking.registry import models
    from srl_rlvr.tracking.runs import tracking_uri

    table = Table("model", "latest", "production", "staging", "backup", caption=f"store: {tracking_uri()}")
    for name, latest, aliases in models():
        table.add_row(
            name,
            f"v{latest}",
            *(f"v{aliases[a]}" if a in aliases else "-" for a in ("production", "staging", "backup")),
        )
    console.print(table)


@registry_app.command("show")
def show_command(name: Annotated[str, typer.Argument(help="Registered model name.")]) -> None:
    """All versions of a model: stage, parent, data, metrics, aliases."""
    from srl_rlvr.tracking.registry import versions

    table = Table("version", "aliases", "stage", "parent", "data", "metrics", title=name)
    for v in versions(name):
        metrics = "  ".join(f"{k} {x:.4g}" for k, x in sorted(v.metrics.items()))
        table.add_row(
            f"v{v.version}", ", ".join(sorted(v.aliases)), v.stage, v.parent, v.dataset[:40], metrics
        )
    console.print(table)


@registry_app.command("lineage")
def lineage_command(
    model: Annotated[str, typer.Argument(help="NAME (production), NAME@ALIAS or NAME/VERSION.")],
) -> None:
    """The chain of parents from a version back to the model it started from, with each step's data."""
    from srl_rlvr.tracking.registry import lineage

    for depth, step in enumerate(lineage(_reference(model))):
        indent = "  " * depth + ("└─ " if depth else "")
        if isinstance(step, str):
            console.print(f"{indent}{step}  [dim](base)[/dim]", highlight=False)
        else:
            score = "  ".join(
                f"{k} {x:.4g}" for k, x in sorted(step.metrics.items()) if k in ("reward", "accuracy")
            )
            console.print(
                f"{indent}{step.reference}  {step.stage}  data {step.dataset or '-'}  {score}",
                highlight=False,
            )


@registry_app.command("promote")
def promote_command(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[int, typer.Argument(help="Version number to promote.")],
    to: Annotated[str, typer.Option("--to", help="staging, production or backup.")] = "production",
    metric: Annotated[
        str, typer.Option("--metric", help="Evaluation metric the gate compares (registry.primary_metric).")
    ] = "reward",
    force: Annotated[
        bool, typer.Option("--force", help="Promote even when it scores worse than production.")
    ] = False,
) -> None:
    """Point an alias at a version. To production: the old production becomes backup, and a version that
    evaluates worse than it is refused unless --force."""
    from srl_rlvr.tracking.registry import promote

    console.print(promote(name, version, to=to, metric=metric, force=force))


@registry_app.command("rollback")
def rollback_command(name: Annotated[str, typer.Argument(help="Registered model name.")]) -> None:
    """Swap production and backup: the previous production version serves again."""
    from srl_rlvr.tracking.registry import rollback

    console.print(rollback(name))


@registry_app.command("register")
def register_command(
    model_dir: Annotated[
        Path, typer.Argument(help="A model or LoRA adapter folder (e.g. runs/x/rlvr/final).")
    ],
    name: Annotated[str, typer.Option("--name", help="Registered model name.")],
    parent: Annotated[
        str,
        typer.Option("--parent", help="What it was trained from: a hub id, a path or registry:NAME/VERSION."),
    ],
    stage: Annotated[
        str, typer.Option("--stage", help="Training stage that produced it (srl, rlvr, sft).")
    ] = "",
    dataset: Annotated[
        str, typer.Option("--dataset", help="What it learned from, e.g. dataset:<hash>.")
    ] = "",
    report: Annotated[
        Path | None, typer.Option("--report", help="An evaluation report.json whose metrics to record.")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", help="The model's label in the report (default: the last one).")
    ] = None,
) -> None:
    """Register a model trained outside `srl-rlvr run` (the pipeline's register stage does this itself)."""
    from srl_rlvr.errors import DataError
    from srl_rlvr.tracking.registry import register

    metrics: dict[str, float] = {}
    if report is not None:
        results = json.loads(report.read_text())["results"]
        chosen = label or list(results)[-1]
        if chosen not in results:
            raise DataError(f"{report}: no model labelled '{chosen}'; labels: {', '.join(results)}")
        metrics = {k: float(v) for k, v in results[chosen]["metrics"].items()}
    v = register(name, model_dir, stage=stage, parent=parent, dataset=dataset, metrics=metrics)
    console.print(f"registered {v.reference} (parent {v.parent})")


def ui_command(
    port: Annotated[int, typer.Option("--port", help="Port for the MLflow UI.")] = 5000,
    store: StoreOpt = None,
) -> None:
    """Open the MLflow UI on this project's store (runs, metrics, plots, registered models)."""
    from srl_rlvr.tracking.runs import tracking_uri

    uri = store or tracking_uri()
    command = ["mlflow", "ui", "--backend-store-uri", uri, "--port", str(port)]
    console.print(f"MLflow UI on {uri}: http://127.0.0.1:{port}  ({' '.join(command)})", highlight=False)
    executable = shutil.which("mlflow")
    if executable is None:
        console.print(
            "mlflow is not on PATH; run the command above from the environment srl-rlvr is installed in"
        )
        raise SystemExit(1)
    os.execv(executable, command)


def add_commands(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
    app.command("ui")(ui_command)
