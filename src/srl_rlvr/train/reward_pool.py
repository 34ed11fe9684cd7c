"""Worker processes for reward work on the host's CPUs: one pool a rank, or one a host that its ranks share.

A rank's pool starts once, through a fork server: the trainer's process holds a CUDA context, which a
plain fork must not copy. The workers import this module only, not torch: the parent's main module is
hidden while they start, since multiprocessing would otherwise re-run the main script in each worker
(the whole CLI's imports, seconds a worker) or fail outright when there is no script file
(`python -`, a notebook).

One pool a rank (the default) gives each rank its share of the host's cores, fixed. With several
ranks on a host (DDP, one a GPU), a rank whose batch is ready while another's is still generating
then leaves the other share idle; on 2 H200s two rank pools scored the SRL-shaped step in 0.082 s
where one rank alone took 0.071 s (BENCHMARKS.md, "Beyond one GPU"). `serve_host_pool` and
`join_host_pool` give the host one pool of all its cores instead: the host's local main process
(LOCAL_RANK 0) owns it and serves it on a Unix socket (multiprocessing.connection: authenticated,
pickled messages); the other local ranks send each batch (function, items, chunk size) and get the
results back in order. The scores are the same either way; whether it is faster is the
`scale_out.host_reward_pool` benchmark's question.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import secrets
import sys
import threading
import types
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

MOST_WORKERS = 8  # a rank's pool at most; a host pool at most this many a local rank

_local: ProcessPoolExecutor | None = None
_host: HostPool | HostPoolClient | None = None
# The batches this process sent to each pool ("rank" or "host"), for tests and benchmark rows.
batches: Counter[str] = Counter()
# `__main__` is process-wide: two threads that start workers at once (the host pool's server thread
# and a rank's reward thread) must not interleave their swaps, or the bare module would stay.
_main_lock = threading.Lock()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _local_ranks() -> int:
    return max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)


def rank_workers() -> int:
    """This process's share of the machine's cores (every rank on the machine scores at once)."""
    return min(MOST_WORKERS, _cores() // _local_ranks())


def host_workers() -> int:
    """A pool for every rank of the host: all its cores, at most MOST_WORKERS a local rank."""
    return min(MOST_WORKERS * _local_ranks(), _cores())


def worker_count() -> int:
    """Workers of the pool `pool_map` uses here: the host pool's once joined, else the rank's."""
    return _host.workers if _host is not None else rank_workers()


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """A bare `__main__` while workers start: they then skip multiprocessing's main-module re-run.
    Only the start of a worker reads it; nothing in training code does, in any thread."""
    with _main_lock:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


def _start_pool(workers: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(workers, mp_context=context)


def _run(pool: ProcessPoolExecutor, fn: Callable[[Any], Any], items: list[Any], chunksize: int) -> list[Any]:
    with _main_hidden():  # workers start inside map's submits
        results = pool.map(fn, items, chunksize=chunksize)
    return list(results)


def pool_map(fn: Callable[[Any], Any], items: Iterable[Any], chunksize: int = 1) -> list[Any]:
    """`fn` of each item in worker processes, in order: through the host pool once this process has
    served or joined one, else through this rank's own pool (started on first use)."""
    global _local
    items = list(items)
    if _host is not None:
        batches["host"] += 1
        return _host.map(fn, items, chunksize)
    if _local is None:
        _local = _start_pool(rank_workers())
    batches["rank"] += 1
    return _run(_local, fn, items, chunksize)


class HostPool:
    """The pool of the host's cores, in its local main process: used there directly, and served on
    a Unix socket to the host's other ranks, one thread a connection."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.authkey = secrets.token_bytes(32)
        self.served = 0  # batches scored for other processes
        self._pool = _start_pool(workers)
        self._listener = Listener(family="AF_UNIX", authkey=self.authkey)
        self.address: str = self._listener.address
        threading.Thread(target=self._accept, name="host-reward-pool", daemon=True).start()

    def map(self, fn: Callable[[Any], Any], items: list[Any], chunksize: int) -> list[Any]:
        return _run(self._pool, fn, items, chunksize)

    def _accept(self) -> None:
        while True:
            try:
                connection = self._listener.accept()
            except multiprocessing.AuthenticationError:
                continue  # not one of ours: its connection is refused, the pool serves on
            except OSError:
                return  # the listener was closed
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: Connection) -> None:
        with connection:
            while True:
                try:
                    fn, items, chunksize = connection.recv()
                except (EOFError, OSError):
                    return  # that rank closed its end
                try:
                    reply: tuple[str, Any] = ("ok", self.map(fn, items, chunksize))
                    self.served += 1
                except Exception as error:  # the caller's error, raised again on its side
                    reply = ("error", error)
                connection.send(reply)

    def close(self) -> None:
        self._listener.close()
        self._pool.shutdown(cancel_futures=True)


class HostPoolClient:
    """Another local rank's end of the host pool: one connection, one batch at a time."""

    def __init__(self, address: str, authkey: bytes, workers: int) -> None:
        self.address, self.workers = address, workers
        self._connection = Client(address, family="AF_UNIX", authkey=authkey)
        self._lock = threading.Lock()

    def map(self, fn: Callable[[Any], Any], items: list[Any], chunksize: int) -> list[Any]:
        with self._lock:
            try:
                self._connection.send((fn, items, chunksize))
                status, value = self._connection.recv()
            except (EOFError, OSError) as error:
                raise RuntimeError(f"the host's reward pool (local rank 0) is gone: {error!r}") from error
        if status == "error":
            raise value
        return value

    def close(self) -> None:
        self._connection.close()


def serve_host_pool() -> tuple[str, bytes, int]:
    """Start (once) this host's pool in this process, the host's local main one, and return what the
    other local ranks need to join it: its socket address, key and worker count."""
    global _host
    if not isinstance(_host, HostPool):
        _host = HostPool(host_workers())
    return _host.address, _host.authkey, _host.workers


def join_host_pool(address: str, authkey: bytes, workers: int) -> None:
    """Send this process's pool work to the host pool served at `address` (a no-op in the process
    that serves it, or when already joined)."""
    global _host
    if _host is None or _host.address != address:
        _host = HostPoolClient(address, authkey, workers)


def host_pool_served() -> int:
    """Batches this process's host pool scored for other ranks (0 where none is served)."""
    return _host.served if isinstance(_host, HostPool) else 0


def leave_host_pool() -> None:
    """Close this process's host pool, or its connection to one: pool work goes to the rank's own
    pool again (the other ranks' connections to a closed pool fail at their next batch)."""
    global _host
    if _host is not None:
        _host.close()
    _host = None


def _shutdown() -> None:
    leave_host_pool()
    if _local is not None:
        _local.shutdown(cancel_futures=True)


atexit.register(_shutdown)
