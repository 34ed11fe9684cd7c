"""`pipeline.pilot`: choose the training recipe for this task by trying the candidates briefly.

Which order of stages helps depends on the task and the base model (BENCHMARKS.md, "Recipes": on
SmolLM2 sentiment SFT -> SRL -> RLVR led, on extraction RLVR after SFT cost F1 and only SFT was
kept, on the quickstart SFT alone carried the gain). So before the full run trains, each candidate
order (`pipeline.pilot_recipes`) trains for a fraction of its configured steps
(`pipeline.pilot_fraction`) on the run's own trajectories, gated as a run is, and the candidate whose
best kept model scores highest on the validation split wins; a tie goes to the one listed first.
The full run then trains the winner's stages, still gated.

Each candidate is an ordinary pipeline run in `<output_dir>/pilot/<stages>/`, so a rerun skips what
finished and resumes what was interrupted, and the choice with every candidate's score and the
reason is written to `<output_dir>/pilot.json`. The pilot reads only the validation split, never
the test split the report scores.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from srl_rlvr.config import Config
from srl_rlvr.distributed import is_main
from srl_rlvr.pipeline.gate import read_gate
from srl_rlvr.pipeline.stages import TRAINING, Emit, StageEvent, stage_dir

log = logging.getLogger(__name__)

PILOT_FILE = "pilot.json"


@dataclass
class Candidate:
    """One recipe's pilot: `score` is the validation score of the best model it kept (the start
    model's when it kept none); `kept` names the stages whose models were kept."""

    stages: list[str]
    score: float
    kept: list[str]
    metric: str
    folder: str


@dataclass
class PilotChoice:
    stages: list[str]
    reason: str
    candidates: list[Candidate]


def candidates(config: Config) -> list[list[str]]:
    """The configured recipes the run can train: each one's stages must be among the run's own."""
    allowed = set(config.pipeline.stages)
    return [list(r) for r in config.pipeline.pilot_recipes if set(r) <= allowed]


def shortened(config: Config, stages: list[str], folder: Path, trajectories: Path | None) -> Config:
    """The run's config for one candidate: its stages, a fraction of the steps, gated, the run's
    trajectories, and nothing registered or reported."""
    fraction = config.pipeline.pilot_fraction
    update: dict[str, object] = {
        "output_dir": str(folder),
        "pipeline": config.pipeline.model_copy(
            update={"stages": (["generate"] if trajectories else []) + stages, "pilot": False, "gate": True}
        ),
    }
    if trajectories is not None:
        update["data"] = config.data.model_copy(update={"trajectories": str(trajectories)})
    for stage in stages:
        section = getattr(config, stage)
        if section.max_steps > 0:
            steps = {"max_steps": max(1, math.ceil(section.max_steps * fraction))}
        else:
            steps = {"epochs": max(1, round(section.epochs * fraction))}
        update[stage] = section.model_copy(update=steps)
    return config.model_copy(update=update)


def _score(config: Config, stages: list[str], folder: Path) -> Candidate:
    gates = [read_gate(stage_dir(config, s)) for s in stages]
    last = next(g for g in reversed(gates) if g is not None)
    kept = [s for s, g in zip(stages, gates, strict=True) if g is not None and g.kept]
    return Candidate(stages, last.best_score, kept, last.metric, str(folder))


def choose_recipe(config: Config, trajectories: Path | None, emit: Emit) -> PilotChoice:
    """Run (or, where finished, reread) each candidate's short gated run and pick the best; write
    pilot.json in the run directory."""
    from srl_rlvr.pipeline import run_pipeline

    recipes = candidates(config)
    if not recipes:
        raise ValueError(
            "pipeline.pilot: no recipe in pipeline.pilot_recipes uses only the stages in pipeline.stages"
        )
    run_dir = Path(config.output_dir)
    share = config.pipeline.pilot_fraction
    emit(StageEvent("start", "pilot", message=f"trying {len(recipes)} recipes at {share:g} of their steps"))
    scored = []
    for i, stages in enumerate(recipes, 1):
        name = "-".join(stages)
        folder = run_dir / "pilot" / name
        sub = shortened(config, stages, folder, trajectories)

        def relay(event: StageEvent, name: str = name) -> None:
            emit(
                StageEvent(event.kind, f"pilot {name}: {event.stage}", event.step, event.total, event.message)
            )

        emit(StageEvent("step", "pilot", i - 1, len(recipes), f"trying {name}"))
        run_pipeline(sub, on_event=relay)
        scored.append(_score(sub, stages, folder))
    best = max(scored, key=lambda c: c.score)  # max keeps the first of equals: the order listed
    others = ", ".join(f"{'→'.join(c.stages)} {c.score:.3f}" for c in scored if c is not best)
    reason = (
        f"{'→'.join(best.stages)} reached validation {best.metric} {best.score:.3f} "
        f"(kept: {', '.join(best.kept) or 'none'}) in a {config.pipeline.pilot_fraction:g} pilot; "
        f"the others: {others or 'none'}"
    )
    choice = PilotChoice(best.stages, reason, scored)
    if is_main():
        (run_dir / PILOT_FILE).write_text(json.dumps(asdict(choice), indent=1) + "\n")
    log.info("pilot chose %s", reason)
    return choice


def with_recipe(config: Config, recipe: list[str]) -> Config:
    """The run's config with its training stages replaced by `recipe`."""
    stages = [s for s in config.pipeline.stages if s not in TRAINING or s in recipe]
    pipeline = config.pipeline.model_copy(update={"stages": stages})
    return config.model_copy(update={"pipeline": pipeline})
