"""Weakness detection: slice per-problem results by metadata and flag slices significantly below overall.

An overall score hides where a model fails: 80% accuracy can be 95% on two-step problems and 30% on
four-step ones. Every metadata key with a few scalar values (number of steps, operation mix, label,
length bucket) becomes a set of slices, plus the completion's own length; a slice is weak when its
whole bootstrap interval lies below the overall mean reward, and it carries failures to read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from srl_rlvr.config import EvalConfig
from srl_rlvr.evaluate.evaluation import EvalResult, ProblemRecord
from srl_rlvr.evaluate.stats import bootstrap_ci

LENGTH_KEY = "completion_length"


@dataclass
class Slice:
    key: str
    value: str | int | bool
    n: int
    mean: float
    ci_low: float
    ci_high: float
    weak: bool
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.key}={self.value}"


def completion_length_bucket(num_tokens: int, max_new_tokens: int) -> str:
    """'hit limit' (cut off, usually a failure mode of its own), else the third of the budget used."""
    if num_tokens >= max_new_tokens:
        return "hit limit"
    return ("short", "medium", "long")[min(2, num_tokens * 3 // max_new_tokens)]


def sliceable_keys(records: list[ProblemRecord], max_values: int) -> list[str]:
    """Metadata keys whose values are all str/int/bool with 2..max_values distinct values; lists,
    dicts, floats and near-unique keys (ids, free text) are not categories."""
    keys = sorted({k for r in records for k in r.metadata})
    chosen = []
    for key in keys:
        values = [r.metadata[key] for r in records if key in r.metadata]
        scalar = all(isinstance(v, str | int | bool) for v in values)
        if scalar and 2 <= len(set(values)) <= max_values:
            chosen.append(key)
    return chosen


def _failures(records: list[ProblemRecord], below: float, limit: int) -> list[dict[str, Any]]:
    """The slice's lowest-reward problems under the overall mean, ties in evaluation order."""
    worst = sorted((r for r in records if r.reward < below), key=lambda r: r.reward)[:limit]
    return [
        {"id": r.id, "text": r.text, "expected": r.answer, "completion": r.completion, "reward": r.reward}
        for r in worst
    ]


def _order(item: tuple[tuple[str, Any], list[ProblemRecord]]) -> tuple[str, str, Any]:
    (key, value), _ = item
    return key, type(value).__name__, value  # numbers in numeric order, never compared with strings


def slice_results(result: EvalResult, eval_config: EvalConfig) -> list[Slice]:
    """Every slice of `result`, ordered by key then value; `weak` needs `slice_min_size` problems."""
    overall = float(np.mean(result.rewards))
    groups: dict[tuple[str, Any], list[ProblemRecord]] = {}
    for key in sliceable_keys(result.records, eval_config.slice_max_values):
        for record in result.records:
            if key in record.metadata:
                groups.setdefault((key, record.metadata[key]), []).append(record)
    for record in result.records:
        bucket = completion_length_bucket(record.num_tokens, result.max_new_tokens)
        groups.setdefault((LENGTH_KEY, bucket), []).append(record)

    slices = []
    for (key, value), members in sorted(groups.items(), key=_order):
        rewards = [r.reward for r in members]
        low, high = bootstrap_ci(
            rewards, eval_config.bootstrap_samples, eval_config.bootstrap_seed, eval_config.confidence
        )
        slices.append(
            Slice(
                key=key,
                value=value,
                n=len(members),
                mean=float(np.mean(rewards)),
                ci_low=low,
                ci_high=high,
                # significantly below: the slice's whole interval lies under the overall mean
                weak=len(members) >= eval_config.slice_min_size and high < overall,
                failures=_failures(members, overall, eval_config.max_failure_examples),
            )
        )
    return slices


def weak_slices(slices: list[Slice]) -> list[Slice]:
    """The weak slices, worst first."""
    return sorted((s for s in slices if s.weak), key=lambda s: s.mean)
