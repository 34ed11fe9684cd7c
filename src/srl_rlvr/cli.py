"""`srl-rlvr`: the command line. It prints; the library it calls only returns values and logs.

Heavy imports (torch, transformers, trl) happen inside the commands that need them, so `--help`
and `config check` answer instantly.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from srl_rlvr import cli_manage, cli_registry, cli_serve
from srl_rlvr.errors import DataError, UserError

if TYPE_CHECKING:
    from srl_rlvr.config import Config
    from srl_rlvr.evaluate.run import EvalRun
    from srl_rlvr.stages import StageEvent

app = typer.Typer(
    help="Make a small language model better at a job: expert trajectories -> SRL -> RLVR -> evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
config_app = typer.Typer(help="Check and inspect YAML configs.", no_args_is_help=True)
tasks_app = typer.Typer(
    help="List built-in tasks and look at their problems and expert trajectories.", no_args_is_help=True
)
data_app = typer.Typer(help="Validate and describe trajectory datasets.", no_args_is_help=True)
train_app = typer.Typer(
    help="Train a model: SRL (step-wise RL), RLVR (outcome RL), SFT (baseline).", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(tasks_app, name="tasks")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")

# A log file or pipe gets a width that fits the evaluation table; a terminal keeps its own.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True)

# A string, not a Path: the first argument may be an override (`teacher.base_url=http://...`), and a
# Path would fold its '//' into '/'.
ConfigArg = Annotated[str | None, typer.Argument(help="YAML config; omit for the built-in defaults.")]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Dotted overrides, e.g. srl.learning_rate=3e-6 task.name=sentiment."),
]


def _load(config: str | Path | None, overrides: list[str] | None) -> Config:
    from srl_rlvr.config import load_config

    config = str(config) if config is not None else None
    overrides = list(overrides or [])
    if config is not None and "=" in config and not Path(config).exists():  # overrides with no config file
        config, overrides = None, [config, *overrides]
    loaded = load_config(config, overrides)
    # `registry:` model references resolve in the config's store, unless the environment names one
    os.environ.setdefault("MLFLOW_TRACKING_URI", loaded.registry.tracking_uri)
    return loaded


@config_app.command("check")
def config_check(config: ConfigArg = None, overrides: OverridesArg = None) -> None:
    """Validate a config and print it fully resolved (every default filled in), each key with its
    description as a comment above it."""
    from srl_rlvr.config import dump_config
    from srl_rlvr.tasks import load_task

    loaded = _load(config, overrides)
    load_task(loaded.task.name, loaded.task.options)  # imports a user task now, not at `run`
    console.print(dump_config(loaded, described=True), end="", markup=False, highlight=False)
    err_console.print(f"[green]ok[/green] {config or 'defaults'}")


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


@data_app.command("check")
def data_check(
    path: Annotated[Path, typer.Argument(help="A trajectory JSONL file or dataset folder.")],
) -> None:
    """Validate every row of a trajectory dataset; print its size and content hash."""
    from srl_rlvr.data.versioning import load_dataset

    rows, manifest = load_dataset(path)
    if not rows:
        raise DataError(f"{path}: no trajectories in it (the file is empty or blank)")
    steps = [len(r.steps) for r in rows]
    console.print(f"{len(rows)} trajectories, {min(steps)}-{max(steps)} steps, hash {manifest['hash'][:16]}")


@app.command("generate")
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
    from srl_rlvr.collaborate.orchestrator import Progress as Generated
    from srl_rlvr.collaborate.orchestrator import generate_dataset

    extra = [f"task.name={task}"] if task else []
    extra += [f"collaboration.requests.concurrency={concurrency}"] if concurrency else []
    cfg = _load(config, [*(overrides or []), *extra])
    out = out or Path(cfg.output_dir) / "data"
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        bar = progress.add_task("teaching + verifying", total=None)

        def show(p: Generated) -> None:
            progress.update(
                bar,
                completed=p.accepted,
                total=p.target,
                description=f"accepted ({p.rejected} rejected, {p.attempts} attempts)",
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


DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Trajectory JSONL or dataset folder (default: data.trajectories, else <output_dir>/data).",
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Stage folder (default: <output_dir>/<stage>; <output_dir>/train-<stage> when output_dir "
        "is a pipeline run, whose own stage folders `train` leaves alone).",
    ),
]


def default_train_out(cfg: Config, stage: str) -> Path:
    """Beside a pipeline's own stage folder, never over it: `run` would keep a model it did not train."""
    run_dir = Path(cfg.output_dir)
    return run_dir / (f"train-{stage}" if (run_dir / "pipeline.json").is_file() else stage)


ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Start from this model (overrides model.name_or_path).")
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in --out.")]


