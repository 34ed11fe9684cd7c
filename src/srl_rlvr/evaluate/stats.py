"""Percentile bootstrap intervals (Efron & Tibshirani 1993, ch. 13) for evaluation means and deltas.

Evaluation sets are a few hundred problems, so a 2-point accuracy gain can be noise. Every
number the report compares carries an interval from resampling the problems themselves; a delta
between two models resamples problem indices jointly (paired), because both models saw the same
problems and per-problem difficulty is the largest source of variance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _resampled_means(values: np.ndarray, samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(values), size=(samples, len(values)))
    return values[indices].mean(axis=1)


def _interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float], samples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of `values`; (nan, nan) when there are none."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return float("nan"), float("nan")
    return _interval(_resampled_means(array, samples, seed), confidence)


def paired_delta_ci(
    a: Sequence[float],
    b: Sequence[float],
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """mean(b - a) and its interval; `a[i]` and `b[i]` must score the same problem."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    differences = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if differences.size == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = _interval(_resampled_means(differences, samples, seed), confidence)
    return float(differences.mean()), low, high


def paired_metric_delta_ci(
    metric_a: Callable[[np.ndarray], float],
    metric_b: Callable[[np.ndarray], float],
    n: int,
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """metric_b - metric_a and its paired interval, for a metric that is no mean of per-problem values
    (macro F1, micro F1): each metric is recomputed on the same resampled problem indices."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    everything = np.arange(n)
    deltas = [metric_b(indices) - metric_a(indices) for indices in rng.integers(0, n, size=(samples, n))]
    low, high = _interval(np.asarray(deltas), confidence)
    return float(metric_b(everything) - metric_a(everything)), low, high
