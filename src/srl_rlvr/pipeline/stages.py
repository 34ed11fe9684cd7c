"""What each stage of `srl-rlvr run` does, given the outputs of the stages before it.

The order is generate -> sft (optional) -> srl -> rlvr -> evaluate -> register. Evaluate also
writes the report (report.md, report.json, plots), so there is no separate report stage; register
puts each trained model in the MLflow registry with its evaluation and lineage. `runner.py`
decides which stages run; this module only runs one, as an MLflow run (`run_stage`). `train`
(`single_stage.py`), `distill` and `retrain` train through `run_stage` too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from srl_rlvr.config import Config
from srl_rlvr.evaluate.evaluation import EvalResult
from srl_rlvr.evaluate.run import EvalRun, load_evaluation
from srl_rlvr.tracking.runs import run_tracked

TRAINING = ("sft", "srl", "rlvr")


@dataclass
class StageEvent:
    """What the pipeline tells its caller: a stage started, was skipped, stepped or finished."""

    kind: Literal["start", "skip", "step", "finish"]
    stage: str
    step: int = 0
    total: int | None = None
    message: str = ""


@dataclass
class StageOutput:
    """`content_hash` names the output by content where that is cheap (the dataset), else None."""

    path: Path
    content_hash: str | None = None
    evaluation: EvalRun | None = None


Emit = Callable[[StageEvent], None]


def stage_dir(config: Config, stage: str) -> Path:
    """Where a stage writes inside the run directory."""
    return Path(config.output_dir) / {"generate": "data", "evaluate": "report"}.get(stage, stage)


def stage_data(config: Config, stage: str, upstream: Mapping[str, Path]) -> str:
    """What a training stage learned from, for lineage: the dataset's content hash, or for RLVR
    (which samples its own problems) the task and sample."""
    from srl_rlvr.data.versioning import load_dataset

    if stage in ("sft", "srl") and "generate" in upstream:
        return "dataset:" + load_dataset(upstream["generate"])[1]["hash"]
    options = json.dumps(config.task.options, sort_keys=True) if config.task.options else ""
    return f"task:{config.task.name}{options} train_size={config.data.train_size} seed={config.data.seed}"


def upstream_stages(stage: str, stages: Sequence[str]) -> list[str]:
    """The stages whose outputs `stage` reads, among those configured."""
    wanted = {
        "generate": [],
        "sft": ["generate"],
        "srl": ["generate", "sft"],  # SRL starts from the SFT model when SFT is listed
        "rlvr": [s for s in ("srl", "sft") if s in stages][:1],  # the last training stage before it
        "evaluate": list(TRAINING),
        "register": ["generate", *TRAINING, "evaluate"],
    }[stage]
    return [s for s in wanted if s in stages]


class StepEvents(TrainerCallback):
    """Turns a trainer's step count and logged metrics into step events, for a progress display."""

    SHOWN = ("reward", "kl", "loss")

    def __init__(self, stage: str, emit: Emit) -> None:
        self.stage, self.emit = stage, emit

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.emit(StageEvent("step", self.stage, state.global_step, state.max_steps))

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.emit(StageEvent("step", self.stage, state.global_step, state.max_steps))

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        stats = "  ".join(f"{k} {logs[k]:.3g}" for k in self.SHOWN if k in (logs or {}))
        if stats:
            self.emit(StageEvent("step", self.stage, state.global_step, state.max_steps, stats))


def _generate(config: Config, emit: Emit) -> StageOutput:
    """The configured trajectory file when there is one, else the teacher team's verified trajectories."""
    from srl_rlvr.data.versioning import load_dataset

    if config.data.trajectories is not None:
        path = Path(config.data.trajectories)
        return StageOutput(path, load_dataset(path)[1]["hash"])
    from srl_rlvr.generate.orchestrator import Progress, generate_dataset

    def on_progress(p: Progress) -> None:
        emit(StageEvent("step", "generate", p.accepted, p.target, f"{p.rejected} rejected"))

    out = stage_dir(config, "generate")
    return StageOutput(out, generate_dataset(config, out, on_progress=on_progress)["hash"])


