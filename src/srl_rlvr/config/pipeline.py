"""`pipeline:`: which stages `srl-rlvr run` runs, the gate between them and the pilot that picks a recipe."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from srl_rlvr.config.section import Section

StageName = Literal["generate", "sft", "srl", "rlvr", "train", "evaluate", "register"]


class PipelineConfig(Section):
    """What `srl-rlvr run` does, in the fixed order generate -> sft -> srl -> rlvr -> evaluate -> register
    (a causal LM), or generate -> train -> evaluate -> register (the encoder types)."""

    stages: list[StageName] = Field(
        default_factory=lambda: ["generate", "sft", "srl", "rlvr", "evaluate", "register"],
        description="Stages to run. generate writes (or, with data.trajectories set, only loads) the "
        "trajectories; sft is optional and, when listed, SRL starts from its model (a warm start); "
        "rlvr starts from the last training stage before it; register puts every trained model in the "
        "MLflow registry with its evaluation and lineage; evaluate compares the base model with "
        "every training stage and writes the report. Unset for an encoder type (model.type): "
        "generate, train, evaluate, register.",
    )

    gate: bool = Field(
        True,
        description="Keep a training stage's model only when the task's verifier scores it above the "
        "best model before it (the start model first) on the validation split; the next stage starts "
        "from the best so far, so a run never ends worse than where it began (pipeline/gate.py).",
    )
    gate_metric: str | None = Field(
        None,
        description="The task metric stages are judged by (accuracy, field_f1, ...); default the first "
        "the task reports. 'reward' is the mean per-problem reward.",
    )
    gate_margin: float = Field(
        0.0,
        ge=0,
        description="How much a stage must beat the model before it by to be kept; 0 keeps any gain, "
        "and a tie keeps the earlier model.",
    )

    pilot: bool = Field(
        False,
        description="Before the full run trains, try each of pipeline.pilot_recipes for a fraction of its "
        "steps, gated, and train the one whose best model scores highest on the validation split "
        "(pilot.py; the choice and every candidate's score go to pilot.json). Costs about "
        "pilot_fraction x the recipes' summed training time, plus a validation pass per stage.",
    )
    pilot_recipes: list[list[StageName]] = Field(
        default_factory=lambda: [["sft", "srl", "rlvr"], ["sft", "rlvr"], ["srl", "rlvr"], ["sft"], ["rlvr"]],
        description="The training-stage orders the pilot tries, best guess first (a tie goes to the "
        "earlier); those using a stage not in pipeline.stages are left out.",
    )
    pilot_fraction: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Each pilot stage trains this share of its max_steps (or of its epochs, at least one).",
    )

    @model_validator(mode="after")
    def _runnable(self) -> PipelineConfig:
        order = list(get_args(StageName))
        for recipe in self.pilot_recipes:
            if (
                not recipe
                or not set(recipe) <= {"sft", "srl", "rlvr"}
                or recipe != sorted(recipe, key=order.index)
            ):
                raise ValueError(
                    f"pilot_recipes: {recipe} must list training stages (sft, srl, rlvr) in order"
                )
        if len(set(self.stages)) != len(self.stages):
            raise ValueError("a stage is listed twice")
        if self.stages != sorted(self.stages, key=order.index):
            raise ValueError(f"list stages in the order they run: {', '.join(order)}")
        if "generate" not in self.stages and {"sft", "srl"} & set(self.stages):
            raise ValueError("sft and srl train on trajectories: list generate before them")
        if "register" in self.stages and "evaluate" not in self.stages:
            raise ValueError("register records each model's evaluation: list evaluate before it")
        return self
