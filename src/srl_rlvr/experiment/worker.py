"""One (arm, seed) job in its own process: train through the pipeline, score the model it ends with
on the held-out problems, write `result.json`.

A process per job keeps arms apart (no model, RNG or CUDA state leaks from one arm into the next)
and lets one GPU serve each job. The runner starts these from a forkserver that imported this module
once, so a job does not pay for importing torch and transformers again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from srl_rlvr.config import Config, load_config
from srl_rlvr.evaluate.evaluation import evaluate_model
from srl_rlvr.experiment.arms import RESULT_FILE, Job
from srl_rlvr.modeling import load_model
from srl_rlvr.pipeline import read_state, run_pipeline
from srl_rlvr.pipeline.gate import best_model
from srl_rlvr.pipeline.runner import output_path
from srl_rlvr.pipeline.stages import TRAINING
from srl_rlvr.tasks import Problem, load_task


def final_model(config: Config) -> str:
    """The model the job's pipeline ends with: the last training stage's (its gate's choice when
    gated), or the base model when the arm trains nothing."""
    run_dir = Path(config.output_dir)
    records = read_state(run_dir)
    trained = [s for s in config.pipeline.stages if s in TRAINING and s in records]
    if not trained:
        return config.model.name_or_path
    return best_model(output_path(run_dir, records[trained[-1]]))


def run_job(job: Job, problems: list[Problem]) -> dict[str, Any]:
    """Train and score one job; the result is written last and atomically, so its presence means done."""
    if job.device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(job.device)  # before anything touches CUDA
    config = load_config(job.config_path, list(job.overrides))
    folder = Path(job.folder)
    started = time.monotonic()
    # The runner logs the job's MLflow run from its result; the pipeline's own runs (one a stage)
    # would flood the experiment's view, arms x seeds x stages of them. Its training curves stay in
    # the job's folder (`run/<stage>/metrics.jsonl`).
    untracked = config.registry.model_copy(update={"tracking": False})
    run_pipeline(config.model_copy(update={"registry": untracked}))
    train_seconds = time.monotonic() - started
    model_path = final_model(config)
    task = load_task(config.task.name, config.task.options)
    model, tokenizer = load_model(
        config.model.model_copy(update={"name_or_path": model_path, "lora": None}), seed=config.seed
    )
    started = time.monotonic()
    scored = evaluate_model(model, tokenizer, task, problems, config.eval, job.arm, source=model_path)
    eval_seconds = time.monotonic() - started
    result = {
        "arm": job.arm,
        "seed": job.seed,
        "fingerprint": job.fingerprint,
        "model": model_path,
        "metrics": scored.metrics,
        # a job holds one device (its GPU, or the CPU), so its device-seconds are its seconds
        "device_seconds": train_seconds + eval_seconds,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "problems": [r.id for r in scored.records],
        "completions": [r.completion for r in scored.records],
        "rewards": [r.reward for r in scored.records],
    }
    tmp = folder / f"{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(folder / RESULT_FILE)
    return result


def job_process(job: Job, problems: list[Problem]) -> None:
    """A worker process's entry point: a library error ends it with status 2 and one line on stderr."""
    import logging
    import sys

    from srl_rlvr.errors import UserError

    logging.basicConfig(level=logging.WARNING)
    try:
        run_job(job, problems)
    except UserError as e:
        print(f"{job.name}: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
