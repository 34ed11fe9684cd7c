"""Choose a model for a role: decision tree, hard requirements, weighted multi-criteria score, validation.

Multi-criteria decision analysis (MCDA): the decision tree (`decision_tree.py`) filters by
size class, hard requirements filter next, the survivors are scored per criterion on 0..1 and combined
with the role's weights, and six validation checks (`validate_candidate`) are reported for each. The result becomes a
selection record (`selection/record.py`).

Scoring is relative to the field: on each criterion the best candidate evaluated scores 1 and the others
their ratio to it (value/best, or best/value where lower is better: latency, cost). Ratios, not min-max,
so that 14 ms against 15 ms is 1.0 against 0.93, not 1 against 0. A missing figure scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import Field

from srl_rlvr.config import ModelSelectionConfig
from srl_rlvr.errors import ConfigError
from srl_rlvr.selection.catalog import MATURITY_SCORE, Candidate, RoleProfile, Schema
from srl_rlvr.selection.decision_tree import Branch, branch_misfit, decision_branch, role_weights

BENCHMARK_TOLERANCE = 0.10  # our own evaluation must land within 10 % of the published score

LOWER_IS_BETTER = frozenset({"latency", "cost"})
BUILTIN_CRITERIA: dict[str, Callable[[Candidate], float | None]] = {
    "latency": lambda c: c.latency.p95,
    "cost": lambda c: c.entry.cost_per_1m_tokens,
    "throughput": lambda c: c.entry.throughput_rps,
    "context_window": lambda c: float(c.entry.context_window),
    "tool_use": lambda c: float(c.entry.capabilities.tool_use),
    "multimodal": lambda c: float(c.entry.capabilities.multimodal),
    "maturity": lambda c: MATURITY_SCORE[c.entry.maturity],
}


class Validation(Schema):
    """The validation checks for one candidate (see `validate_candidate`). None: not measured yet."""

    benchmark_match: float | None = Field(
        description="1 - worst relative gap between our measured and the reported benchmarks."
    )
    benchmark_within_10pct: bool | None
    hardware_compatible: bool
    cost_within_budget: bool
    monthly_cost_usd: float = Field(description="At the role's expected load.")
    latency_verified: bool | None = Field(description="Our measured p95 meets the limit.")
    quality_threshold: bool
    replicas_for_peak: int | None = Field(description="Replicas to serve requirements.throughput_rps.")


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    score: float
    criteria: dict[str, float]
    raw: dict[str, float | None]
    validation: Validation


@dataclass(frozen=True)
class Rejected:
    candidate: Candidate
    reasons: list[str]


@dataclass(frozen=True)
class Selection:
    profile: RoleProfile
    branch: Branch
    weights: dict[str, float]
    ranked: list[Scored]
    rejected: list[Rejected]

    @property
    def selected(self) -> Scored | None:
        return self.ranked[0] if self.ranked else None

    @property
    def evaluated(self) -> int:
        return len(self.ranked) + len(self.rejected)


def criterion_value(profile: RoleProfile, candidate: Candidate, criterion: str) -> float | None:
    """The raw figure a criterion scores: a built-in property, else the role's benchmark of that name."""
    if criterion in BUILTIN_CRITERIA:
        return BUILTIN_CRITERIA[criterion](candidate)
    return candidate.benchmarks.get(profile.benchmark_key(criterion))


def normalise(values: Sequence[float | None], lower_is_better: bool) -> list[float]:
    """Ratio to the best value present: best scores 1, a missing value 0."""
    present = [max(v, 0.0) for v in values if v is not None]
    if not present:
        return [0.0] * len(values)
    best = min(present) if lower_is_better else max(present)
    scores = []
    for v in values:
        if v is None:
            scores.append(0.0)
        elif lower_is_better:
            scores.append(1.0 if max(v, 0.0) <= best else best / v)
        else:
            scores.append(1.0 if best <= 0 else max(v, 0.0) / best)
    return scores


def requirement_failures(profile: RoleProfile, candidate: Candidate) -> list[str]:
    """Every hard requirement the candidate misses, each as a reason a person can act on."""
    req, entry = profile.requirements, candidate.entry
    reasons = []
    if req.max_latency_ms is not None and candidate.latency.p95 > req.max_latency_ms:
        reasons.append(f"p95 latency {candidate.latency.p95:g} ms > {req.max_latency_ms:g} ms")
    if req.min_accuracy is not None:
        key = profile.benchmark_key("accuracy")
        accuracy = candidate.benchmarks.get(key)
        if accuracy is None:
            reasons.append(f"no '{key}' figure to check min_accuracy {req.min_accuracy:g}")
        elif accuracy < req.min_accuracy:
            reasons.append(f"{key} {accuracy:g} < {req.min_accuracy:g}")
    if req.max_cost_per_1m_tokens is not None and entry.cost_per_1m_tokens > req.max_cost_per_1m_tokens:
        reasons.append(f"${entry.cost_per_1m_tokens:g}/1M tokens > ${req.max_cost_per_1m_tokens:g}")
    if req.hardware_available and not set(entry.hardware) & set(req.hardware_available):
        reasons.append(f"runs on {', '.join(entry.hardware)}; available: {', '.join(req.hardware_available)}")
    if req.availability_sla is not None and candidate.is_api:
        if entry.availability is None:
            reasons.append("API publishes no uptime SLA")
        elif entry.availability < req.availability_sla:
            reasons.append(f"API uptime SLA {entry.availability:g} < {req.availability_sla:g}")
    if req.min_context_window is not None and entry.context_window < req.min_context_window:
        reasons.append(f"context {entry.context_window} < {req.min_context_window} tokens")
    if req.tool_use and not entry.capabilities.tool_use:
        reasons.append("no tool use")
    if req.multimodal and not entry.capabilities.multimodal:
        reasons.append("not multimodal")
    return reasons