def _train(
    stage: str,
    config: str | None,
    overrides: list[str] | None,
    data: Path | None,
    out: Path | None,
    model: str | None,
    resume: bool,
) -> None:
    cfg = _load(config, [*(overrides or []), *([f"model.name_or_path={model}"] if model else [])])
    from srl_rlvr.data.versioning import load_dataset

    data = data or Path(cfg.data.trajectories or Path(cfg.output_dir) / "data")
    out = out or default_train_out(cfg, stage)
    trajectories, manifest = load_dataset(data)
    quiet_libraries()
    from srl_rlvr.train.callbacks import RichProgress
    from srl_rlvr.train.loop import TrainingInterrupted

    err_console.print(
        f"{stage}: {len(trajectories)} trajectories (hash {manifest['hash'][:12]}) "
        f"-> {out}; model {cfg.model.name_or_path}"
    )
    if stage == "srl":
        from srl_rlvr.train.srl import train_srl as train
    else:
        from srl_rlvr.train.sft import train_sft as train
    from srl_rlvr.tracking.runs import TRAINING_FILES, tracked_run

    try:
        with tracked_run(cfg, stage, out, {"srl_rlvr.dataset": f"dataset:{manifest['hash']}"}) as run:
            tracking = [run.callback()] if run else []
            final = train(cfg, trajectories, out, resume=resume, callbacks=[RichProgress(stage), *tracking])
            if run:
                run.log_files(out, TRAINING_FILES)
    except TrainingInterrupted as e:
        err_console.print(f"[yellow]{escape(str(e))}[/yellow]")
        raise SystemExit(143) from None
    console.print(f"trained model: {final}\nmetrics: {out / 'metrics.jsonl'}")


@train_app.command("srl")
def train_srl_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    data: DataOpt = None,
    out: OutOpt = None,
    model: ModelOpt = None,
    resume: ResumeOpt = False,
) -> None:
    """SRL: reward each predicted step by its similarity to the expert's (Deng et al. 2025)."""
    _train("srl", config, overrides, data, out, model, resume)


@train_app.command("sft")
def train_sft_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    data: DataOpt = None,
    out: OutOpt = None,
    model: ModelOpt = None,
    resume: ResumeOpt = False,
) -> None:
    """SFT baseline: learn whole expert solutions token by token."""
    _train("sft", config, overrides, data, out, model, resume)


