"""`srl-rlvr testdata build`: a versioned, leakage-free test set with known difficulty."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from srl_rlvr.cli.common import ConfigArg, OverridesArg, console, load_cli_config, quiet_libraries

testdata_app = typer.Typer(help="Versioned test sets, free of training data.", no_args_is_help=True)


@testdata_app.command("build")
def build_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    name: Annotated[
        str, typer.Option("--name", help="The test set's name (eval --testset NAME).")
    ] = "default",
    file: Annotated[
        list[Path] | None,
        typer.Option("--file", help="A JSONL of {text, answer, id?, metadata?} problems; repeat for more."),
    ] = None,
    from_task: Annotated[
        bool, typer.Option("--task/--no-task", help="Take data.test_size problems of the task's test split.")
    ] = True,
    production: Annotated[
        bool,
        typer.Option(
            "--production",
            help="Add production failures from the record store (feedback.store, feedback.role).",
        ),
    ] = False,
    train: Annotated[
        list[Path] | None,
        typer.Option(
            "--train",
            help="More training data to keep out (trajectory or problem JSONL), beyond the task's train "
            "split and data.trajectories.",
        ),
    ] = None,
    generated: Annotated[
        int | None,
        typer.Option(
            "--generated",
            help="Problems the teacher (collaboration.teacher, an endpoint) writes; kept when the task's "
            "verifier can score them. Default: data.generated_test_size.",
        ),
    ] = None,
    difficulty: Annotated[
        bool,
        typer.Option(
            "--difficulty/--no-difficulty", help="Score each problem's difficulty with model.name_or_path."
        ),
    ] = True,
) -> None:
    """Build a test set: gather problems (the task's test split, files, the teacher's, production
    failures), remove those training data holds (exact or near duplicates), rate each problem's
    difficulty by the base model's pass rate, and save it as a new version."""
    cfg = load_cli_config(config, overrides)
    quiet_libraries()
    from srl_rlvr.evaluate.testdata import build_testset

    n = cfg.data.generated_test_size if generated is None else generated
    proposed = None
    if n:
        from srl_rlvr.data.testsets import teacher_folder
        from srl_rlvr.generate.teacher_problems import teacher_problems

        proposed = teacher_problems(cfg, teacher_folder(cfg.data.testsets, name), n)
        for dropped in proposed.unscorable:
            console.print(
                f"dropped teacher problem {escape(dropped['id'])}: {escape(dropped['reason'])}: "
                f"{escape(dropped['text'][:80])}",
                highlight=False,
            )
    built = build_testset(
        cfg,
        name,
        file or [],
        from_task,
        production,
        train or [],
        difficulty,
        generated=proposed.problems if proposed else (),
        generation=proposed.record() if proposed else None,
    )
    sources = ", ".join(f"{n} from {s}" for s, n in built.counts.items())
    console.print(f"test set {name}@{built.version}: {sum(built.counts.values())} problems ({sources})")
    for leak in built.leaks:
        console.print(
            f"removed {escape(leak.id)}: {leak.kind} duplicate of training data "
            f"(similarity {leak.similarity:.2f}): {escape(leak.training_text[:80])}",
            highlight=False,
        )
    if built.difficulty:
        console.print("difficulty: " + ", ".join(f"{k} {v}" for k, v in sorted(built.difficulty.items())))
    console.print(f"folder: {built.folder}; evaluate with `srl-rlvr eval --testset {name}@{built.version}`")


def add_commands(app: typer.Typer) -> None:
    app.add_typer(testdata_app, name="testdata")
