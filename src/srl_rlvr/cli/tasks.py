"""`srl-rlvr tasks list | show`: the built-in tasks, their problems and expert trajectories."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from srl_rlvr.cli.common import (
    console,
)

if TYPE_CHECKING:
    pass

tasks_app = typer.Typer(
    help="List built-in tasks and look at their problems and expert trajectories.", no_args_is_help=True
)


@tasks_app.command("list")
def tasks_list() -> None:
    """The built-in tasks: what each asks of the model, and its class (name your own `module:Class`)."""
    import importlib

    from srl_rlvr.tasks import BUILTIN_TASKS

    table = Table("task", "what the model does", "class")
    for name, reference in BUILTIN_TASKS.items():
        doc = importlib.import_module(reference.partition(":")[0]).__doc__ or ""
        table.add_row(name, doc.strip().split("\n\n")[0].replace("\n", " "), reference)
    console.print(table)


@tasks_app.command("show")
def tasks_show(
    name: Annotated[str, typer.Argument(help="Built-in task name or module:Class.")],
    n: Annotated[int, typer.Option(help="How many problems.")] = 2,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "train",
    seed: int = 0,
) -> None:
    """Print sample prompts and, when the task has a solver, the expert trajectory for each."""
    from srl_rlvr.tasks import load_task

    task = load_task(name)
    for problem in task.sample(n, seed=seed, split=split):  # type: ignore[arg-type]
        console.rule(f"[bold]{problem.id[:60]}")
        console.print(task.prompt(problem), markup=False, highlight=False)
        if hasattr(task, "solve"):
            for i, step in enumerate(task.solve(problem).steps, start=1):
                console.print(f"  step {i}: {step.action}", markup=False, highlight=False)


def add_commands(app: typer.Typer) -> None:
    app.add_typer(tasks_app, name="tasks")
