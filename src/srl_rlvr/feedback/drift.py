"""Input drift: how far production inputs have moved from the training inputs.

Two standard measures on two views of the text. PSI (population stability index) compares binned
distributions: under 0.1 is usually read as stable, 0.1-0.25 as a moderate shift, above 0.25 as a
major one. KS is the largest gap between the two empirical CDFs (0 to 1). Both are computed on the
input length (characters), and PSI also on a token histogram (the reference's most frequent tokens
plus one bucket for all others), which sees a change of content at equal length. Written here rather
than taken from scipy or evidently: each is a few lines of numpy, and neither library is otherwise
needed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]")
EPSILON = 1e-4  # an empty bin's share, so PSI stays finite


@dataclass(frozen=True)
class Drift:
    length_psi: float
    length_ks: float
    token_psi: float
    n_reference: int
    n_current: int

    @property
    def psi(self) -> float:
        return max(self.length_psi, self.token_psi)

    def ks_critical(self, alpha: float) -> float:
        """The KS statistic beyond which the lengths differ at significance `alpha` (the asymptotic
        two-sample bound): small windows need a larger gap, so noise alone does not count as drift."""
        n, m = self.n_reference, self.n_current
        return float(np.sqrt(-np.log(alpha / 2) / 2) * np.sqrt((n + m) / (n * m)))


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two distributions over the same bins (shares or counts)."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    e = np.clip(e / e.sum(), EPSILON, None)
    a = np.clip(a / a.sum(), EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(reference: Sequence[float], current: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    r, c = np.sort(np.asarray(reference, float)), np.sort(np.asarray(current, float))
    points = np.concatenate([r, c])
    gap = np.searchsorted(r, points, side="right") / len(r) - np.searchsorted(c, points, side="right") / len(
        c
    )
    return float(np.max(np.abs(gap)))


def binned_psi(reference: Sequence[float], current: Sequence[float], bins: int = 10) -> float:
    """PSI with bins at the reference's quantiles (equal reference mass in each)."""
    edges = np.unique(np.quantile(np.asarray(reference, float), np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    actual = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    return psi(expected, actual)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def token_histogram(texts: Sequence[str], vocabulary: Sequence[str]) -> list[int]:
    """Counts of each vocabulary token, then of every other token."""
    counts = Counter(t for text in texts for t in tokens(text))
    known = [counts[t] for t in vocabulary]
    return [*known, sum(counts.values()) - sum(known)]


def input_drift(reference: Sequence[str], current: Sequence[str], vocabulary_size: int = 50) -> Drift:
    """How far `current` texts have drifted from `reference` ones (both non-empty)."""
    ref_len = [len(t) for t in reference]
    cur_len = [len(t) for t in current]
    vocabulary = [
        t for t, _ in Counter(t for text in reference for t in tokens(text)).most_common(vocabulary_size)
    ]
    return Drift(
        length_psi=binned_psi(ref_len, cur_len),
        length_ks=ks_statistic(ref_len, cur_len),
        token_psi=psi(token_histogram(reference, vocabulary), token_histogram(current, vocabulary)),
        n_reference=len(reference),
        n_current=len(current),
    )
