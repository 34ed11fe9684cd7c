"""`srl-rlvr eval`: held-out evaluation of one or more models against a baseline."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from srl_rlvr.cli.common import (
    OverridesArg,
    console,
    encoder_table,
    err_console,
    load_cli_config,
    print_evaluation,
    quiet_libraries,
)
from srl_rlvr.progress import progress_bar

if TYPE_CHECKING:
    from rich.progress import TaskID

    from srl_rlvr.config import Config


def eval_command(
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            help="'tiny', a model folder or a stage folder (runs/x/rlvr); repeat to compare stages in order.",
        ),
    ],
    overrides: OverridesArg = None,
    task: Annotated[
        str | None, typer.Option("--task", help="Task name or module:Class (default: the config's task).")
    ] = None,
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Model to compare against; listed first.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML config (eval:, task:, model:).")
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="Problems (default: data.test_size).")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Report folder (default: <run>/eval-<model> for a run's model, <model>-eval for another folder, else runs/eval).",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Held-out split: test or val.")] = "test",
    testset: Annotated[
        str | None,
        typer.Option(
            "--testset",
            help="A versioned test set (NAME or NAME@VERSION, from `srl-rlvr testdata build`, found in "
            "data.testsets) instead of the task's split.",
        ),
    ] = None,
) -> None:
    """Evaluate on held-out problems: metrics, latency, weak slices, deltas with bootstrap CIs; write a report."""
    if split not in ("train", "val", "test"):
        raise typer.BadParameter(f"'{split}' is not a split; use test or val", param_hint="--split")
    from srl_rlvr.evaluate.run import default_out_dir, run_dir_of, run_tracked_evaluation

    run_dir = run_dir_of(model[-1]) if config is None else None
    if run_dir is not None:  # the run's own task options and test set, not the defaults
        config = run_dir / "config.yaml"
    elif config is None and model[-1].startswith("registry:"):  # the config of the run that trained it
        from srl_rlvr.tracking.registry import run_config_of

        config = run_config_of(model[-1], tempfile.mkdtemp(prefix="srl-rlvr-eval-"))
        run_dir = config.parent if config is not None else None
    cfg = load_cli_config(config, overrides)
    kind = _registered_type(model[-1]) if cfg.model.type == "causal_lm" else None
    if kind is not None:  # a version registered without its run's config: its type tag says what it is
        cfg = load_cli_config(config, [*(overrides or []), f"model.type={kind}"])
    quiet_libraries()
    if cfg.model.type != "causal_lm":
        if testset is not None or split != "test" or task is not None:
            raise typer.BadParameter(
                f"a {cfg.model.type} is evaluated on its run's held-out queries or prompts; "
                "--testset, --split and --task are for causal LMs"
            )
        _eval_encoder(cfg, model, baseline, n, out or default_out_dir(model[-1]))
        return
    out = out or default_out_dir(model[-1])
    problems, source = None, f"{split} split"
    if testset is not None:
        from srl_rlvr.data.testsets import load_testset
        from srl_rlvr.evaluate.testdata import as_problem

        rows, manifest = load_testset(cfg.data.testsets, testset)
        problems = [as_problem(r) for r in rows]
        source = f"test set {manifest['name']}@{manifest['version']}"
    err_console.print(
        f"config: {config or 'built-in defaults'}"
        + (" (the model's run)" if run_dir is not None else "")
        + f"; task {task or cfg.task.name}, {source}, n={len(problems) if problems else n or cfg.data.test_size}"
        + f"; report -> {out}",
        highlight=False,
    )
    progress = progress_bar(err_console)
    bars: dict[str, TaskID] = {}

    def on_batch(what: str, done: int, total: int) -> None:
        if what not in bars:
            bars[what] = progress.add_task(f"evaluate {what}", total=total, unit="problems", note="")
        progress.update(bars[what], completed=done)

    with progress:
        run = run_tracked_evaluation(
            cfg,
            model,
            out,
            baseline=baseline,
            task_name=task,
            n=n,
            split=split,
            on_model=lambda label, path: progress.console.print(f"loading {label} ({path})", highlight=False),
            on_batch=on_batch,
            problems=problems,
        )
    print_evaluation(run, cfg, title=source)


def _registered_type(model: str) -> str | None:
    """The `model_type` tag of a registered encoder version; None for anything else."""
    if not model.startswith("registry:"):
        return None
    from srl_rlvr.tracking.registry import resolve

    kind = resolve(model).tags.get("model_type")
    return kind if kind not in (None, "causal_lm") else None


def _eval_encoder(cfg: Config, models: list[str], baseline: str | None, n: int | None, out: Path) -> None:
    from srl_rlvr.evaluate.encoder_run import run_tracked_encoder_evaluation

    err_console.print(
        f"{cfg.model.type}: held-out split of task {cfg.task.name}; report -> {out}", highlight=False
    )
    report, path = run_tracked_encoder_evaluation(cfg, models, out, baseline=baseline, n=n)
    console.print(encoder_table(report, "held-out split"))
    console.print(f"report: {path} and {path.with_name('report.md')}")


def add_commands(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
