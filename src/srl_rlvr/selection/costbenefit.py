"""Should a new model replace the current one in a role? Performance, savings, risk and break-even.

Should a role move to a new model? A cost/benefit score decides: decision score =
0.4·performance + 0.3·savings + 0.2·(1 − risk) + 0.1·break-even favourability, "adopt" above 0.7;
break-even months = training cost / monthly savings, favourability = min(1, 12 / max(months, 1)).
What such a score leaves open is fixed here and said once: how performance and risk become 0..1 numbers.
An adopt decision can write the run config that trains the new model (`srl-rlvr run`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from srl_rlvr.config import build_config
from srl_rlvr.errors import ConfigError
from srl_rlvr.selection.catalog import Candidate, Load, RoleProfile
from srl_rlvr.selection.decision_tree import role_weights
from srl_rlvr.selection.mcda import (
    BENCHMARK_TOLERANCE,
    LOWER_IS_BETTER,
    benchmark_match,
    criterion_value,
    requirement_failures,
)

DECISION_WEIGHTS = {"performance": 0.4, "savings": 0.3, "risk": 0.2, "break_even": 0.1}
ADOPT_ABOVE = 0.7
PERFORMANCE_SCALE = 0.2  # a 20 % weighted improvement scores 1, par 0.5, 20 % worse 0
BINARY_CRITERIA = frozenset({"tool_use", "multimodal"})
MATURITY_RISK = {"new": 0.4, "stable": 0.2, "established": 0.0}
UNMEASURED_RISK = 0.2  # no evaluation of ours behind the numbers
MISMATCH_RISK = 0.3  # our evaluation disagrees with the reported figures by more than 10 %


@dataclass(frozen=True)
class BreakEven:
    months: float
    favourability: float


@dataclass(frozen=True)
class CostBenefit:
    role: str
    current: str
    new: str
    performance_delta: dict[str, float]
    performance_score: float
    monthly_cost_current: float
    monthly_cost_new: float
    monthly_savings: float
    savings_score: float
    training_cost: float
    break_even: BreakEven
    risk: float
    risk_factors: list[str]
    blockers: list[str]
    decision_score: float
    decision: Literal["adopt", "reject"]
    reasoning: list[str]


def break_even(training_cost: float, monthly_savings: float) -> BreakEven:
    """Months until the savings repay the training; never when nothing is saved."""
    months = training_cost / monthly_savings if monthly_savings > 0 else math.inf
    return BreakEven(months, min(1.0, 12.0 / max(months, 1.0)))


def describe_months(months: float) -> str:
    if not math.isfinite(months):
        return "never"
    return f"{months * 30:.0f} days" if months < 1 else f"{months:.1f} months"


def monthly_cost(candidate: Candidate, load: Load) -> float:
    return load.tokens_per_month / 1e6 * candidate.entry.cost_per_1m_tokens


def performance_delta(profile: RoleProfile, current: Candidate, new: Candidate) -> dict[str, float]:
    """Relative change per weighted criterion, positive = the new model is better, clipped to ±1.

    Cost is left out (the savings term weighs it) and so is maturity (the risk term does); yes/no
    capabilities count as ±1; a criterion either model lacks a figure for is skipped.
    """
    deltas = {}
    for name in role_weights(profile):
        if name in ("cost", "maturity"):
            continue
        old, fresh = criterion_value(profile, current, name), criterion_value(profile, new, name)
        if old is None or fresh is None:
            continue
        if name in BINARY_CRITERIA:
            delta = fresh - old
        elif old == 0:
            continue
        elif name in LOWER_IS_BETTER:
            delta = (old - fresh) / abs(old)
        else:
            delta = (fresh - old) / abs(old)
        deltas[name] = max(-1.0, min(1.0, delta))
    return deltas


def performance_score(profile: RoleProfile, deltas: dict[str, float]) -> float:
    weights = role_weights(profile)
    total = sum(weights[name] for name in deltas)
    weighted = sum(weights[name] * d for name, d in deltas.items()) / total if total else 0.0
    return max(0.0, min(1.0, 0.5 + weighted / (2 * PERFORMANCE_SCALE)))


def adoption_risk(new: Candidate) -> tuple[float, list[str]]:
    """Risk 0..1 from maturity and from how far our own evaluation backs the numbers."""
    factors = []
    risk = MATURITY_RISK[new.entry.maturity]
    if risk:
        factors.append(f"maturity '{new.entry.maturity}' (+{risk:g})")
    match = benchmark_match(new)
    if match is None:
        risk += UNMEASURED_RISK
        factors.append(f"benchmarks not measured by our evaluation (+{UNMEASURED_RISK:g})")
    elif match < 1.0 - BENCHMARK_TOLERANCE:
        risk += MISMATCH_RISK
        factors.append(f"measured benchmarks {1 - match:.0%} off the reported ones (+{MISMATCH_RISK:g})")
    return min(1.0, risk), factors


def analyse(
    profile: RoleProfile, current: Candidate, new: Candidate, load: Load | None = None
) -> CostBenefit:
    """Compare `new` with `current` for the role at `load` (default: the profile's expected load)."""
    load = load or profile.load
    deltas = performance_delta(profile, current, new)
    perf = performance_score(profile, deltas)
    cost_current, cost_new = monthly_cost(current, load), monthly_cost(new, load)
    savings = cost_current - cost_new
    savings_score = max(0.0, savings / cost_current) if cost_current > 0 else 0.0
    training = new.entry.training_cost_usd or 0.0
    even = break_even(training, savings)
    risk, risk_factors = adoption_risk(new)
    score = (
        DECISION_WEIGHTS["performance"] * perf
        + DECISION_WEIGHTS["savings"] * savings_score
        + DECISION_WEIGHTS["risk"] * (1.0 - risk)
        + DECISION_WEIGHTS["break_even"] * even.favourability
    )
    blockers = requirement_failures(profile, new)
    decision: Literal["adopt", "reject"] = "adopt" if score > ADOPT_ABOVE and not blockers else "reject"
    reasoning = [
        f"performance {perf:.2f} (0.5 = on par): "
        + (", ".join(f"{k} {d:+.0%}" for k, d in deltas.items()) or "no comparable figures"),
        f"inference ${cost_current:,.0f} -> ${cost_new:,.0f} a month at {load.requests_per_day:,.0f} "
        f"requests/day x {load.tokens_per_request:,.0f} tokens",
        f"training ${training:,.0f}; break-even: {describe_months(even.months)}",
        f"risk {risk:.2f}" + (f": {'; '.join(risk_factors)}" if risk_factors else ""),
    ]
    if blockers:
        reasoning.append(f"fails the role's hard requirements: {'; '.join(blockers)}")
    reasoning.append(
        f"decision score {score:.3f} {'>' if score > ADOPT_ABOVE else '<='} {ADOPT_ABOVE}: {decision}"
    )
    return CostBenefit(
        role=profile.role,
        current=current.id,
        new=new.id,
        performance_delta=deltas,
        performance_score=perf,
        monthly_cost_current=cost_current,
        monthly_cost_new=cost_new,
        monthly_savings=savings,
        savings_score=savings_score,
        training_cost=training,
        break_even=even,
        risk=risk,
        risk_factors=risk_factors,
        blockers=blockers,
        decision_score=score,
        decision=decision,
        reasoning=reasoning,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def trainable(candidate: Candidate) -> bool:
    """Open weights we can fine-tune with LoRA; adopting a hosted API needs no training run."""
    return candidate.entry.training_cost_usd is not None and candidate.entry.capabilities.lora


def adoption_run_config(profile: RoleProfile, new: Candidate) -> dict[str, Any]:
    """The pipeline config that fine-tunes `new` for the role, validated as `srl-rlvr run` will read it."""
    if not trainable(new):
        raise ConfigError(f"{new.name} cannot be fine-tuned here (a hosted API or no LoRA support)")
    if profile.task is None:
        raise ConfigError(
            f"role {profile.role} names no task: add `task: NAME` (a built-in task or module:Class) "
            "to the role profile so the run trains on the role's job"
        )
    raw = {
        "output_dir": f"runs/{_slug(profile.role)}-{_slug(new.name)}",
        "model": {"name_or_path": new.id, "lora": {"r": 16, "alpha": 32}},
        "task": {"name": profile.task},
    }
    build_config(raw)
    return raw


def write_run_config(profile: RoleProfile, new: Candidate, result: CostBenefit, path: str | Path) -> Path:
    """Write the adoption's run config; only an adopt decision has one."""
    if result.decision != "adopt":
        raise ConfigError(f"the decision for {new.name} is '{result.decision}': no training run to write")
    raw = adoption_run_config(profile, new)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Written by `srl-rlvr costbenefit`: adopt {new.name} for role {profile.role} "
        f"(decision score {result.decision_score:.3f}).\n# Train it with: srl-rlvr run {path}\n"
    )
    path.write_text(header + yaml.safe_dump(raw, sort_keys=False))
    return path