@train_app.command("rlvr")
def train_rlvr_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    out: OutOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Start model or stage folder (default: <output_dir>/srl when SRL ran, else model.name_or_path).",
        ),
    ] = None,
    resume: ResumeOpt = False,
) -> None:
    """RLVR: reward outcomes the task verifies (rlvr.algorithm: grpo, dr_grpo, dapo, ppo, dpo)."""
    cfg = _load(config, overrides)
    from srl_rlvr.tasks import load_task

    task = load_task(cfg.task.name, cfg.task.options)
    problems = task.sample(cfg.data.train_size, cfg.data.seed, "train")
    out = out or default_train_out(cfg, "rlvr")
    quiet_libraries()
    from srl_rlvr.train.callbacks import RichProgress
    from srl_rlvr.train.loop import TrainingInterrupted
    from srl_rlvr.train.rlvr import default_start_model, stage_model, train_rlvr

    start = stage_model(model) if model else default_start_model(cfg)
    err_console.print(
        f"rlvr ({cfg.rlvr.algorithm}): {len(problems)} {task.name} problems -> {out}; model {start}"
    )
    from srl_rlvr.stages import stage_data
    from srl_rlvr.tracking.runs import TRAINING_FILES, tracked_run

    try:
        with tracked_run(cfg, "rlvr", out, {"srl_rlvr.dataset": stage_data(cfg, "rlvr", {})}) as run:
            tracking = [run.callback()] if run else []
            result = train_rlvr(
                cfg,
                problems,
                out,
                task=task,
                model=start,
                resume=resume,
                callbacks=[RichProgress("rlvr"), *tracking],
            )
            if run:
                run.log_files(out, TRAINING_FILES)
    except TrainingInterrupted as e:
        err_console.print(f"[yellow]{escape(str(e))}[/yellow]")
        raise SystemExit(143) from None
    console.print(f"trained model: {result}\nmetrics: {out / 'metrics.jsonl'}")


@app.command("eval")
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
        Path | None, typer.Option("--out", help="Report folder (default: <model>/eval, or runs/eval).")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Held-out split: test or val.")] = "test",
) -> None:
    """Evaluate on held-out problems: metrics, latency, weak slices, deltas with bootstrap CIs; write a report."""
    if split not in ("train", "val", "test"):
        raise typer.BadParameter(f"'{split}' is not a split; use test or val", param_hint="--split")
    from srl_rlvr.evaluate.run import default_out_dir, run_dir_of, run_evaluation

    run_dir = run_dir_of(model[-1]) if config is None else None
    if run_dir is not None:  # the run's own task options and test set, not the defaults
        config = run_dir / "config.yaml"
    cfg = _load(config, overrides)
    quiet_libraries()
    from srl_rlvr.tracking.runs import STAGE_FILES, log_evaluation, tracked_run

    out = out or default_out_dir(model[-1])
    err_console.print(
        f"config: {config or 'built-in defaults'}"
        + (" (the model's run)" if run_dir is not None else "")
        + f"; task {task or cfg.task.name}, {split} split, n={n or cfg.data.test_size}; report -> {out}",
        highlight=False,
    )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )
    bars: dict[str, TaskID] = {}

    def on_batch(what: str, done: int, total: int) -> None:
        if what not in bars:
            bars[what] = progress.add_task(f"evaluating {what}", total=total)
        progress.update(bars[what], completed=done)

    with (
        tracked_run(
            cfg, "evaluate", out, {"srl_rlvr.models": ", ".join([*([baseline] if baseline else []), *model])}
        ) as tracking,
        progress,
    ):
        run = run_evaluation(
            cfg,
            model,
            baseline=baseline,
            task_name=task,
            n=n,
            split=split,  # type: ignore[arg-type]
            out_dir=out,
            on_model=lambda label, path: progress.console.print(f"loading {label} ({path})", highlight=False),
            on_batch=on_batch,
        )
        if tracking:
            log_evaluation(tracking, run.results)
            tracking.log_files(run.report.parent, STAGE_FILES["evaluate"])
    _print_evaluation(run, cfg, title=f"{split} split")


def _show_stages(progress: Progress) -> Callable[[StageEvent], None]:
    """Pipeline events as one live bar per running stage and a line per skipped or finished one."""
    bars: dict[str, TaskID] = {}

    def show(event: StageEvent) -> None:
        if event.kind == "skip":
            progress.console.print(f"[dim]skip {event.stage}: {escape(event.message)}[/dim]")
        elif event.kind == "start":
            progress.console.print(f"[bold]{event.stage}[/bold]: {event.message}")
            bars[event.stage] = progress.add_task(event.stage, total=None, note="")
        elif event.kind == "step":
            progress.update(bars[event.stage], completed=event.step, total=event.total, note=event.message)
        else:
            progress.remove_task(bars.pop(event.stage))
            progress.console.print(f"[green]done[/green] {event.stage}: {escape(event.message)}")

    return show


