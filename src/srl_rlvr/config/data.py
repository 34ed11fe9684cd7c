"""`task:` and `data:`: the task a run learns and the splits of its problems."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from srl_rlvr.config.section import Section


class TaskConfig(Section):
    name: str = Field(
        "arithmetic", description="A built-in task name or 'my_module:MyTask' for a user task class."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the task class.")


class DataConfig(Section):
    trajectories: str | None = Field(
        None, description="A trajectory JSONL to train on; when unset, the pipeline generates one."
    )
    train_size: int = Field(500, gt=0, description="Problems (and so trajectories) in the training split.")
    val_size: int = Field(100, ge=0)
    test_size: int = Field(200, ge=0)
    generated_test_size: int = Field(
        0,
        ge=0,
        description="Problems `srl-rlvr testdata build` asks collaboration.teacher (an endpoint) to write "
        "for a test set, beside the task's test_size; each is kept only when the task's verifier can "
        "score it. 0: none.",
    )
    seed: int = 0
    testsets: str = Field(
        "testsets",
        description="Where `srl-rlvr testdata build` keeps test sets and `eval --testset` finds them.",
    )
    near_duplicate_threshold: float = Field(
        0.7,
        gt=0,
        le=1,
        description="A test problem this similar to a training one (MinHash Jaccard of character 5-grams) "
        "is a leak and is removed; 0.7 catches a paraphrase of a few words in a two-line problem.",
    )
