"""Every training stage must earn its place: a stage's model is kept only when the task's verifier
says it beat the best model before it on the validation split.

Losses, rewards and SRL's step similarity can all rise while the model gets worse at the job
(measured: SRL's held-out step similarity rose while SmolLM2's sentiment accuracy stayed 0,
BENCHMARKS.md). So after a stage trains, its model and the incumbent (the run's start model, or the
best stage so far) answer the task's `val` problems greedily, as evaluation does, and are scored by
the task's own metric (`pipeline.gate_metric`, default the first metric the task reports: accuracy,
field F1, pass rate). The stage's model is kept when its score beats the incumbent's by more than
`pipeline.gate_margin`; a tie keeps the incumbent. `gate.json` in the stage's folder records both
scores, the difference with its paired bootstrap interval, the decision and the best model so far,
and the next stage starts from that model. The incumbent's completions are kept in the file, so a
chain of stages scores each model once.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from srl_rlvr.config import Config
from srl_rlvr.evaluate.stats import paired_metric_delta_ci
from srl_rlvr.tasks import Problem, Task, headline_metric, safe_reward

log = logging.getLogger(__name__)

GATE_FILE = "gate.json"


@dataclass
class GateResult:
    """One stage's gate: `best` is the model the next stage starts from (this stage's, when kept)."""

    stage: str
    metric: str
    candidate: str
    incumbent: str
    candidate_score: float
    incumbent_score: float
    delta: float
    low: float
    high: float
    kept: bool
    best: str
    best_score: float
    n: int
    best_completions: list[str] = field(default_factory=list, repr=False)


def task_score(task: Task, metric: str, completions: Sequence[str], problems: Sequence[Problem]) -> float:
    if metric == "reward":
        return sum(safe_reward(task, c, p) for c, p in zip(completions, problems, strict=True)) / max(
            len(problems), 1
        )
    return float(task.metrics(list(completions), list(problems))[metric])


def answer(config: Config, path: str, task: Task, problems: Sequence[Problem]) -> list[str]:
    """Greedy answers of the model at `path`, prompted as evaluation prompts it."""
    from srl_rlvr.modeling import chat_prompt, load_model
    from srl_rlvr.rollout import generate_texts

    model_config = config.model.model_copy(update={"name_or_path": path, "lora": None})
    model, tokenizer = load_model(model_config, seed=config.seed)
    prompts = [chat_prompt(tokenizer, task.prompt(p)) for p in problems]
    completions = generate_texts(
        model, tokenizer, prompts, config.eval.max_new_tokens, batch_size=config.eval.batch_size
    ).completions
    del model
    gc.collect()
    return completions


def read_gate(stage_folder: Path) -> GateResult | None:
    path = stage_folder / GATE_FILE
    return GateResult(**json.loads(path.read_text())) if path.is_file() else None


def best_model(stage_output: Path) -> str:
    """The model a stage after this one starts from: the gate's choice, or the stage's own model
    when it ran ungated."""
    gate = read_gate(stage_output.parent)
    return gate.best if gate is not None else str(stage_output)


def gate_stage(
    config: Config,
    stage: str,
    candidate: str,
    incumbent: str,
    task: Task,
    out: Path,
    previous: GateResult | None = None,
) -> GateResult:
    """Score `candidate` against `incumbent` on the validation split; write the decision into the
    stage folder `out` and return it.

    `previous` is the gate of the stage the incumbent came from, whose stored completions spare
    answering with the incumbent again."""
    problems = task.sample(config.data.val_size, config.data.seed, "val")
    metric = headline_metric(task, config.pipeline.gate_metric)
    if not problems:
        raise ValueError(
            f"task '{task.name}' has no validation problems: the stage gate needs data.val_size > 0"
        )
    reuse = (
        previous is not None
        and previous.best == incumbent
        and len(previous.best_completions) == len(problems)
    )
    before = previous.best_completions if reuse and previous else answer(config, incumbent, task, problems)
    after = answer(config, candidate, task, problems)

    def scorer(completions: list[str]) -> Any:
        return lambda idx: task_score(task, metric, [completions[i] for i in idx], [problems[i] for i in idx])

    delta, low, high = paired_metric_delta_ci(
        scorer(before), scorer(after), len(problems), seed=config.seed, confidence=config.eval.confidence
    )
    everything = np.arange(len(problems))
    before_score, after_score = scorer(before)(everything), scorer(after)(everything)
    kept = delta > config.pipeline.gate_margin
    result = GateResult(
        stage=stage,
        metric=metric,
        candidate=candidate,
        incumbent=incumbent,
        candidate_score=after_score,
        incumbent_score=before_score,
        delta=delta,
        low=low,
        high=high,
        kept=kept,
        best=candidate if kept else incumbent,
        best_score=after_score if kept else before_score,
        n=len(problems),
        best_completions=after if kept else before,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / GATE_FILE).write_text(json.dumps(asdict(result), indent=1) + "\n")
    log.info(
        "%s %s: validation %s %.3f vs %.3f before it (Δ %+.3f [%+.3f, %+.3f], %d problems)",
        stage,
        "kept" if kept else "not kept",
        metric,
        after_score,
        before_score,
        delta,
        low,
        high,
        len(problems),
    )
    return result


def gate_line(gate: GateResult) -> str:
    """One line for the progress display and the report."""
    verdict = "kept" if gate.kept else f"not kept: the next stage starts from {gate.best}"
    return (
        f"validation {gate.metric} {gate.candidate_score:.3f} vs {gate.incumbent_score:.3f} before it, "
        f"Δ {gate.delta:+.3f} [{gate.low:+.3f}, {gate.high:+.3f}] on {gate.n} problems; {verdict}"
    )
