"""Several processes of one run (accelerate launch, torchrun): which one writes, and agreeing on when.

accelerate and TRL shard the data, average the gradients and save each rank's state; what they do
not know is which of *our* files a rank may write. The rule here: every rank trains; the main
process alone writes run files (pipeline.json, reports, plots, metrics.jsonl, the registry, MLflow)
and runs the stages that are not training (data generation, evaluation, registration) while the
others wait. Decisions that depend on a rank's own clock or signals (a timed checkpoint, SIGTERM)
are agreed across ranks first, since a checkpoint under FSDP or ZeRO-3 is a collective that every
rank must enter at the same step.

Nothing here starts a process group before one is needed: with one process every function is a
plain local answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch

T = TypeVar("T")
# Ranks that are not the main one wait at a barrier while it runs a stage on its own (data
# generation with a teacher, evaluation): that can take hours, far beyond NCCL's 10-minute default.
BARRIER_TIMEOUT = timedelta(hours=12)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank among those on its machine (0 alone)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def state() -> Any:
    """accelerate's process state, initialising the process group (gloo on a CPU, NCCL on GPUs)
    with the long barrier timeout; the Trainer later reuses it."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available(), timeout=BARRIER_TIMEOUT)


def barrier() -> None:
    if world_size() > 1:
        state().wait_for_everyone()


def from_main(value: T) -> T:
    """The main process's `value` on every rank (it must pickle)."""
    if world_size() == 1:
        return value
    box = [value]
    state()
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def from_local_main(value: T) -> T:
    """The `value` of this machine's local main process (LOCAL_RANK 0) on every rank of the machine
    (it must pickle). Launchers number a machine's ranks consecutively, so that process is rank
    RANK - LOCAL_RANK; every rank of the run takes part (one all-gather)."""
    if world_size() == 1:
        return value
    state()
    values: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(values, value)
    return values[rank() - local_rank()]


def on_main(work: Callable[[], T]) -> T:
    """Run `work` on the main process only while the others wait; every rank gets its result."""
    return from_main(work() if is_main() else None)  # type: ignore[arg-type]


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any (one small all-reduce)."""
    if world_size() == 1:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
    value = torch.tensor([1 if flag else 0], device=device)
    state()
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())
