"""The spec's deployment tiers as presets: what each one asks of a model, and the training settings
that suit its size. A preset fills only the keys a config leaves unset, so a user's choice wins.

The latency budget is a serving target per request; distillation reports the student's measured
evaluation latency next to it (a batch's wall time, so an upper bound on a single request's), and
the tier's size class says what model to pick for it. Neither gates registration: quality does.
"""

from __future__ import annotations

from dataclasses import dataclass

from srl_rlvr.config import Config


@dataclass(frozen=True)
class Tier:
    latency_budget_ms: float | None  # None: asynchronous, no real-time budget
    size_class: str
    lora_rank: int
    batch_size: int


TIERS = {
    "gold": Tier(16.0, "3-8B, real-time", lora_rank=16, batch_size=32),
    "silver": Tier(250.0, "7-13B", lora_rank=32, batch_size=16),
    "bronze": Tier(None, "large, asynchronous", lora_rank=64, batch_size=8),
}


def with_tier(config: Config, tier: str | None) -> Config:
    """`config` with the tier's preset in every key it does not set itself, and `distill.tier` set."""
    if tier is None:
        return config
    preset = TIERS[tier]
    sft, on_policy = config.sft, config.distill.on_policy
    if "batch_size" not in sft.model_fields_set:
        sft = sft.model_copy(update={"batch_size": preset.batch_size})
    if "batch_size" not in on_policy.model_fields_set:
        on_policy = on_policy.model_copy(update={"batch_size": preset.batch_size})
    model = config.model
    if model.lora is not None and "r" not in model.lora.model_fields_set:
        model = model.model_copy(update={"lora": model.lora.model_copy(update={"r": preset.lora_rank})})
    distill = config.distill.model_copy(update={"tier": tier, "on_policy": on_policy})
    return config.model_copy(update={"sft": sft, "model": model, "distill": distill})
