"""SRL's step reward, difflib's ratio, over a batch: in worker processes when the batch is large.

difflib is pure Python and roughly quadratic in the strings' length. A one-line step costs ~0.1 ms,
but steps of a few hundred characters (the paper's math steps) cost milliseconds each. A rank that
scores its completions one by one then spends most of a step on one CPU core while its GPU waits,
and that time does not shrink with more GPUs. On 2 H200s the SRL-shaped benchmark step spent
0.43-0.58 s of 0.82-1.01 s in the reward, and scaled 1.5× instead of 2× (BENCHMARKS.md, scale-out).

So a large batch is split over a pool of worker processes (`train/reward_pool.py`: the rank's own,
or the host's shared by its ranks). Small batches stay in the process, where a round trip to the
pool would cost more than the work. No library ships this: rapidfuzz's Indel ratio is fast, but it
is an LCS ratio, not difflib's Ratcliff-Obershelp one, which the paper's reward uses (Eq. 3); the
two differ on strings with repeated blocks.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from srl_rlvr.train import reward_pool

POOL_MIN_WORK = 2_000_000  # sum of len(a) x len(b) over a batch, about 50 ms of difflib on one core


def step_similarity(predicted: str, expert: str) -> float:
    """difflib's ratio 2M/T: M matched characters, T total characters of both strings (paper Eq. 3)."""
    return difflib.SequenceMatcher(None, predicted.strip(), expert.strip(), autojunk=False).ratio()


def _pair_similarity(pair: tuple[str, str]) -> float:
    return step_similarity(*pair)


def similarities(pairs: Sequence[tuple[str, str]], min_work: int = POOL_MIN_WORK) -> list[float]:
    """`step_similarity` of each (predicted, expert) pair, in order; in worker processes when the
    batch's work (sum of the length products) is at least `min_work` and there are cores to spare."""
    workers = reward_pool.worker_count()
    work = sum(len(a) * len(b) for a, b in pairs)
    if work < min_work or workers < 2 or len(pairs) < 2:
        return [step_similarity(a, b) for a, b in pairs]
    return reward_pool.pool_map(_pair_similarity, pairs, chunksize=max(1, len(pairs) // (4 * workers)))
