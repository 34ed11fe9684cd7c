"""`distill:`: a big model's verified answers make a small, fast one (sft and on-policy distillation)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from srl_rlvr.config.section import Section


class OnPolicyConfig(Section):
    """On-policy distillation (Agarwal et al. 2024, TRL's DistillationTrainer): the student samples,
    the teacher's token distribution on those samples is the target."""

    learning_rate: float = Field(1e-4, gt=0)
    batch_size: int = Field(16, gt=0, description="Prompts per optimiser step (one sample each).")
    max_steps: int = Field(200, gt=0)
    max_completion_length: int = Field(96, gt=0, description="Tokens the student samples per prompt.")
    lr_scheduler: Literal["linear", "constant", "cosine"] = Field(
        "linear", description="As sft.lr_scheduler."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling and divergence temperature.")
    beta: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Generalized JSD interpolation: 0 forward KL, 1 reverse KL, 0.5 JSD (GKD's default).",
    )


class DistillConfig(Section):
    """`srl-rlvr distill`: a big model's verified answers make a small, fast one."""

    teacher: str = Field(
        "registry:arithmetic@production",
        description="registry:NAME@ALIAS, a model folder, or 'endpoint' for collaboration.teacher (an "
        "OpenAI-compatible server, through the collaboration client: retries, cache, cost, PII redaction).",
    )
    student: str = Field(
        "embedded-student",
        description="The model to train: any causal LM; 'embedded-student' is the packaged quarter-size "
        "configuration of the embedded family (weights initialised from the teacher's layers when the "
        "teacher is of that family, else at random).",
    )
    students: dict[str, str] = Field(
        default_factory=dict,
        description="--cascade: the student of each tier, e.g. {silver: ..., gold: ...}.",
    )
    method: Literal["sft", "on_policy", "sft+on_policy"] = Field(
        "sft",
        description="sft: fine-tune on the teacher's verified answers (the `sft:` section's settings); "
        "on_policy: the student samples, the teacher scores each token (needs a local teacher with the "
        "student's vocabulary; `distill.on_policy`); sft+on_policy: the first, then the second from its "
        "model, as the GKD paper starts from a fine-tuned student.",
    )
    rlvr_after: bool = Field(False, description="Then RLVR on the task's reward (the `rlvr:` section).")
    prompts: Literal["task", "production", "both"] = Field(
        "task",
        description="Where the questions come from: the task's train split, the feedback store's "
        "recorded requests (feedback.store, feedback.role), or both.",
    )
    num_prompts: int = Field(2000, gt=0, description="Task prompts to ask the teacher.")
    teacher_temperature: float = Field(0.0, ge=0, description="0: greedy answers (the teacher's best).")
    teacher_max_tokens: int = Field(128, gt=0)
    min_quality_ratio: float = Field(
        0.9,
        ge=0,
        description="Student's held-out primary metric / the teacher's: a student whose bootstrap 95 % "
        "interval of that ratio reaches below this is not registered.",
    )
    tier: Literal["gold", "silver", "bronze"] | None = Field(
        None, description="Apply that tier's preset (latency budget, LoRA rank, batch) and tag the student."
    )
    model_name: str | None = Field(
        None, description="Registered name of the student; default '<task>-<tier>' or '<task>-student'."
    )
    on_policy: OnPolicyConfig = Field(default_factory=OnPolicyConfig)