def start_model(config: Config, upstream: Mapping[str, Path]) -> str:
    """The model a training stage starts from: the best so far (the previous training stage's, when
    its gate kept it), else the base model."""
    from srl_rlvr.pipeline.gate import best_model

    before = next((s for s in TRAINING if s in upstream), None)
    return best_model(upstream[before]) if before else config.model.name_or_path


def _train(
    config: Config,
    stage: str,
    upstream: Mapping[str, Path],
    resume: bool,
    callbacks: Sequence[TrainerCallback],
    out: Path,
    start: str | None,
    gate: bool,
) -> StageOutput:
    """Train from `start` (default `start_model`) into `out`, then gate the result (`gate.py`) when
    `gate` is on."""
    from srl_rlvr.data.versioning import load_dataset
    from srl_rlvr.distributed import on_main
    from srl_rlvr.pipeline.gate import gate_stage, read_gate
    from srl_rlvr.tasks import load_task

    task = load_task(config.task.name, config.task.options)
    before = next((s for s in TRAINING if s in upstream), None)
    start = start or start_model(config, upstream)
    if stage == "rlvr":
        from srl_rlvr.train.rlvr import train_rlvr

        seen = load_dataset(upstream["generate"])[0] if "generate" in upstream else []
        problems = fresh_problems(task, config, {str(t.metadata.get("id", t.problem)) for t in seen})
        trained = train_rlvr(config, problems, out, task, model=start, resume=resume, callbacks=callbacks)
    else:
        from srl_rlvr.train.sft import train_sft
        from srl_rlvr.train.srl import train_srl

        trajectories, _ = load_dataset(upstream["generate"])
        on_start = config.model_copy(
            update={"model": config.model.model_copy(update={"name_or_path": start})}
        )
        train = train_srl if stage == "srl" else train_sft
        trained = train(on_start, trajectories, out, task, resume=resume, callbacks=callbacks)
    if gate:
        previous = read_gate(upstream[before].parent) if before else None
        on_main(lambda: gate_stage(config, stage, str(trained), start, task, out, previous))
    return StageOutput(trained)


def fresh_problems(task: Any, config: Config, seen: set[str]) -> list[Any]:
    """RLVR's problems: `data.train_size` of the train split that the trajectories (which SFT and SRL
    trained on) do not hold, where the task can sample that many; else all of them, seen or not
    (a data-file task's train split may hold no more)."""
    pool = task.sample(config.data.train_size + len(seen), config.data.seed, "train")
    unseen = [p for p in pool if p.id not in seen][: config.data.train_size]
    return unseen if len(unseen) == config.data.train_size else pool[: config.data.train_size]


def _evaluate(config: Config, emit: Emit) -> StageOutput:
    """The base model, then every training stage of this run, on the same held-out problems."""
    from srl_rlvr.evaluate.run import run_evaluation
    from srl_rlvr.pipeline.gate import read_gate

    base = config.model.name_or_path
    trained = [str(stage_dir(config, s)) for s in upstream_stages("evaluate", config.pipeline.stages)]
    models = len(trained) + 1  # the base model, then each trained one
    passes = models * (2 if config.eval.generalization_options else 1)
    answered: dict[str, int] = {}  # problems done per pass (a model, or a model on the unseen family)

    def on_batch(what: str, done: int, total: int) -> None:
        answered[what] = done
        emit(StageEvent("step", "evaluate", sum(answered.values()), total * passes, what))

    gates = [
        g
        for s in upstream_stages("evaluate", config.pipeline.stages)
        if (g := read_gate(stage_dir(config, s)))
    ]
    out = stage_dir(config, "evaluate")
    evaluation = run_evaluation(
        config,
        trained or [base],
        baseline=base if trained else None,
        out_dir=out,
        on_batch=on_batch,
        gates=[{k: v for k, v in vars(g).items() if k != "best_completions"} for g in gates],
    )
    return StageOutput(evaluation.report, evaluation=evaluation)


