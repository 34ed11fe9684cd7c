"""Performance decline: has production's verified-outcome rate fallen, beyond a window's sampling noise?

A window of 20 checked answers at a true rate of 0.8 scores 0.7 or less one time in five, so "more
than 0.1 below the reference" on the point estimate fires on noise. The decline criterion holds when
the drop is larger than `max_outcome_drop` *and* a one-sided test says the rate is below the
reference at `decline_alpha`, which bounds its false-alarm rate without a decline by that alpha:

- against a fixed reference (an expected rate, or the production version's evaluated reward): the
  exact binomial test of the window's successes;
- against an earlier window: Fisher's exact test of the two windows' successes.

Outcomes in [0, 1] that are not 0/1 (partial credit) count as their rounded sum of successes, an
approximation the tests need. scipy has both tests; we only pick them.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binomtest, fisher_exact

# A drop equal to the limit is not "more than" it: 0.8 - 0.7 is 0.10000000000000009 in floats.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Decline:
    drop: float
    p_value: float
    holds: bool


def outcome_decline(
    outcomes: list[float],
    reference: float,
    max_drop: float,
    alpha: float,
    reference_outcomes: list[float] | None = None,
) -> Decline:
    """Whether `outcomes` (one window's verified outcomes) fell more than `max_drop` below `reference`,
    significantly at `alpha`; `reference_outcomes` when the reference is an earlier window's rate."""
    n = len(outcomes)
    successes = round(sum(outcomes))
    drop = reference - sum(outcomes) / n
    if reference_outcomes is None:
        p_value = binomtest(successes, n, min(max(reference, 0.0), 1.0), alternative="less").pvalue
    else:
        m, before = len(reference_outcomes), round(sum(reference_outcomes))
        table = [[successes, n - successes], [before, m - before]]
        p_value = fisher_exact(table, alternative="less").pvalue
    return Decline(drop, float(p_value), drop - max_drop > TOLERANCE and p_value < alpha)
