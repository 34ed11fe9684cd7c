"""`srl-rlvr run`: the stages of `stages.py` over one run directory, skipping what has not changed.

Each stage's *fingerprint* hashes the config it reads and the ids of its upstream outputs (the
dataset's content hash; for a trained model, an id new each time its stage runs).
`<output_dir>/pipeline.json` records per stage {fingerprint, status, output, output_id, seconds,
finished}; outputs are stored relative to the run directory, so the folder can be moved. On a rerun:

- fingerprint unchanged and status done: the stage is skipped;
- fingerprint unchanged and status running (killed, SIGTERM, crash): a training stage resumes from
  its last checkpoint, any other stage reruns;
- fingerprint changed (or no record): the stage's folder is cleared and it runs from scratch, which
  gives its output a new id, so every stage downstream reruns too.

Under several processes (`accelerate launch`, `--gpus N`) every rank walks the same stages and
reaches the same decisions from the same files; training stages run on all of them, every other
stage on the main process while the rest wait, and only the main process writes pipeline.json, the
run's files and its MLflow runs (`distributed.py`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from srl_rlvr.config import Config, dump_config
from srl_rlvr.distributed import barrier, is_main
from srl_rlvr.errors import ConfigError, DataError
from srl_rlvr.evaluate.run import EvalRun, load_evaluation
from srl_rlvr.pipeline.gate import gate_line, read_gate
from srl_rlvr.pipeline.stages import (
    TRAINING,
    Emit,
    StageEvent,
    run_stage,
    stage_dir,
    upstream_stages,
)
from srl_rlvr.tracking.runs import close_abandoned_run, tracked_run
from srl_rlvr.train.callbacks import last_checkpoint

log = logging.getLogger(__name__)

STATE_FILE = "pipeline.json"
Record = dict[str, Any]


@dataclass
class PipelineResult:
    """`records` is pipeline.json's content; `evaluation` is None when evaluate neither ran nor was skipped."""

    run_dir: Path
    records: dict[str, Record]
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    evaluation: EvalRun | None = None


def _sections(config: Config, stage: str) -> dict[str, Any]:
    """The config a stage reads: changing anything here reruns it (and so everything after it)."""
    c = config.model_dump(mode="json")
    data = c["data"]
    by_stage = {
        "generate": {
            "data": {k: data[k] for k in ("trajectories", "train_size", "seed")},
            # how requests are sent (concurrency, retries, cache) does not change what is generated
            "collaboration": {k: v for k, v in c["collaboration"].items() if k != "requests"},
        },
        "sft": {"model": c["model"], "sft": c["sft"]},
        "srl": {"model": c["model"], "srl": c["srl"]},
        # RLVR samples its train and val problems from the task itself
        "rlvr": {
            "model": c["model"],
            "rlvr": c["rlvr"],
            "data": [data["train_size"], data["val_size"], data["seed"]],
        },
        "evaluate": {"model": c["model"], "eval": c["eval"], "data": [data["test_size"], data["seed"]]},
        "register": {"model": c["model"], "registry": c["registry"]},
    }
    return {"seed": c["seed"], "task": c["task"], **by_stage[stage]}


def fingerprint(config: Config, stage: str, inputs: dict[str, str]) -> str:
    """sha256 of the stage's config sections and the ids of its upstream outputs."""
    payload = {"stage": stage, "config": _sections(config, stage), "inputs": inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def read_state(run_dir: str | Path) -> dict[str, Record]:
    """pipeline.json's per-stage records ({} before the first run)."""
    path = Path(run_dir) / STATE_FILE
    return json.loads(path.read_text())["stages"] if path.is_file() else {}


def write_state(run_dir: Path, records: dict[str, Record]) -> None:
    tmp = run_dir / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps({"stages": records}, indent=2) + "\n")
    tmp.replace(run_dir / STATE_FILE)  # atomic: a kill mid-write cannot leave half a file


def output_path(run_dir: Path, record: Record) -> Path:
    return run_dir / (record.get("output") or "missing")


def is_done(run_dir: Path, record: Record) -> bool:
    return record.get("status") == "done" and output_path(run_dir, record).exists()


def output_signature(path: Path) -> str:
    """Names, sizes and modification times of a stage's output files: cheap to take, and different
    when something rewrote the output after the stage (a `train srl` into the run's own srl/final)."""
    files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
    listing = [
        f"{p.relative_to(path) if p != path else p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in files
    ]
    return hashlib.sha256("\n".join(listing).encode()).hexdigest()


