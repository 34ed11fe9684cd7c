"""`srl-rlvr distill`: teacher -> verified answers -> student -> validation -> registry, per tier.

One distillation asks the teacher the task's questions and/or production's recorded ones
(`distill.prompts`), keeps the verified answers as a dataset (`traces.py`), trains the student on them
(`distill.method`: SFT, or on-policy with the teacher scoring the student's samples; optionally RLVR
after; each part an MLflow run under the distillation's, `training.py`), and compares it with the teacher on held-out problems (`validate.py`). A student that keeps
`distill.min_quality_ratio` of the teacher's quality (the lower bound of the ratio's interval) is
registered with the teacher's exact version
as its parent and its tier as a tag; one that does not is not registered, and `distill.md` says why.

`--cascade bronze,silver,gold` runs one distillation per tier, each tier's registered student
teaching the next (`distill.students` names each tier's student); the tiers must go from larger
models to smaller (bronze, silver, gold), as distillation does. A cascade stops at the first
student that fails: the next tier would learn from nothing registered.

`--since last` handles only what is new since the last distillation of that tier: production
requests recorded after it, and the task's questions only if they changed (another task, options,
seed or count). With nothing new it trains nothing, so a nightly schedule may run it blindly.
State is `<output_dir>/distill/state.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from srl_rlvr.config import Config
from srl_rlvr.distill.student import prepare_student
from srl_rlvr.distill.tiers import TIERS, with_tier
from srl_rlvr.distill.traces import Teacher, verified_traces
from srl_rlvr.distill.training import train_student
from srl_rlvr.distill.validate import Validation, validate_student
from srl_rlvr.errors import ConfigError
from srl_rlvr.tasks import Problem, Task, load_task
from srl_rlvr.tasks.outcome import problem_from_text
from srl_rlvr.tracking.runs import tracked_run

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
# what "the student agrees with the teacher" means for an encoder type; a causal LM: the same parsed answer
AGREEMENT = {
    "embedding": "same passage ranked first",
    "reranker": "same passage ranked first",
    "classifier": "same role chosen",
}


@dataclass
class DistillResult:
    tier: str | None
    teacher: str
    student: str
    run_dir: str
    init: str = ""
    questions: int = 0
    traces: int = 0
    dataset: str = ""
    trained: str | None = None  # the student's folder
    validation: Validation | None = None
    registered: str | None = None
    skipped: str | None = None  # why nothing was trained
    model_type: str = "causal_lm"  # an encoder matches the teacher's outputs (`encoders.py`)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.skipped is not None or self.registered is not None


def resolve_teacher(config: Config, reference: str) -> Teacher:
    from srl_rlvr.modeling import model_source
    from srl_rlvr.tracking.registry import is_reference, resolve, resolve_source
    from srl_rlvr.tracking.runs import tracking_uri

    if reference == "endpoint":
        endpoint = config.collaboration.teacher
        model = getattr(endpoint, "model", None) or config.collaboration.cloud_llm_model
        return Teacher(f"endpoint:{model}", None)
    if is_reference(reference):
        uri = tracking_uri(config)
        return Teacher(resolve(reference, uri).reference, resolve_source(reference, uri))
    return Teacher(reference, model_source(reference))


def _state_path(config: Config) -> Path:
    return Path(config.output_dir) / "distill" / STATE_FILE


def read_state(config: Config) -> dict[str, Any]:
    path = _state_path(config)
    return json.loads(path.read_text()) if path.is_file() else {}


def _task_fingerprint(config: Config) -> str:
    c = config
    key = json.dumps(
        [c.task.name, c.task.options, c.distill.num_prompts, c.data.seed], sort_keys=True, default=str
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def questions(config: Config, task: Task, last: dict[str, Any] | None) -> tuple[list[Problem], int]:
    """The problems to ask the teacher, and how many production requests were left out because
    nothing could verify an answer to them (no reference from the task and no judge)."""
    d, fb = config.distill, config.feedback
    problems: list[Problem] = []
    if d.prompts in ("task", "both") and (last is None or last.get("task") != _task_fingerprint(config)):
        problems += task.sample(d.num_prompts, config.data.seed, "train")
    unverifiable = 0
    if d.prompts in ("production", "both"):
        from srl_rlvr.data.records import open_existing

        since = datetime.fromisoformat(last["time"]) if last and last.get("time") else None
        seen = {p.text for p in problems}
        for record in open_existing(fb.store).records(model=fb.role, since=since):
            if record.prompt in seen or (since is not None and record.time <= since):
                continue
            seen.add(record.prompt)
            problem = problem_from_text(task, record.prompt)
            if problem is None and config.collaboration.judge is None:
                unverifiable += 1
                continue
            problems.append(problem or Problem(id=record.request_id, text=record.prompt, answer=None))
    return problems, unverifiable


def distill_once(
    config: Config,
    teacher_reference: str,
    student: str,
    tier: str | None,
    since_last: bool = False,
    on_step: Callable[[str], None] = lambda message: None,
    callbacks: Sequence[TrainerCallback] = (),
    register: bool = True,
) -> DistillResult:
    """One teacher -> student distillation; see the module docstring. `callbacks` go to the trainer
    (a benchmark's time budget, a progress display); `register=False` measures without registering.
    An encoder type (`model.type`) is distilled by matching the teacher's outputs (`encoders.py`)."""
    config = with_tier(config, tier)
    if config.model.type != "causal_lm":
        from srl_rlvr.distill.encoders import distill_encoder

        if since_last:
            raise ConfigError(
                f"--since last: a {config.model.type} distils on its corpus, not on production records"
            )
        result = distill_encoder(config, teacher_reference, student, on_step, register)
        result.tier = tier
        return result
    key = tier or "student"
    started = datetime.now(timezone.utc)
    run_dir = Path(config.output_dir) / "distill" / f"{key}-{started:%Y%m%d-%H%M%S}"
    task = load_task(config.task.name, config.task.options)
    teacher = resolve_teacher(config, teacher_reference)
    result = DistillResult(tier, teacher.reference, student, str(run_dir))
    state = read_state(config)
    last = state.get(key) if since_last else None
    problems, unverifiable = questions(config, task, last)
    if unverifiable:
        log.warning(
            "%d production requests skipped: the task cannot check them and no judge is set", unverifiable
        )
    result.questions = len(problems)
    if not problems:
        result.skipped = f"nothing new since the last distillation of {key} ({last['time'] if last else '-'})"
        return result

    clock = time.perf_counter()
    on_step(f"{teacher.reference} answers {len(problems)} questions; the verified answers are kept")
    manifest = verified_traces(config, task, teacher, problems, run_dir / "data")
    result.traces, result.dataset = int(manifest["accepted"]), f"dataset:{manifest['hash']}"
    result.seconds["traces"] = time.perf_counter() - clock

    clock = time.perf_counter()
    start, result.init = prepare_student(student, teacher.folder, run_dir / "student-init", seed=config.seed)
    trained_config = config.model_copy(
        update={"model": config.model.model_copy(update={"name_or_path": start}), "output_dir": str(run_dir)}
    )
    on_step(
        f"training {student} ({result.init} weights) by {config.distill.method} on {result.traces} traces"
    )
    with tracked_run(trained_config, "distill", run_dir, {"srl_rlvr.teacher": teacher.reference}) as run:
        parent_run_id = run.run_id if run else None
        trained = train_student(
            trained_config, task, teacher, run_dir, callbacks, result.dataset, parent_run_id
        )
        result.trained = str(trained)
        result.seconds["training"] = time.perf_counter() - clock

        clock = time.perf_counter()
        on_step("validating the student against the teacher on held-out problems")
        result.validation = validate_student(config, teacher, result.trained, run_dir / "validation")
        result.seconds["validation"] = time.perf_counter() - clock
        if run is not None:
            run.log_metrics(_validation_metrics(config, result.validation))
    if result.validation.passed and register:
        result.registered = _register(config, task, result)
    state[key] = {
        "time": started.isoformat(),
        "task": _task_fingerprint(config) if config.distill.prompts != "production" else None,
    }
    _state_path(config).parent.mkdir(parents=True, exist_ok=True)
    _state_path(config).write_text(json.dumps(state, indent=2) + "\n")
    write_report(result)
    return result


def _validation_metrics(config: Config, v: Validation) -> dict[str, float]:
    """The student's validation as registry metrics: its own score, and what it kept of the teacher's."""
    return {
        config.registry.primary_metric: v.student_metric,
        "quality_ratio": v.quality_ratio,
        "agreement": v.agreement,
        **({} if v.latency_ratio is None else {"latency_ratio": v.latency_ratio}),
    }


def _register(config: Config, task: Task, result: DistillResult) -> str:
    """The validated student, on the MLflow run that trained it (`register` finds it in the folder)."""
    from srl_rlvr.tracking.registry import model_name_for, register
    from srl_rlvr.tracking.runs import tracking_uri

    v = result.validation
    assert v is not None and result.trained is not None
    name = config.distill.model_name or f"{model_name_for(task.name)}-{result.tier or 'student'}"
    tags = {"teacher": result.teacher, "method": config.distill.method, "init": result.init}
    if result.tier:
        tags["tier"] = result.tier
    version = register(
        name,
        result.trained,
        stage="distill",
        parent=result.teacher,
        dataset=result.dataset,
        metrics=_validation_metrics(config, v),
        experiment=config.registry.experiment or config.task.name,
        uri=tracking_uri(config),
        tags=tags,
    )
    return version.reference


def cascade(
    config: Config,
    tiers: list[str],
    since_last: bool = False,
    on_step: Callable[[str], None] = lambda m: None,
) -> list[DistillResult]:
    """Each tier's student, taught by the tier before (the first by `distill.teacher`)."""
    unknown = [t for t in tiers if t not in TIERS]
    if unknown:
        raise ConfigError(f"--cascade: unknown tier(s) {', '.join(unknown)}; tiers: {', '.join(TIERS)}")
    sizes = list(reversed(TIERS))  # the largest tier first
    if [sizes.index(t) for t in tiers] != sorted(sizes.index(t) for t in set(tiers)):
        raise ConfigError(
            f"--cascade {','.join(tiers)}: each tier teaches the next, so list them from the larger "
            f"models to the smaller, once each ({', '.join(sizes)})"
        )
    missing = [t for t in tiers if t not in config.distill.students]
    if missing:
        raise ConfigError(f"--cascade: name the student of {', '.join(missing)} in distill.students")
    teacher = config.distill.teacher
    results = []
    for tier in tiers:
        on_step(f"tier {tier}: teacher {teacher}")
        result = distill_once(config, teacher, config.distill.students[tier], tier, since_last, on_step)
        results.append(result)
        if result.skipped is not None:
            latest = _latest_registered(config, tier)
            if latest is None:
                break
            teacher = latest
            continue
        if result.registered is None:
            break  # the next tier would learn from a student that was not good enough
        teacher = result.registered
    return results


def _latest_registered(config: Config, tier: str) -> str | None:
    """A tier's newest registered student, to teach the next tier when this one had nothing new."""
    from srl_rlvr.tracking.registry import RegistryError, model_name_for, versions

    task = load_task(config.task.name, config.task.options)
    name = config.distill.model_name or f"{model_name_for(task.name)}-{tier}"
    try:
        return versions(name)[-1].reference
    except (RegistryError, IndexError):
        return None


def write_report(result: DistillResult) -> None:
    run_dir = Path(result.run_dir)
    data = asdict(result)
    (run_dir / "distill.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    v = result.validation
    lines = [
        f"# Distillation{f' ({result.tier} tier)' if result.tier else ''}",
        "",
        f"Teacher {result.teacher}; student {result.student} ({result.init} initial weights).",
        f"{result.traces} of {result.questions} teacher answers verified ({result.dataset})."
        if result.model_type == "causal_lm"
        else f"The teacher's outputs for {result.traces} training texts or pairs, matched (data {result.dataset}).",
        "",
    ]
    if v is not None:
        lines += [
            "| | teacher | student | student / teacher |",
            "|---|---:|---:|---:|",
            f"| held-out metric (n={v.n}) | {v.teacher_metric:.3f} | {v.student_metric:.3f} | {v.quality_ratio:.3f} [{v.ratio_ci[0]:.3f}, {v.ratio_ci[1]:.3f}] |",
            f"| speed | | | {v.speed} |",
            "",
            f"Agreement ({AGREEMENT.get(result.model_type, 'same parsed answer')}): {v.agreement:.1%}.",
        ]
        if result.tier and TIERS[result.tier].latency_budget_ms is not None:
            lines.append(
                f"The {result.tier} tier's latency budget: {TIERS[result.tier].latency_budget_ms:g} ms a request."
            )
        lines += [
            "",
            f"**{'Registered as ' + result.registered if result.registered else 'Not registered'}**: {v.why}.",
            "",
        ]
    lines += [
        "| part | seconds |",
        "|---|---:|",
        *[f"| {k} | {s:.1f} |" for k, s in result.seconds.items()],
        "",
    ]
    (run_dir / "distill.md").write_text("\n".join(lines))