def _result_of(evaluation: EvalRun, folder: Path, stage: str) -> EvalResult | None:
    """The evaluation of the model in a stage folder, found by its path: its label may not be the
    stage's name (a base model that is itself an earlier run's `srl` folder takes that label)."""
    for result in evaluation.results.values():
        if folder.resolve() in (Path(result.model).resolve(), Path(result.model).resolve().parent):
            return result
    return evaluation.results.get(stage)


def _register(config: Config, upstream: Mapping[str, Path]) -> StageOutput:
    """Each trained model of this run, in order, as a registry version whose parent is the one before
    (the first's is the base model), with its evaluation; the last gets `registry.alias_on_register`."""
    from srl_rlvr.pipeline.gate import read_gate
    from srl_rlvr.tasks import load_task
    from srl_rlvr.tracking.registry import model_name_for, promote, register
    from srl_rlvr.tracking.runs import recorded_run_id, tracking_uri

    name = config.registry.model_name or model_name_for(load_task(config.task.name, config.task.options).name)
    uri = tracking_uri(config)
    evaluation = load_evaluation(upstream["evaluate"].parent)
    parent = config.model.resolved_from or config.model.name_or_path
    registered = []
    gates = {s: read_gate(stage_dir(config, s)) for s in TRAINING if s in upstream}
    kept = [s for s, gate in gates.items() if gate is None or gate.kept]  # a model no gate kept is no product
    for stage in kept:
        result = _result_of(evaluation, stage_dir(config, stage), stage)
        metrics = dict(result.metrics) if result else {}
        if result and result.latency_ms:
            metrics["latency_p50_ms"] = result.latency_ms["p50"]
        version = register(
            name,
            upstream[stage],
            stage=stage,
            parent=parent,
            dataset=stage_data(config, stage, upstream),
            metrics=metrics,
            run_id=recorded_run_id(stage_dir(config, stage)),
            experiment=config.registry.experiment or config.task.name,
            uri=uri,
        )
        registered.append({"stage": stage, "reference": version.reference, "parent": version.parent})
        parent = version.reference
    if registered and config.registry.alias_on_register:
        last = registered[-1]["reference"].rsplit("/", 1)
        promote(name, int(last[1]), to=config.registry.alias_on_register, force=True, uri=uri)
    out = stage_dir(config, "register")
    out.mkdir(parents=True, exist_ok=True)
    (out / "registered.json").write_text(json.dumps({"model": name, "versions": registered}, indent=2) + "\n")
    return StageOutput(out / "registered.json")


def run_stage(
    config: Config,
    stage: str,
    upstream: Mapping[str, Path],
    resume: bool = False,
    emit: Emit = lambda event: None,
    callbacks: Sequence[TrainerCallback] = (),
    parent_run_id: str | None = None,
    *,
    out: Path | None = None,
    start: str | None = None,
    gate: bool | None = None,
) -> StageOutput:
    """The one way a stage runs, in `srl-rlvr run`, `train`, `distill` and `retrain` alike: as an
    MLflow run recorded in the stage's folder, so every trained model has a run (its id goes on the
    model's registry version) holding its config, step metrics and files.

    `upstream` maps each of `upstream_stages(stage)` to its output; `resume` continues a training
    stage from its last checkpoint; `callbacks` go to the trainer. A training stage run outside the
    pipeline names its folder (`out`, default `stage_dir`), may name its start model (default
    `start_model`), and says whether to gate (default `pipeline.gate`)."""
    folder = out or stage_dir(config, stage)
    tags = {"srl_rlvr.dataset": stage_data(config, stage, upstream)} if stage in TRAINING else {}

    def work(tracking: list[TrainerCallback]) -> StageOutput:
        if stage == "generate":
            return _generate(config, emit)
        if stage == "evaluate":
            return _evaluate(config, emit)
        if stage == "register":
            return _register(config, upstream)
        trainer_callbacks = [StepEvents(stage, emit), *callbacks, *tracking]
        gated = config.pipeline.gate if gate is None else gate
        return _train(config, stage, upstream, resume, trainer_callbacks, folder, start, gated)

    return run_tracked(config, stage, folder, tags, work, parent_run_id)