def output_changed(run_dir: Path, record: Record) -> bool:
    recorded = record.get("signature")  # runs from before signatures were kept count as unchanged
    return recorded is not None and recorded != output_signature(output_path(run_dir, record))


def _inputs(config: Config, stage: str, records: dict[str, Record]) -> dict[str, str]:
    inputs = {u: records[u]["output_id"] for u in upstream_stages(stage, config.pipeline.stages)}
    if stage == "generate" and config.data.trajectories is not None:
        from srl_rlvr.data.versioning import load_dataset

        inputs["trajectories"] = load_dataset(config.data.trajectories)[1]["hash"]  # content, not path
    return inputs


def _check_upstream(config: Config, stage: str, records: dict[str, Record]) -> None:
    for upstream in upstream_stages(stage, config.pipeline.stages):
        if not is_done(Path(config.output_dir), records.get(upstream, {})):
            raise DataError(
                f"--only {stage} needs the {upstream} stage's output, which {config.output_dir} does not "
                f"have; run `--only {upstream}` (or the whole pipeline) first"
            )


def _reload(run_dir: Path, records: dict[str, Record]) -> None:
    """Another process's view of pipeline.json after the main process wrote it."""
    barrier()
    if not is_main():
        records.clear()
        records.update(read_state(run_dir))


def _execute(
    config: Config,
    stage: str,
    current: str,
    resume: bool,
    records: dict[str, Record],
    emit: Emit,
    callbacks: Sequence[TrainerCallback],
    parent_run_id: str | None = None,
) -> EvalRun | None:
    """Run `stage`, keeping its record in pipeline.json: running while it runs (so a killed run can
    tell it resumes), done with its output afterwards. With several processes a stage that does not
    train runs on the main process alone."""
    run_dir = Path(config.output_dir)
    seconds = records.get(stage, {}).get("seconds", 0.0) if resume else 0.0
    if is_main():
        records[stage] = {"fingerprint": current, "status": "running", "output": None, "seconds": seconds}
        write_state(run_dir, records)
    if stage in TRAINING:
        barrier()  # every rank trains, once the main process has cleared the folder and written the record
    elif not is_main():
        _reload(run_dir, records)  # wait while the main process runs it
        return None
    upstream = {u: output_path(run_dir, records[u]) for u in upstream_stages(stage, config.pipeline.stages)}
    started = time.monotonic()
    try:
        output = run_stage(config, stage, upstream, resume, emit, callbacks, parent_run_id)
    finally:
        if is_main():
            records[stage]["seconds"] = round(seconds + time.monotonic() - started, 2)
            write_state(run_dir, records)
    if not is_main():
        _reload(run_dir, records)
        return None
    finished = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    path = output.path
    records[stage].update(
        status="done",
        output=str(path.relative_to(run_dir) if path.is_relative_to(run_dir) else path.absolute()),
        output_id=output.content_hash or hashlib.sha256(f"{current}:{finished}".encode()).hexdigest(),
        finished=finished,
        signature=output_signature(path),
    )
    write_state(run_dir, records)
    gate = read_gate(stage_dir(config, stage)) if stage in TRAINING else None
    kept = f"\n  {gate_line(gate)}" if gate is not None else ""
    emit(StageEvent("finish", stage, message=f"{records[stage]['seconds']:.1f}s; output {path}{kept}"))
    log.info("%s done in %.1fs: %s", stage, records[stage]["seconds"], path)
    _reload(run_dir, records)  # the others may go on
    return output.evaluation


def run_pipeline(
    config: Config,
    from_stage: str | None = None,
    only: str | None = None,
    on_event: Emit | None = None,
    extra_callbacks: Sequence[TrainerCallback] = (),
) -> PipelineResult:
    """Run `config.pipeline.stages` in `config.output_dir`, skipping and resuming as the module says.

    `from_stage` reruns that stage and all after it even when unchanged; `only` runs just that one
    (its upstream outputs must exist). Either still resumes a stage interrupted with the same
    inputs. A SIGTERM during training raises `TrainingInterrupted` once the checkpoint is saved:
    calling again with the same arguments resumes. `extra_callbacks` go to every training stage.
    """
    if config.model.type != "causal_lm":
        raise ConfigError(
            f"model.type {config.model.type} runs the encoder pipeline (pipeline/encoders.py), not this one"
        )
    stages = list(config.pipeline.stages)
    if from_stage is not None and only is not None:
        raise ConfigError("give --from or --only, not both")
    for flag, name in (("--from", from_stage), ("--only", only)):
        if name is not None and name not in stages:
            raise ConfigError(f"{flag} {name}: not one of pipeline.stages ({', '.join(stages)})")
    run_dir = Path(config.output_dir)
    records = read_state(run_dir)
    if only is not None:
        _check_upstream(config, only, records)
    from srl_rlvr.tasks import load_task

    load_task(config.task.name, config.task.options)  # a task that cannot load fails before any folder exists
    if is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(config))
    config = resolve_registry_model(config)
    forced = set(stages[stages.index(from_stage) :]) if from_stage else {only} if only else set()
    emit = (on_event or (lambda event: None)) if is_main() else (lambda event: None)
    result = PipelineResult(run_dir, records)

    with tracked_run(config, "pipeline", run_dir) if is_main() else nullcontext() as pipeline_run:
        parent_run_id = pipeline_run.run_id if pipeline_run else None
        todo = [only] if only else stages
        while todo:
            stage = todo.pop(0)
            if stage in TRAINING and config.pipeline.pilot and not only:
                config = _piloted(config, records, emit)
                todo = [s for s in config.pipeline.stages if s in todo or s == stage]
                stage = todo.pop(0)
            _run_or_skip(config, stage, forced, records, emit, extra_callbacks, result, parent_run_id)
    return result