@app.command("run")
def run_command(
    config: ConfigArg = None,
    overrides: OverridesArg = None,
    from_stage: Annotated[
        str | None, typer.Option("--from", help="Rerun this stage and every later one, even if unchanged.")
    ] = None,
    only: Annotated[
        str | None, typer.Option("--only", help="Run just this stage; the ones before it must have run.")
    ] = None,
) -> None:
    """The whole job in one run directory: trajectories -> SRL -> RLVR -> evaluation against the base model.

    Stages whose inputs did not change are skipped; an interrupted stage resumes from its checkpoint
    when you rerun the same command.
    """
    cfg = _load(config, overrides)
    quiet_libraries()
    from srl_rlvr.pipeline import run_pipeline
    from srl_rlvr.train.loop import TrainingInterrupted

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=err_console,
    )
    try:
        with progress:
            result = run_pipeline(cfg, from_stage, only, on_event=_show_stages(progress))
    except TrainingInterrupted as e:
        err_console.print(
            f"[yellow]interrupted; checkpoint saved at {escape(str(e.checkpoint))}. "
            "Rerun the same command to resume.[/yellow]"
        )
        raise SystemExit(143) from None
    evaluation = result.evaluation
    if evaluation is None:
        console.print(f"run directory: {result.run_dir} (no evaluation in this run)")
        return
    _print_evaluation(evaluation, cfg, title=f"held-out test split: {' -> '.join(evaluation.results)}")
    registered = result.run_dir / "register" / "registered.json"
    if "register" in cfg.pipeline.stages and registered.is_file():
        import json

        from srl_rlvr.tracking.runs import tracking_uri

        versions = json.loads(registered.read_text())["versions"]
        alias = f" ({cfg.registry.alias_on_register})" if cfg.registry.alias_on_register else ""
        shown = ", ".join(f"{v['reference']} ({v['stage']})" for v in versions)
        console.print(f"registered {shown}{alias} in {tracking_uri(cfg)}; browse runs with `srl-rlvr ui`")


def _print_evaluation(run: EvalRun, cfg: Config, title: str) -> None:
    """The comparison tables `eval` and `run` both end with, and where the report is."""
    from srl_rlvr.evaluate.report import comparison_table

    console.print(comparison_table(run.results, cfg.eval, title=title))
    if run.generalization:
        console.print(comparison_table(run.generalization, cfg.eval, title="never-seen problem family"))
    console.print(f"report: {run.report} and {run.report.with_name('report.json')}")


def quiet_libraries() -> None:
    """Our progress bar replaces the libraries' per-step bars and weight-loading chatter."""
    import warnings

    import datasets
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


cli_registry.add_commands(app)
cli_manage.add_commands(app)
cli_serve.add_commands(app)


DEBUG_ENV = "SRL_RLVR_DEBUG"


def main(argv: list[str] | None = None) -> None:
    """Entry point: a user error is one red line and exit code 2; anything else is one line that says
    it is our bug and how to get its traceback (`--debug` or SRL_RLVR_DEBUG=1), exit code 1."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    try:
        app(args=args)
    except UserError as e:
        if debug:
            raise
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        raise SystemExit(2) from None
    except Exception as e:  # the last line of defence: a bug of ours, not the user's input
        if debug:
            raise
        first = (str(e).strip().splitlines() or [""])[0]
        err_console.print(
            f"[red]internal error:[/red] {type(e).__name__}: {escape(first)} — a bug in srl-rlvr, not in "
            f"your input; rerun with --debug (or {DEBUG_ENV}=1) for the traceback and include it in your "
            "report",
            highlight=False,
            soft_wrap=True,
        )
        raise SystemExit(1) from None