def benchmark_match(candidate: Candidate) -> float | None:
    """1 - the largest relative gap between a measured benchmark and the reported one; None if none overlap."""
    gaps = [
        abs(value - candidate.entry.benchmarks[key]) / abs(candidate.entry.benchmarks[key])
        for key, value in candidate.measured.items()
        if candidate.entry.benchmarks.get(key)
    ]
    return None if not gaps else 1.0 - max(gaps)


def validate_candidate(profile: RoleProfile, candidate: Candidate) -> Validation:
    """Six checks: benchmark match (within 10 %), hardware fit, cost within budget, measured latency,
    quality threshold and replicas for peak load; the measured ones are None until our own
    evaluation backs the candidate."""
    req, entry = profile.requirements, candidate.entry
    match = benchmark_match(candidate)
    monthly = profile.load.tokens_per_month / 1e6 * entry.cost_per_1m_tokens
    if req.monthly_budget_usd is not None:
        within_budget = monthly <= req.monthly_budget_usd
    else:
        limit = req.max_cost_per_1m_tokens
        within_budget = limit is None or entry.cost_per_1m_tokens <= limit
    latency_ok = req.max_latency_ms is None or candidate.latency.p95 <= req.max_latency_ms
    accuracy = candidate.benchmarks.get(profile.benchmark_key("accuracy"))
    replicas = None
    if req.throughput_rps is not None:
        if candidate.is_api:
            replicas = 1  # the provider scales, within its rate limits
        elif entry.throughput_rps is not None:
            replicas = math.ceil(req.throughput_rps / entry.throughput_rps)
    return Validation(
        benchmark_match=None if match is None else round(match, 4),
        benchmark_within_10pct=None if match is None else match >= 1.0 - BENCHMARK_TOLERANCE,
        hardware_compatible=not req.hardware_available
        or bool(set(entry.hardware) & set(req.hardware_available)),
        cost_within_budget=within_budget,
        monthly_cost_usd=round(monthly, 2),
        latency_verified=latency_ok if candidate.latency_measured else None,
        quality_threshold=req.min_accuracy is None or (accuracy is not None and accuracy >= req.min_accuracy),
        replicas_for_peak=replicas,
    )


def check_weights(profile: RoleProfile, weights: dict[str, float], candidates: Sequence[Candidate]) -> None:
    """A weight on a benchmark no candidate reports is a typo or a missing figure: say which."""
    for criterion in weights:
        if criterion in BUILTIN_CRITERIA:
            continue
        key = profile.benchmark_key(criterion)
        if not any(key in c.benchmarks for c in candidates):
            raise ConfigError(
                f"role {profile.role}: no candidate reports benchmark '{key}' for criterion '{criterion}'; "
                f"criteria are {', '.join(BUILTIN_CRITERIA)} or a catalog benchmark "
                f"(map one with benchmarks: {{{criterion}: KEY}})"
            )


def score_candidates(
    profile: RoleProfile, candidates: Sequence[Candidate], weights: dict[str, float]
) -> list[Scored]:
    """Weighted sum of per-criterion scores (each 0..1, see `normalise`), best first."""
    raw = {name: [criterion_value(profile, c, name) for c in candidates] for name in weights}
    normalised = {name: normalise(values, name in LOWER_IS_BETTER) for name, values in raw.items()}
    scored = [
        Scored(
            candidate=c,
            score=sum(weights[name] * normalised[name][i] for name in weights),
            criteria={name: normalised[name][i] for name in weights},
            raw={name: raw[name][i] for name in weights},
            validation=validate_candidate(profile, c),
        )
        for i, c in enumerate(candidates)
    ]
    return sorted(scored, key=lambda s: -s.score)


def select_model(
    profile: RoleProfile, candidates: Sequence[Candidate], defaults: ModelSelectionConfig | None = None
) -> Selection:
    """Run the whole selection; `ranked` is empty when no candidate passes the filters. `defaults`:
    the run config's `model_selection:` weights, for a role that names none."""
    branch = decision_branch(profile)
    weights = (
        role_weights(profile, defaults.cost_weight, defaults.performance_weight)
        if defaults
        else role_weights(profile)
    )
    check_weights(profile, weights, candidates)
    passing, rejected = [], []
    for c in candidates:
        misfit = branch_misfit(branch, c)
        reasons = [misfit] if misfit else requirement_failures(profile, c)
        if reasons:
            rejected.append(Rejected(c, reasons))
        else:
            passing.append(c)
    return Selection(profile, branch, weights, score_candidates(profile, passing, weights), rejected)
