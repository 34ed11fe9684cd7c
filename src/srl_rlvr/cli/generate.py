"""`srl-rlvr generate`: expert trajectories from the teacher/verifier team."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from srl_rlvr.cli.common import (
    ConfigArg,
    OverridesArg,
    console,
    err_console,
    load_cli_config,
)
from srl_rlvr.progress import progress_bar


def generate(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    task: Annotated[str | None, typer.Option(help="Task name or module:Class (overrides task.name).")] = None,
    n: Annotated[
        int | None, typer.Option(help="Accepted trajectories to produce (default: data.train_size).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Dataset folder (default: <output_dir>/data).")] = None,
    problems: Annotated[
        Path | None,
        typer.Option(help="JSONL of problems {text, answer?, id?, metadata?} instead of the task's sampler."),
    ] = None,
    split: Annotated[str, typer.Option(help="Which split's problems the task sampler draws.")] = "train",
    concurrency: Annotated[
        int | None, typer.Option(help="Problems in flight at once (collaboration.requests.concurrency).")
    ] = None,
) -> None:
    """Generate a versioned, verified expert-trajectory dataset with the configured teacher team.

    For each problem: retrieve context (collaboration.retrieval), ask the teacher (the task's solver, an OpenAI-compatible endpoint or a local model) for a step-by-step trajectory, verify it (rules, the task's verifier, an optional LLM judge), retry with the feedback. Accepted rows go to trajectories.jsonl as they come, rejected problems to rejected.jsonl; after a crash or Ctrl-C the same command continues.
    """
    from srl_rlvr.generate.orchestrator import Progress as Generated
    from srl_rlvr.generate.orchestrator import generate_dataset

    extra = [f"task.name={task}"] if task else []
    extra += [f"collaboration.requests.concurrency={concurrency}"] if concurrency else []
    cfg = load_cli_config(config, [*(overrides or []), *extra])
    out = out or Path(cfg.output_dir) / "data"
    with progress_bar(err_console, transient=True) as progress:
        bar = progress.add_task("generate", total=None, unit="trajectories", note="")

        def show(p: Generated) -> None:
            progress.update(
                bar,
                completed=p.accepted,
                total=p.target,
                note=f"{p.rejected} rejected, {p.attempts} attempts",
            )

        try:
            manifest = generate_dataset(
                cfg,
                out,
                n=n,
                split=split,  # type: ignore[arg-type]
                problems_file=str(problems) if problems else None,
                on_progress=show,
            )
        except KeyboardInterrupt:
            err_console.print(
                f"[yellow]interrupted: rows decided so far are kept in {out}; rerun to continue"
            )
            raise SystemExit(130) from None
    console.print(
        f"wrote {manifest['count']} trajectories ({manifest['rejected']} rejected, {manifest['attempts']} "
        f"teacher attempts) to {out}, hash {manifest['hash'][:16]}"
    )
    if manifest.get("exhausted"):
        console.print(
            f"[yellow]the problem source ran out before {n or cfg.data.train_size} rows were accepted"
        )
    for model, usage in manifest.get("usage", {}).items():
        console.print(
            f"  {model}: {usage['requests']} requests ({usage['cached']} cached, {usage['retries']} retries), "
            f"{usage['prompt_tokens']}+{usage['completion_tokens']} tokens, ${usage['cost_usd']:.4f}"
        )


def add_commands(app: typer.Typer) -> None:
    app.command("generate")(generate)