def _piloted(config: Config, records: dict[str, Record], emit: Emit) -> Config:
    """The config with the training stages the pilot chose (pilot.py), the pilot off. Every rank
    runs the candidates, as every rank trains."""
    from srl_rlvr.pipeline.pilot import choose_recipe, with_recipe

    generated = records.get("generate")
    trajectories = output_path(Path(config.output_dir), generated).absolute() if generated else None
    choice = choose_recipe(config, trajectories, emit)
    emit(StageEvent("finish", "pilot", message=choice.reason))
    chosen = with_recipe(config, choice.stages)
    return chosen.model_copy(update={"pipeline": chosen.pipeline.model_copy(update={"pilot": False})})


def resolve_registry_model(config: Config) -> Config:
    """A `registry:` base model as its folder, looked up once in the run's own store
    (`registry.tracking_uri`, or MLFLOW_TRACKING_URI when set), so every stage loads that folder and
    its fingerprint changes when the alias moves; the reference stays the registered lineage parent."""
    reference = config.model.name_or_path
    if not reference.startswith("registry:"):
        return config
    from srl_rlvr.tracking.registry import resolve_source
    from srl_rlvr.tracking.runs import tracking_uri

    folder = resolve_source(reference, uri=tracking_uri(config))
    model = config.model.model_copy(update={"name_or_path": folder, "resolved_from": reference})
    return config.model_copy(update={"model": model})


def _run_or_skip(
    config: Config,
    stage: str,
    forced: set[str],
    records: dict[str, Record],
    emit: Emit,
    extra_callbacks: Sequence[TrainerCallback],
    result: PipelineResult,
    parent_run_id: str | None,
) -> None:
    run_dir = Path(config.output_dir)
    current = fingerprint(config, stage, _inputs(config, stage, records))
    record = records.get(stage, {})
    same = record.get("fingerprint") == current
    changed = is_done(run_dir, record) and output_changed(run_dir, record)
    if same and is_done(run_dir, record) and stage not in forced and not changed:
        emit(StageEvent("skip", stage, message=f"inputs unchanged; output {output_path(run_dir, record)}"))
        result.skipped.append(stage)
        if stage == "evaluate":
            result.evaluation = load_evaluation(stage_dir(config, stage))
        return
    resume = same and record.get("status") == "running" and stage in (*TRAINING, "generate")
    if resume:
        checkpoint = last_checkpoint(stage_dir(config, stage)) if stage != "generate" else None
        if stage == "generate":
            why = "continuing the rows already decided"
        elif checkpoint is None:
            why = "resuming: no checkpoint was written yet, so the stage starts over"
        else:
            why = f"resuming from step {Path(checkpoint).name.removeprefix('checkpoint-')} ({checkpoint})"
    else:
        if stage in forced:
            why = "forced"
        elif same and changed:
            why = f"its output ({output_path(run_dir, record)}) changed after it ran"
        elif same and record.get("status") == "running":
            why = "rerunning: its last run stopped before it finished"
        else:
            why = "inputs changed" if record else "first run"
        fresh = not (stage == "generate" and config.data.trajectories)
        if is_main() and stage_dir(config, stage).exists() and fresh:
            close_abandoned_run(config, stage_dir(config, stage))
            shutil.rmtree(stage_dir(config, stage))
    emit(StageEvent("start", stage, message=why))
    evaluation = _execute(config, stage, current, resume, records, emit, extra_callbacks, parent_run_id)
    result.ran.append(stage)
    result.evaluation = evaluation or result.evaluation
