"""The evaluation job: load each model, score it on held-out problems (and a never-seen family when
configured), write the report. `srl-rlvr eval` is this function plus printing.

Models are loaded one at a time and freed before the next, so base, SRL and RLVR models need not
fit in memory together.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srl_rlvr.config import Config
from srl_rlvr.evaluate.evaluation import EvalResult, ProblemRecord, evaluate_model
from srl_rlvr.evaluate.report import write_report
from srl_rlvr.modeling import load_model
from srl_rlvr.progress import ProgressLines
from srl_rlvr.tasks import Problem, load_task
from srl_rlvr.tasks.base import Split
from srl_rlvr.tracking.runs import tracking_uri

log = logging.getLogger(__name__)

MODEL_FILES = ("config.json", "adapter_config.json")


@dataclass
class EvalRun:
    results: dict[str, EvalResult]
    generalization: dict[str, EvalResult]
    report: Path


def resolve_model(name: str, uri: str | None = None) -> tuple[str, Path | None]:
    """What to load for `name`, and the training stage folder whose metrics.jsonl to plot, if any.

    A stage folder (`runs/x/rlvr`) means the model it kept: `best/` when validation chose one (what
    RLVR returns), else `final/`. A `registry:` reference is its folder in the store at `uri`; 'tiny'
    and hub ids load as given.
    """
    if name.startswith("registry:"):
        from srl_rlvr.tracking.registry import resolve_source

        return resolve_source(name, uri), None
    folder = Path(name)
    for kept in ("best", "final"):
        if any((folder / kept / f).is_file() for f in MODEL_FILES):
            return str(folder / kept), folder if (folder / "metrics.jsonl").is_file() else None
    if folder.is_dir() and (folder.parent / "metrics.jsonl").is_file():  # runs/x/srl/final given
        return name, folder.parent
    return name, None


def model_label(name: str, taken: Sequence[str]) -> str:
    """A short name for tables: the stage folder's name (`srl`), else the last path part; unique."""
    _, stage = resolve_model(name)
    label = stage.name if stage is not None else Path(name.rstrip("/")).name or name
    candidate, i = label, 2
    while candidate in taken:
        candidate, i = f"{label}-{i}", i + 1
    return candidate


def run_dir_of(model: str) -> Path | None:
    """The pipeline run a model folder belongs to (runs/x for runs/x/rlvr/final or runs/x/rlvr): the
    nearest folder above it holding the run's pipeline.json and config.yaml."""
    path = Path(model).absolute()
    for folder in [path, *path.parents][:4]:
        if (folder / "pipeline.json").is_file() and (folder / "config.yaml").is_file():
            return folder
    return None


def default_out_dir(model: str) -> Path:
    """`<run>/eval-<model folder>` for a model of a pipeline run (not inside the model, whose folder
    is what gets registered and served), `<model>-eval` for another folder, else `runs/eval`."""
    run = run_dir_of(model)
    path = Path(model).absolute()
    if run is not None:
        return run / ("eval-" + "-".join(path.relative_to(run).parts))
    return path.parent / f"{path.name}-eval" if path.is_dir() else Path("runs/eval")


def run_evaluation(
    config: Config,
    models: Sequence[str],
    baseline: str | None = None,
    task_name: str | None = None,
    n: int | None = None,
    split: Split = "test",
    out_dir: str | Path | None = None,
    on_model: Callable[[str, str], None] | None = None,
    on_batch: Callable[[str, int, int], None] | None = None,
    gates: Sequence[Mapping[str, Any]] = (),
    problems: Sequence[Problem] | None = None,
) -> EvalRun:
    """Evaluate `baseline` (first, when given) then `models` in order on the same `n` problems.

    Task options come from the config when `task_name` is the config's task (or unset).
    `on_model(label, path)` is called before each model loads and `on_batch(what, done, total)` after
    each batch of problems, for progress output. `problems` (a versioned test set) replaces the
    task's own `n` problems of `split`.
    """
    task_name = task_name or config.task.name
    options = config.task.options if task_name == config.task.name else {}
    task = load_task(task_name, options)
    n = n or config.data.test_size
    problems = list(problems) if problems is not None else task.sample(n, config.data.seed, split)
    family = config.eval.generalization_options
    unseen_task = load_task(task_name, {**options, **family}) if family else None
    unseen = unseen_task.sample(n, config.data.seed, split) if unseen_task else []

    results: dict[str, EvalResult] = {}
    generalization: dict[str, EvalResult] = {}
    stage_dirs: dict[str, Path] = {}
    for name in [*([baseline] if baseline else []), *models]:
        path, stage = resolve_model(name, tracking_uri(config))
        label = model_label(name, list(results))
        if on_model is not None:
            on_model(label, path)
        model_config = config.model.model_copy(update={"name_or_path": path, "lora": None})
        model, tokenizer = load_model(model_config, seed=config.seed)

        def progress(what: str, count: int) -> Callable[[int, int], None]:
            """A progress line every twentieth of the problems (for logs), and `on_batch`."""
            lines = ProgressLines(f"evaluate {what}", count, "problems")

            def batch_done(done: int, total: int) -> None:
                lines.update(done)
                if on_batch is not None:
                    on_batch(what, done, total)

            return batch_done

        results[label] = evaluate_model(
            model,
            tokenizer,
            task,
            problems,
            config.eval,
            label,
            source=path,
            on_batch=progress(label, len(problems)),
        )
        if unseen_task is not None:
            generalization[label] = evaluate_model(
                model,
                tokenizer,
                unseen_task,
                unseen,
                config.eval,
                label,
                source=path,
                on_batch=progress(f"{label}, unseen family", len(unseen)),
            )
        if stage is not None:
            stage_dirs[label] = stage
        del model
        gc.collect()

    out = Path(out_dir) if out_dir else default_out_dir(models[-1])
    report = write_report(out, results, stage_dirs, generalization or None, config.eval, gates)
    return EvalRun(results, generalization, report)


def load_evaluation(report_dir: str | Path) -> EvalRun:
    """The evaluation a previous run wrote to report.json, so a skipped evaluate still has its table."""
    report_dir = Path(report_dir)
    data = json.loads((report_dir / "report.json").read_text())

    def results(summaries: dict[str, Any], records: dict[str, list[dict[str, Any]]]) -> dict[str, EvalResult]:
        return {
            label: EvalResult(
                **{k: v for k, v in summary.items() if k != "n"},
                records=[ProblemRecord(**r) for r in records[label]],
            )
            for label, summary in summaries.items()
        }

    unseen = data["generalization"]
    return EvalRun(
        results(data["results"], data["records"]),
        results(unseen["results"], data["generalization_records"]) if unseen else {},
        report_dir / "report.md",
    )


def run_tracked_evaluation(
    config: Config,
    models: Sequence[str],
    out_dir: str | Path,
    baseline: str | None = None,
    **options: Any,
) -> EvalRun:
    """`run_evaluation` (`options` are its own) as an MLflow run recorded in `out_dir`, as the
    pipeline's evaluate stage is: every model's metrics and latency, and the report's files."""
    from srl_rlvr.tracking.runs import STAGE_FILES, log_evaluation, tracked_run

    evaluated = ", ".join([*([baseline] if baseline else []), *models])
    with tracked_run(config, "evaluate", out_dir, {"srl_rlvr.models": evaluated}) as tracking:
        run = run_evaluation(config, models, baseline=baseline, out_dir=out_dir, **options)
        if tracking:
            log_evaluation(tracking, run.results)
            tracking.log_files(run.report.parent, STAGE_FILES["evaluate"])
    return run
