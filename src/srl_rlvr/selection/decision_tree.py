"""A decision tree for common roles (by kind, then latency, real-time need or quality), and three size
tiers: the first filter of model selection.

Each branch names a size class, example candidates and its primary criteria with their weights; the
tiers are gold (small, real-time), silver (mid-size, interactive) and bronze (large, asynchronous). A branch fixes the parameter range a role may use, because latency
is physics: no amount of scoring makes a 671B model answer inside a 16 ms frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from srl_rlvr.selection.catalog import Candidate, RoleProfile

Tier = Literal["gold", "silver", "bronze"]

TIERS: dict[str, str] = {
    "gold": "small models (3-8B) for real-time",
    "silver": "mid-size models (7-13B) for interactive use",
    "bronze": "large models (50B+) for async expert work",
}

# A real-time limit is written "< 16ms"; a role whose limit is exactly one frame (16 ms at 60 FPS) means "within
# the frame", so the bounds are inclusive.
REAL_TIME_MS = 16.0
INTERACTIVE_MS = 250.0  # the upper bound for an interactive character's reply

SMALL = (3.0, 8.0)
MID = (7.0, 13.0)
LARGE = (50.0, math.inf)
LARGE_MOE = (100.0, math.inf)


@dataclass(frozen=True)
class Branch:
    """One leaf of the tree: which models a role may use and what it weighs them by."""

    rule: str
    tier: Tier
    parameters_b: tuple[float, float]
    weights: dict[str, float]
    tool_use: bool = False
    spec_candidates: tuple[str, ...] = ()
    model_type: str = "causal_lm"

    @property
    def size(self) -> str:
        low, high = self.parameters_b
        return f"{low:g}B+" if math.isinf(high) else f"{low:g}-{high:g}B"


# An encoder role is weighed by its type's held-out metric (the names `srl-rlvr eval` reports).
ENCODER_WEIGHTS: dict[str, dict[str, float]] = {
    "embedding": {"ndcg@10": 0.6, "latency": 0.2, "cost": 0.2},
    "reranker": {"ndcg@10": 0.6, "latency": 0.2, "cost": 0.2},
    "classifier": {"macro_f1": 0.5, "accuracy": 0.2, "latency": 0.2, "cost": 0.1},
}


def decision_branch(profile: RoleProfile) -> Branch:
    """The branch for this role: an encoder role by its type; else by role kind, then latency,
    real-time flag or quality."""
    if profile.model_type != "causal_lm":
        # encoders are 0.02-1B models that answer in milliseconds: the LLM size classes do not apply
        return Branch(
            f"{profile.model_type}: a model of that type, any size, by its held-out metric",
            "gold",
            (0.0, math.inf),
            ENCODER_WEIGHTS[profile.model_type],
            model_type=profile.model_type,
        )
    latency = profile.requirements.max_latency_ms
    if profile.kind == "expert_analysis":
        return Branch(
            "expert analysis: large model with tool support, async acceptable",
            "bronze",
            LARGE,
            {"accuracy": 0.5, "tool_use": 0.3, "cost": 0.2},
            tool_use=True,
            spec_candidates=("DeepSeek-V3-671B", "GPT-5", "Claude 4.5"),
        )
    if profile.kind == "content_generation":
        if profile.quality == "maximum":
            return Branch(
                "content generation at maximum quality: large MoE model",
                "bronze",
                LARGE_MOE,
                {"quality": 0.6, "creativity": 0.3, "cost": 0.1},
                spec_candidates=("DeepSeek-V3-671B", "GPT-5", "Claude 4.5"),
            )
        return Branch(
            "content generation: mid-size model",
            "silver",
            MID,
            {"quality": 0.4, "cost": 0.4, "latency": 0.2},
            spec_candidates=("Llama-3.1-8B", "Mistral-Nemo-12B"),
        )
    if profile.kind == "classification":
        if profile.real_time:
            return Branch(
                "real-time classification: small model",
                "gold",
                SMALL,
                {"latency": 0.4, "accuracy": 0.4, "cost": 0.2},
                spec_candidates=("Qwen2.5-3B", "Phi-3.5-mini"),
            )
        return Branch(
            "batch classification: mid-size model",
            "silver",
            MID,
            {"accuracy": 0.5, "f1": 0.3, "cost": 0.2},
            spec_candidates=("Llama-3.1-8B", "Qwen2.5-7B"),
        )
    if latency is not None and latency <= REAL_TIME_MS:
        return Branch(
            f"real-time interaction, latency <= {REAL_TIME_MS:g} ms: small model",
            "gold",
            SMALL,
            {"latency": 0.5, "accuracy": 0.3, "cost": 0.2},
            spec_candidates=("Qwen2.5-3B", "Llama-3.2-3B", "Phi-3.5-mini"),
        )
    if latency is not None and latency <= INTERACTIVE_MS:
        return Branch(
            f"interactive, latency <= {INTERACTIVE_MS:g} ms: mid-size model",
            "silver",
            MID,
            {"latency": 0.3, "accuracy": 0.4, "cost": 0.3},
            spec_candidates=("Llama-3.1-8B", "Qwen2.5-7B", "Mistral-Nemo-12B"),
        )
    return Branch(
        "async interaction: large model",
        "bronze",
        LARGE,
        {"accuracy": 0.6, "cost": 0.2, "latency": 0.2},
        spec_candidates=("DeepSeek-V3", "GPT-4", "Claude 4"),
    )


def role_weights(
    profile: RoleProfile, cost_weight: float | None = None, performance_weight: float | None = None
) -> dict[str, float]:
    """The profile's own weights, else the branch's primary criteria; normalised to sum to 1.

    `cost_weight` and `performance_weight` (the run config's `model_selection:`) split a role that
    names no weights between cost and the branch's other criteria, which keep their proportions."""
    weights = profile.weights or dict(decision_branch(profile).weights)
    if not profile.weights and cost_weight is not None and performance_weight is not None:
        others = {k: w for k, w in weights.items() if k != "cost"}
        total_others = sum(others.values()) or 1.0
        weights = {k: performance_weight * w / total_others for k, w in others.items()}
        weights["cost"] = cost_weight
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items() if w > 0}


def branch_misfit(branch: Branch, candidate: Candidate) -> str | None:
    """Why the tree excludes this candidate from the branch, or None when it fits.

    An undisclosed size (a frontier API) counts as large: frontier APIs (GPT, Claude) are the large tier's examples.
    """
    kind = candidate.entry.model_type
    if kind != branch.model_type:
        return f"decision tree: the role needs model_type {branch.model_type}, this is {kind}"
    low, high = branch.parameters_b
    params = candidate.entry.parameters_b
    size = f"{params:g}B" if params is not None else "undisclosed (large)"
    fits = low <= params <= high if params is not None else math.isinf(high)
    if not fits:
        return f"decision tree: {branch.tier} tier takes {branch.size}, model is {size}"
    if branch.tool_use and not candidate.entry.capabilities.tool_use:
        return f"decision tree: {branch.tier} tier ({branch.rule}) needs tool use"
    return None
