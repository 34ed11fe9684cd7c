"""Classifier metrics for the intent router: accuracy, macro-F1, per-role precision/recall/F1 and the
confusion table, with paired intervals against the base model on the same prompts.

Macro-F1 weighs every role alike, so a router that sends everything to the busiest role scores low
even when its accuracy looks fine. The confusion table says which roles it mixes up: rows are the
true role, columns the predicted one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from srl_rlvr.evaluate.stats import paired_delta_ci, paired_metric_delta_ci


def per_role(
    truth: Sequence[str], predicted: Sequence[str], roles: Sequence[str]
) -> dict[str, dict[str, float]]:
    out = {}
    for role in roles:
        tp = sum(t == role and p == role for t, p in zip(truth, predicted, strict=True))
        fp = sum(t != role and p == role for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == role and p != role for t, p in zip(truth, predicted, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[role] = {"precision": precision, "recall": recall, "f1": f1, "support": float(tp + fn)}
    return out


def macro_f1(truth: Sequence[str], predicted: Sequence[str], roles: Sequence[str]) -> float:
    """Mean F1 over the roles that occur in `truth` (a role with no examples says nothing)."""
    present = [r for r in roles if r in set(truth)]
    scores = per_role(truth, predicted, present)
    return float(np.mean([scores[r]["f1"] for r in present])) if present else float("nan")


def confusion(truth: Sequence[str], predicted: Sequence[str], roles: Sequence[str]) -> list[list[int]]:
    """rows: true role, columns: predicted role, in `roles` order."""
    index = {r: i for i, r in enumerate(roles)}
    table = [[0] * len(roles) for _ in roles]
    for t, p in zip(truth, predicted, strict=True):
        if t in index and p in index:
            table[index[t]][index[p]] += 1
    return table


def classification_report(truth: Sequence[str], predicted: Sequence[str], roles: Sequence[str]) -> dict:
    correct = [float(t == p) for t, p in zip(truth, predicted, strict=True)]
    return {
        "accuracy": float(np.mean(correct)) if correct else float("nan"),
        "macro_f1": macro_f1(truth, predicted, roles),
        "per_role": per_role(truth, predicted, roles),
        "confusion": {"roles": list(roles), "rows": confusion(truth, predicted, roles)},
    }


def compare_classifiers(
    truth: Sequence[str],
    base: Sequence[str],
    tuned: Sequence[str],
    roles: Sequence[str],
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Accuracy and macro-F1 deltas tuned - base, resampling the same prompts for both (paired)."""
    truth_a, base_a, tuned_a = np.asarray(truth), np.asarray(base), np.asarray(tuned)
    acc = paired_delta_ci(
        (base_a == truth_a).astype(float), (tuned_a == truth_a).astype(float), samples, seed, confidence
    )
    f1 = paired_metric_delta_ci(
        lambda i: macro_f1(truth_a[i], base_a[i], roles),
        lambda i: macro_f1(truth_a[i], tuned_a[i], roles),
        len(truth_a),
        samples,
        seed,
        confidence,
    )
    return {
        name: {"delta": d, "delta_low": low, "delta_high": high}
        for name, (d, low, high) in (("accuracy", acc), ("macro_f1", f1))
    }
