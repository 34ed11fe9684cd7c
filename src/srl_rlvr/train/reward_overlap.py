"""A rollout batch's rewards computed while the GPU works on the same batch (`scale_out.overlap_rewards`).

TRL's GRPOTrainer runs a rollout batch's scoring in one sequence: generate and decode the completions,
take their old log-probabilities (when a rollout batch serves several updates) and the reference
model's (when the KL weight is not 0), then call the reward functions, gather the rewards across
ranks, and compute the advantages. The log-prob passes do not need the rewards and the reward
functions do not need the GPU, so here the reward functions start in a background thread as soon as
the completions are decoded and are collected where TRL would have called them.

Overlapping with the *next* rollout instead is not possible without leaving on-policy training: the
next rollout samples from the weights after this batch's update, and the update needs these rewards'
advantages. Within a rollout batch, the rewards need every completion decoded, so they cannot start
before generation ends either.

The rewards are the ones TRL computes, in the same order: the thread calls the same functions, one
after another in TRL's order, with the arguments TRL would pass (the dataset's columns, the trainer
state, `log_metric`, `log_extra`). Their `log_metric` and `log_extra` calls are recorded and replayed
in the training thread when the rewards are collected; TRL then runs its own reward step on functions
that return the collected lists, so its NaN handling, checks, logging and gather are untouched.
Reward models (nn.Module), async reward functions, tools, environments and a custom rollout function
keep TRL's sequence: the overlap applies to plain reward functions only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

RewardFunction = Callable[..., list[Any]]


@dataclass
class RewardCalls:
    """What the background thread returns: each function's list, and the logging calls it made."""

    outputs: list[list[Any]]
    logged: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)


@dataclass
class _Job:
    prompts: list[Any]
    completions: list[Any]
    future: Future[RewardCalls]


def _call_in_order(
    functions: Sequence[RewardFunction],
    prompts: list[Any],
    completions: list[Any],
    completion_ids: list[list[int]],
    columns: dict[str, Any],
) -> RewardCalls:
    calls = RewardCalls(outputs=[])

    def recorder(name: str) -> Callable[..., None]:
        return lambda *args: calls.logged.append((name, args))

    kwargs = {**columns, "log_metric": recorder("log_metric"), "log_extra": recorder("log_extra")}
    for function in functions:
        calls.outputs.append(
            function(prompts=prompts, completions=completions, completion_ids=completion_ids, **kwargs)
        )
    return calls


class RewardOverlap:
    """One rollout batch's rewards in flight at a time, in one background thread."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._job: _Job | None = None

    def start(
        self,
        functions: Sequence[RewardFunction],
        prompts: list[Any],
        completions: list[Any],
        completion_ids: list[list[int]],
        columns: dict[str, Any],
    ) -> None:
        """Call `functions` on this batch in the background; `columns` are the keyword arguments TRL
        passes besides prompts, completions, completion_ids and the two logging callbacks."""
        self.discard()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="rewards")
        future = self._executor.submit(
            _call_in_order, list(functions), prompts, completions, completion_ids, columns
        )
        self._job = _Job(prompts, completions, future)

    def take(self, prompts: list[Any], completions: list[Any]) -> RewardCalls | None:
        """The rewards started for exactly these prompts and completions (the same lists), waiting
        for them if need be; None when none were started for them (then compute them as usual)."""
        job, self._job = self._job, None
        if job is None:
            return None
        if job.prompts is not prompts or job.completions is not completions:
            job.future.result()  # another batch's: let it finish, so two never share the pool
            return None
        return job.future.result()

    def discard(self) -> None:
        """Drop a job no one collected (its batch failed on the way), after it ends."""
        job, self._job = self._job, None
        if job is not None:
            job.future.exception()


def replaying(outputs: list[Any]) -> RewardFunction:
    """A reward function that returns `outputs`, whatever it is passed: TRL's reward step then runs
    on rewards already computed."""

    def replay(**_: Any) -> list[Any]:
        return outputs

    return replay
