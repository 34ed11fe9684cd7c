"""`srl-rlvr experiment`: run every (arm, seed) job not yet finished, each in its own process, then
compare the arms with the baseline and write the report.

Jobs run from a forkserver that imported the worker (torch, transformers, the pipeline) once: every
job is a fresh process, without paying for those imports again. With GPUs, one job runs per GPU at
a time (`CUDA_VISIBLE_DEVICES` names its card); without, one job at a time. A rerun skips every job
whose result was written for the config it would run now, so an interrupted experiment resumes and
an unchanged one only rewrites its report.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srl_rlvr.config import Config, load_config
from srl_rlvr.errors import UserError
from srl_rlvr.experiment.arms import RESULT_FILE, Arm, Job, check_arms, finished, plan_jobs
from srl_rlvr.experiment.decision import ArmComparison, compare_arm
from srl_rlvr.tasks import Problem, load_task
from srl_rlvr.tracking.runs import tracked_run

if TYPE_CHECKING:
    from srl_rlvr.experiment.search import OptunaSearch

log = logging.getLogger(__name__)

# What the forkserver imports once for every job (the worker and the trainers it may call).
PRELOAD = [
    "srl_rlvr.experiment.worker",
    "srl_rlvr.train.rlvr",
    "srl_rlvr.train.srl",
    "srl_rlvr.train.sft",
]


class ExperimentError(UserError):
    """A job of the experiment failed; its folder holds what it wrote."""


@dataclass
class ExperimentResult:
    out: Path
    baseline: str
    primary: str
    comparisons: list[ArmComparison]
    results: dict[str, list[dict[str, Any]]]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report: Path | None = None
    plot: Path | None = None
    search: list[dict[str, Any]] = field(default_factory=list)  # each trial: number, arm, value, overrides


def held_out_problems(config: Config) -> list[Problem]:
    """The base config's test problems: every job of every arm is scored on these."""
    task = load_task(config.task.name, config.task.options)
    return task.sample(config.data.test_size, config.data.seed, "test")


