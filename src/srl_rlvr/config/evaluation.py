"""`eval:` and `registry:`: how a model is evaluated, and where it and its run are recorded."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from srl_rlvr.config.section import Section


class EvalConfig(Section):
    max_new_tokens: int = Field(128, gt=0)
    batch_size: int = Field(32, gt=0)
    bootstrap_samples: int = Field(
        1000, gt=0, description="Resamples for confidence intervals on metric deltas."
    )
    bootstrap_seed: int = Field(0, description="Seed of the resampling, so a report's intervals reproduce.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Coverage of every confidence interval.")
    slice_min_size: int = Field(
        10, gt=0, description="A slice needs this many problems to be flagged weak; fewer is noise."
    )
    slice_max_values: int = Field(
        20,
        ge=2,
        description="Metadata keys with more distinct values than this (ids, free text) are not sliced.",
    )
    max_failure_examples: int = Field(3, ge=0, description="Failed problems shown per weak slice.")
    generalization_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Task options overriding task.options for a family never seen in training, e.g. "
        "{min_steps: 5, max_steps: 6} for arithmetic; empty: no generalisation split.",
    )
    samples: int = Field(
        0,
        ge=0,
        description="Also sample this many completions a problem (at sample_temperature) and report "
        "avg@k (mean reward over the samples, the SRL paper reports avg@32) and pass@k (best sample's "
        "reward: the share solved by any of k when rewards are 0/1), with paired intervals. 0: greedy only.",
    )
    sample_temperature: float = Field(1.0, gt=0, description="Temperature of the eval.samples draws.")
    sample_seed: int = Field(0, description="Seed of the eval.samples draws, so avg@k and pass@k reproduce.")


class RegistryConfig(Section):
    """Experiment tracking and the model registry, both on MLflow (a local sqlite store by default)."""

    tracking_uri: str = Field(
        "sqlite:///mlflow.db",
        description="MLflow store (relative sqlite paths are from the working directory); the "
        "MLFLOW_TRACKING_URI environment variable overrides it, e.g. for a team's server.",
    )
    tracking: bool = Field(True, description="Log runs (config, per-step metrics, reports) to MLflow.")
    experiment: str | None = Field(None, description="MLflow experiment name; defaults to the task name.")
    model_name: str | None = Field(
        None,
        description="Registered model name; defaults to the task's name with characters MLflow refuses "
        "('/', ':', spaces) replaced by '-'.",
    )
    primary_metric: str = Field(
        "reward",
        description="The evaluation metric the promotion gate compares (reward: the task's mean reward).",
    )

    @field_validator("model_name")
    @classmethod
    def _mlflow_accepts(cls, name: str | None) -> str | None:
        if name is not None and (not name.strip() or "/" in name or ":" in name):
            raise ValueError(f"{name!r}: MLflow model names cannot be empty or contain '/' or ':'")
        return name

    alias_on_register: Literal["staging", "production", "backup"] | None = Field(
        "staging", description="Alias given to the last model a pipeline registers; promote it from there."
    )
