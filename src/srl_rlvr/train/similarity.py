"""SRL's step reward, difflib's ratio, over a batch: in worker processes when the batch is large.

difflib is pure Python and roughly quadratic in the strings' length. A one-line step costs ~0.1 ms,
but steps of a few hundred characters (the paper's math steps) cost milliseconds each. A rank that
scores its completions one by one then spends most of a step on one CPU core while its GPU waits,
and that time does not shrink with more GPUs. On 2 H200s the SRL-shaped benchmark step spent
0.43-0.58 s of 0.82-1.01 s in the reward, and scaled 1.5× instead of 2× (BENCHMARKS.md, scale-out).

So a large batch is split over a pool of worker processes. The pool starts once, through a fork
server: the trainer's process holds a CUDA context, which a plain fork must not copy. The workers
import this module only, not torch: the parent's main module is hidden while they start, since
multiprocessing would otherwise re-run the main script in each worker (the whole CLI's imports,
seconds a worker) or fail outright when there is no script file (`python -`, a notebook). Small batches stay in the process, where a round trip to the
pool would cost more than the work. No library ships this: rapidfuzz's Indel ratio is fast, but it
is an LCS ratio, not difflib's Ratcliff-Obershelp one, which the paper's reward uses (Eq. 3); the
two differ on strings with repeated blocks.
"""

from __future__ import annotations

import atexit
import contextlib
import difflib
import multiprocessing
import os
import sys
import types
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

POOL_MIN_WORK = 2_000_000  # sum of len(a) x len(b) over a batch, about 50 ms of difflib on one core
MOST_WORKERS = 8

_pool: ProcessPoolExecutor | None = None


def step_similarity(predicted: str, expert: str) -> float:
    """difflib's ratio 2M/T: M matched characters, T total characters of both strings (paper Eq. 3)."""
    return difflib.SequenceMatcher(None, predicted.strip(), expert.strip(), autojunk=False).ratio()


def _pair_similarity(pair: tuple[str, str]) -> float:
    return step_similarity(*pair)


def worker_count() -> int:
    """This process's share of the machine's cores (every rank on the machine scores at once)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return min(MOST_WORKERS, cores // max(ranks_here, 1))


def _shutdown() -> None:
    if _pool is not None:
        _pool.shutdown(cancel_futures=True)


def _get_pool(workers: int) -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        _pool = ProcessPoolExecutor(workers, mp_context=context)
        atexit.register(_shutdown)
    return _pool


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """A bare `__main__` while workers start: they then skip multiprocessing's main-module re-run."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def similarities(pairs: Sequence[tuple[str, str]], min_work: int = POOL_MIN_WORK) -> list[float]:
    """`step_similarity` of each (predicted, expert) pair, in order; in worker processes when the
    batch's work (sum of the length products) is at least `min_work` and there are cores to spare."""
    workers = worker_count()
    work = sum(len(a) * len(b) for a, b in pairs)
    if work < min_work or workers < 2 or len(pairs) < 2:
        return [step_similarity(a, b) for a, b in pairs]
    chunk = max(1, len(pairs) // (4 * workers))
    with _main_hidden():  # workers start inside map's submits
        futures = _get_pool(workers).map(_pair_similarity, pairs, chunksize=chunk)
    return list(futures)