def primary_metric(config: Config, metrics: list[str], chosen: str | None) -> str:
    """--metric, else the stage gate's metric, else the task's first metric."""
    metric = chosen or config.pipeline.gate_metric or next((m for m in metrics if m != "reward"), "reward")
    if metric not in metrics:
        raise UserError(f"--metric {metric}: the task reports {', '.join(metrics)}")
    return metric


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _run_jobs(
    jobs: list[Job], problems: list[Problem], workers: int, gpus: int, on_job: Callable[[str, str], None]
) -> list[str]:
    """Run `jobs`, at most `workers` at once; the names of those that failed."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    from srl_rlvr.experiment.worker import job_process

    pending, running, failed = list(jobs), {}, []
    free = list(range(gpus)) if gpus else [None] * workers
    while pending or running:
        while pending and free:
            device = free.pop(0)
            job = pending.pop(0)
            job = Job(**{**job.__dict__, "device": device})
            process = context.Process(target=job_process, args=(job, problems), name=job.name)
            process.start()
            running[process.sentinel] = (process, job)
            on_job("start", job.name)
        for sentinel in wait(list(running)):
            process, job = running.pop(sentinel)
            process.join()
            free.append(job.device)
            if process.exitcode != 0:
                failed.append(job.name)
                on_job("failed", f"{job.name} (exit code {process.exitcode})")
            else:
                on_job("done", job.name)
    return failed


def _log_job(job: Job, scores: dict[str, Any], parent_run_id: str) -> None:
    """The job's MLflow run, a child of the experiment's, logged here rather than in the job's
    process: one writer to the store, however many jobs run at once."""
    config = load_config(job.config_path, list(job.overrides))
    tags = {"srl_rlvr.arm": job.arm, "srl_rlvr.seed": job.seed, "srl_rlvr.model": scores["model"]}
    with tracked_run(config, job.name, job.folder, tags, parent_run_id=parent_run_id) as run:
        if run:
            run.log_metrics({**scores["metrics"], "device_seconds": scores["device_seconds"]})


def run_experiment(
    config_path: str | None,
    base_overrides: list[str],
    arms: list[Arm],
    seeds: list[int],
    out: str | Path,
    baseline: str | None = None,
    metric: str | None = None,
    cost_margin: float = 0.2,
    workers: int | None = None,
    on_job: Callable[[str, str], None] = lambda kind, name: None,
    search: OptunaSearch | None = None,
) -> ExperimentResult:
    """Run the experiment in `out`; the first arm is the baseline unless `baseline` names another.
    With `search`, its trials are more arms, asked for one at a time once the given arms are done."""
    from srl_rlvr.experiment.report import write_report

    arms = list(arms)
    check_arms(arms, at_least=1 if search is not None else 2)
    names = [a.name for a in arms]
    baseline = baseline or names[0]
    if baseline not in names:
        raise UserError(f"--baseline {baseline}: not one of the arms ({', '.join(names)})")
    out = Path(out)
    base = load_config(config_path, base_overrides)
    if search is not None:  # a range over a key the config lacks fails here, before any job runs
        load_config(config_path, [*base_overrides, *search.examples])
    problems = held_out_problems(base)
    result = ExperimentResult(out, baseline, "", [], {})
    out.mkdir(parents=True, exist_ok=True)
    gpus = gpu_count()
    count = workers or max(gpus, 1)

    def run_arms(new: list[Arm], parent_run_id: str | None) -> None:
        """Run the arms' jobs not yet finished and read every job's result."""
        jobs = plan_jobs(config_path, base_overrides, new, seeds, out)
        todo = [j for j in jobs if not finished(j)]
        result.skipped += [j.name for j in jobs if j not in todo]
        if todo:
            failed = _run_jobs(todo, problems, count, min(gpus, count), on_job)
            result.ran += [j.name for j in todo if j.name not in failed]
            if failed:
                raise ExperimentError(
                    f"{len(failed)} job(s) failed: {', '.join(failed)}; their folders are under "
                    f"{out / 'jobs'}; rerun the same command to retry them (finished ones are kept)"
                )
        for job in jobs:
            result.results.setdefault(job.arm, []).append(
                json.loads((Path(job.folder) / RESULT_FILE).read_text())
            )
            if parent_run_id and job.name in result.ran:
                _log_job(job, result.results[job.arm][-1], parent_run_id)

    with tracked_run(base, "experiment", out, {"srl_rlvr.arms": ", ".join(names)}) as parent:
        run_arms(arms, parent.run_id if parent else None)
        metrics = list(result.results[baseline][0]["metrics"])
        result.primary = primary_metric(base, metrics, metric)
        while search is not None and (arm := search.next_arm(result.results, result.primary)) is not None:
            if arm.name not in names:  # a point tried before is the same arm
                arms.append(arm)
                names.append(arm.name)
                run_arms([arm], parent.run_id if parent else None)
        result.search = search.rows if search is not None else []
        if len(names) < 2:
            raise UserError("nothing to compare: the search finished no trial (--trials 0?)")
        task = load_task(base.task.name, base.task.options)
        scored = [m for m in metrics if "@" not in m]  # sampled avg@k/pass@k need the samples, not kept
        result.comparisons = [
            compare_arm(
                task,
                problems,
                result.results[name],
                result.results[baseline],
                scored,
                result.primary,
                cost_margin,
                samples=base.eval.bootstrap_samples,
                seed=base.eval.bootstrap_seed,
                confidence=base.eval.confidence,
            )
            for name in names
            if name != baseline
        ]
        result.report, result.plot = write_report(result, base.eval.confidence)
        if parent:
            if search is not None:
                parent.set_tags({"srl_rlvr.arms": ", ".join(names)})
            for c in result.comparisons:
                d = c.delta(result.primary)
                parent.log_metrics(
                    {f"{c.arm}.delta": d.delta, f"{c.arm}.low": d.low, f"{c.arm}.high": d.high}
                )
                parent.set_tags({f"srl_rlvr.decision.{c.arm}": c.decision})
            parent.log_files(out, ("experiment.md", "experiment.json", "experiment.png"))
    return result
