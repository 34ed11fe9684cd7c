"""Does an arm beat the baseline? Paired bootstrap per metric, its cost, and the decision.

Pairs are (problem, seed): arm and baseline of the same seed answered the same held-out problem.
Resampling draws those pairs jointly and recomputes each metric on the draw, since a metric such as
macro F1 is no mean of per-problem values (Efron & Tibshirani 1993, ch. 13; `evaluate/stats.py`).
An arm is adopted when the primary metric's interval lies above zero and its device-seconds stay
within `cost_margin` of the baseline's; an interval below zero rejects it; anything else keeps the
baseline for want of evidence. Every metric is taken as higher-is-better, as the tasks report them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from srl_rlvr.evaluate.stats import paired_metric_delta_ci
from srl_rlvr.tasks import Problem, Task, safe_reward


@dataclass
class MetricDelta:
    metric: str
    baseline: float
    arm: float
    delta: float
    low: float
    high: float
    effect_size: float | None = None  # Cohen's d_z of the per-pair reward differences (reward only)


@dataclass
class ArmComparison:
    arm: str
    baseline: str
    seeds: list[int]
    deltas: list[MetricDelta]
    cost_seconds: float  # mean device-seconds per seed
    baseline_cost_seconds: float
    decision: str  # adopt, reject or keep
    reasons: list[str] = field(default_factory=list)

    @property
    def cost_ratio(self) -> float:
        return self.cost_seconds / self.baseline_cost_seconds if self.baseline_cost_seconds > 0 else 1.0

    def delta(self, metric: str) -> MetricDelta:
        return next(d for d in self.deltas if d.metric == metric)


def _paired_rows(
    arm: Sequence[dict[str, Any]], base: Sequence[dict[str, Any]], problems: Sequence[Problem]
) -> tuple[list[str], list[str], list[Problem], list[int]]:
    """Completions of arm and baseline on the same (problem, seed), and the seeds that had both."""
    by_id = {p.id: p for p in problems}
    base_by_seed = {r["seed"]: r for r in base}
    rows_arm, rows_base, paired, seeds = [], [], [], []
    for result in sorted(arm, key=lambda r: r["seed"]):
        other = base_by_seed.get(result["seed"])
        if other is None:
            continue
        seeds.append(result["seed"])
        position = {pid: i for i, pid in enumerate(other["problems"])}
        for i, pid in enumerate(result["problems"]):
            if pid in position and pid in by_id:
                rows_arm.append(result["completions"][i])
                rows_base.append(other["completions"][position[pid]])
                paired.append(by_id[pid])
    return rows_arm, rows_base, paired, seeds


def _scorer(task: Task, metric: str, rows: list[str], problems: list[Problem]) -> Any:
    if metric == "reward":
        values = np.asarray([safe_reward(task, c, p) for c, p in zip(rows, problems, strict=True)])
        return lambda idx: float(values[idx].mean())
    return lambda idx: float(task.metrics([rows[i] for i in idx], [problems[i] for i in idx])[metric])


def _effect_size(task: Task, rows_arm: list[str], rows_base: list[str], problems: list[Problem]) -> float:
    """Cohen's d_z: the mean per-pair reward difference over its standard deviation (0 when constant)."""
    diffs = np.asarray(
        [
            safe_reward(task, a, p) - safe_reward(task, b, p)
            for a, b, p in zip(rows_arm, rows_base, problems, strict=True)
        ]
    )
    spread = diffs.std(ddof=1) if len(diffs) > 1 else 0.0
    return float(diffs.mean() / spread) if spread > 0 else 0.0


def compare_arm(
    task: Task,
    problems: Sequence[Problem],
    arm: Sequence[dict[str, Any]],
    base: Sequence[dict[str, Any]],
    metrics: Sequence[str],
    primary: str,
    cost_margin: float,
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> ArmComparison:
    rows_arm, rows_base, paired, seeds = _paired_rows(arm, base, problems)
    deltas = []
    everything = np.arange(len(paired))
    for metric in metrics:
        score_arm, score_base = (
            _scorer(task, metric, rows_arm, paired),
            _scorer(task, metric, rows_base, paired),
        )
        delta, low, high = paired_metric_delta_ci(
            score_base, score_arm, len(paired), samples=samples, seed=seed, confidence=confidence
        )
        effect = _effect_size(task, rows_arm, rows_base, paired) if metric == "reward" else None
        base_value = score_base(everything) if paired else float("nan")
        arm_value = score_arm(everything) if paired else float("nan")
        deltas.append(MetricDelta(metric, base_value, arm_value, delta, low, high, effect))
    cost = float(np.mean([r["device_seconds"] for r in arm if r["seed"] in seeds] or [float("nan")]))
    base_cost = float(np.mean([r["device_seconds"] for r in base if r["seed"] in seeds] or [float("nan")]))
    comparison = ArmComparison(arm[0]["arm"], base[0]["arm"], seeds, deltas, cost, base_cost, "keep")
    comparison.decision, comparison.reasons = decide(comparison, primary, cost_margin)
    return comparison


def decide(comparison: ArmComparison, primary: str, cost_margin: float) -> tuple[str, list[str]]:
    """(decision, reasons), from the primary metric's interval and the cost ratio."""
    d = comparison.delta(primary)
    interval = f"{primary} {d.delta:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
    cost = f"cost x{comparison.cost_ratio:.2f} of {comparison.baseline}'s (margin x{1 + cost_margin:.2f})"
    if not comparison.seeds:
        return "keep", [f"no seed ran for both {comparison.arm} and {comparison.baseline}"]
    if d.high < 0:
        return "reject", [f"{interval}: worse than {comparison.baseline}", cost]
    if d.low <= 0:
        return "keep", [f"{interval}: the interval includes zero, no evidence of a change", cost]
    if comparison.cost_ratio > 1 + cost_margin:
        return "keep", [f"{interval}: better", f"{cost}: too costly"]
    return "adopt", [f"{interval}: better than {comparison.baseline}", cost]
