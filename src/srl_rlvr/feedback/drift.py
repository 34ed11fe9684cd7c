"""Input drift: how far production inputs have moved from the training inputs, and whether that is
more than a window's sampling noise.

Two standard measures on two views of the text. PSI (population stability index) compares binned
distributions: under 0.1 is usually read as stable, 0.1-0.25 as a moderate shift, above 0.25 as a
major one. KS is the largest gap between the two empirical CDFs (0 to 1). KS is computed on the
input length (characters), PSI on the length (10 bins at the quantiles of reference and window
together) and on a token histogram (their most frequent tokens, plus one bucket for all others),
which sees a change of content at equal length.

The criterion fires when either test does, each at half the false-alarm budget `alpha` (Bonferroni),
so together they raise a false alarm in at most `alpha` of windows without drift:
- length KS beyond its asymptotic two-sample critical value at alpha / 2;
- PSI (the larger of the two) above `max_psi` and significant at alpha / 2 under a permutation test
  (reference and window rows shuffled together, so the words of one request stay together), only on a
  window of at least `min_psi_requests`. Empty bins are smoothed (half a count each, as Laplace's rule
  adds a whole one); without it an empty bin alone adds ~0.69 to PSI, and at 20 requests over 10 bins
  PSI's noise (about (bins - 1) / n) is larger than the 0.25 it is compared with.

Written here rather than taken from scipy or evidently: each piece is a few lines of numpy, and the
permutation test over precomputed per-row histograms is what makes it cheap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]")
SMOOTHING = 0.5  # counts added to every bin before PSI, so an empty bin stays finite and modest
LENGTH_BINS = 10
PERMUTATIONS = 499  # p-values from 0.002: enough resolution at alpha / 2 = 0.005


@dataclass(frozen=True)
class Drift:
    length_psi: float
    length_ks: float
    token_psi: float
    n_reference: int
    n_current: int
    psi_p_value: float | None = None  # permutation p-value of `psi`; None: window below min_psi_requests
    holds: bool = False
    detail: str = ""

    @property
    def psi(self) -> float:
        return max(self.length_psi, self.token_psi)

    def ks_critical(self, alpha: float) -> float:
        """The KS statistic beyond which the lengths differ at significance `alpha` (the asymptotic
        two-sample bound): small windows need a larger gap, so noise alone does not count as drift."""
        n, m = self.n_reference, self.n_current
        return float(np.sqrt(-np.log(alpha / 2) / 2) * np.sqrt((n + m) / (n * m)))


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two histograms over the same bins (counts), smoothed."""
    e = np.asarray(expected, dtype=float) + SMOOTHING
    a = np.asarray(actual, dtype=float) + SMOOTHING
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def _psi_rows(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """`psi` of each row pair of two (k, bins) count arrays."""
    e, a = expected + SMOOTHING, actual + SMOOTHING
    e, a = e / e.sum(axis=1, keepdims=True), a / a.sum(axis=1, keepdims=True)
    return np.sum((a - e) * np.log(a / e), axis=1)


def ks_statistic(reference: Sequence[float], current: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    r, c = np.sort(np.asarray(reference, float)), np.sort(np.asarray(current, float))
    points = np.concatenate([r, c])
    gap = np.searchsorted(r, points, side="right") / len(r) - np.searchsorted(c, points, side="right") / len(
        c
    )
    return float(np.max(np.abs(gap)))


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


@lru_cache(maxsize=100_000)
def _tokens(text: str) -> tuple[str, ...]:
    """A text's tokens, cached: the reference is the same on every run of monitor."""
    return tuple(tokens(text))


def _row_histograms(texts: Sequence[str], vocabulary_size: int) -> tuple[np.ndarray, int]:
    """Per text: a one-hot length bin, then its token counts over the most frequent tokens, then the
    count of its other tokens; and the number of length bins. Bins (at length quantiles) and
    vocabulary come from all `texts`, reference and window together, so that they are the same for
    every permutation and the permutation test stays exact."""
    lengths = np.array([len(t) for t in texts], dtype=float)
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, LENGTH_BINS + 1)[1:-1]))
    length_part = np.zeros((len(texts), len(edges) + 1))
    length_part[np.arange(len(texts)), np.searchsorted(edges, lengths, side="right")] = 1.0
    per_text = [_tokens(t) for t in texts]
    flat = np.array([token for text in per_text for token in text] or [""])
    row = np.repeat(np.arange(len(texts)), [len(text) for text in per_text])
    vocabulary, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    frequent = np.argsort(-counts, kind="stable")[:vocabulary_size]
    column = np.full(len(vocabulary), len(frequent))  # every other token: the last bucket
    column[frequent] = np.arange(len(frequent))
    token_part = np.zeros((len(texts), len(frequent) + 1))
    np.add.at(token_part, (row, column[inverse[: len(row)]]), 1.0)
    return np.concatenate([length_part, token_part], axis=1), len(edges) + 1


def input_drift(
    reference: Sequence[str],
    current: Sequence[str],
    max_psi: float = 0.25,
    alpha: float = 0.01,
    min_psi_requests: int = 100,
    vocabulary_size: int = 50,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> Drift:
    """How far `current` texts have drifted from `reference` ones (both non-empty), and whether the
    criterion holds (see the module docstring)."""
    ref_len, cur_len = [len(t) for t in reference], [len(t) for t in current]
    rows, split = _row_histograms([*reference, *current], vocabulary_size)
    n, m = len(reference), len(current)

    def both_psi(current_rows: np.ndarray) -> np.ndarray:
        """(length PSI, token PSI) per row of a (k, texts) 0/1 matrix choosing the window's texts."""
        window = current_rows @ rows
        rest = rows.sum(axis=0, keepdims=True) - window
        return np.stack(
            [_psi_rows(rest[:, :split], window[:, :split]), _psi_rows(rest[:, split:], window[:, split:])]
        )

    chosen = np.zeros((1, n + m))
    chosen[0, n:] = 1.0
    length_psi, token_psi = both_psi(chosen)[:, 0]
    drift = Drift(float(length_psi), ks_statistic(ref_len, cur_len), float(token_psi), n, m)
    ks_fires = drift.length_ks > drift.ks_critical(alpha / 2)
    detail = f"length KS {drift.length_ks:.3f} (significant above {drift.ks_critical(alpha / 2):.3f})"
    p_value = None
    if m < min_psi_requests:
        detail += f"; PSI {drift.psi:.3f} not judged below {min_psi_requests} requests"
        psi_fires = False
    else:
        rng = np.random.default_rng(seed)
        shuffled = np.argpartition(rng.random((permutations, n + m)), m, axis=1)[:, :m]
        picks = np.zeros((permutations, n + m))
        np.put_along_axis(picks, shuffled, 1.0, axis=1)
        null = both_psi(picks).max(axis=0)
        p_value = float((1 + np.sum(null >= drift.psi)) / (1 + permutations))
        psi_fires = drift.psi > max_psi and p_value < alpha / 2
        detail += f"; PSI {drift.psi:.3f} (limit {max_psi}, permutation p {p_value:.3f})"
    detail += f"; each test at {alpha / 2:g}"
    return Drift(
        drift.length_psi,
        drift.length_ks,
        drift.token_psi,
        n,
        m,
        psi_p_value=p_value,
        holds=bool(ks_fires or psi_fires),
        detail=detail,
    )
