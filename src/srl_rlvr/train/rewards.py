"""RLVR's reward contract: the task's verifiable outcome reward, plus optional shaping terms.

Each term is a separate TRL reward function with its own weight, so TRL logs every term on its own
(`rewards/outcome/mean`, `rewards/answer_format/mean`, `rewards/overlong/mean`) and a user can see which
one moves. The outcome term is the only one that says whether the answer is right; shaping terms
default to off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from srl_rlvr.config import RLVRConfig
from srl_rlvr.tasks import Problem, Task, safe_reward

RewardFunction = Callable[..., list[float]]


def outcome_reward(task: Task, problems: Sequence[Problem]) -> RewardFunction:
    """`task.reward` of each completion against its problem, looked up by the dataset's `problem_id`."""
    by_id = {p.id: p for p in problems}

    def outcome(completions: list[str], problem_id: list[str], **_: Any) -> list[float]:
        return [safe_reward(task, c, by_id[i]) for c, i in zip(completions, problem_id, strict=True)]

    return outcome


def format_reward(task: Task) -> RewardFunction:
    """1 when the task can parse an answer out of the completion: teaches the answer format early."""

    def answer_format(completions: list[str], **_: Any) -> list[float]:
        return [float(task.parse(c) is not None) for c in completions]

    return answer_format


def overlong_penalty(max_length: int, buffer: int) -> RewardFunction:
    """DAPO's soft overlong punishment (Yu et al. 2025, Eq. 13): 0 up to `max_length - buffer` tokens,
    then falling linearly to -1 at `max_length`, so rambling is discouraged before truncation cuts it."""
    start = max(max_length - buffer, 0)

    def overlong(completion_ids: list[list[int]], **_: Any) -> list[float]:
        return [max(-1.0, min(0.0, (start - len(ids)) / max(buffer, 1))) for ids in completion_ids]

    return overlong


def reward_functions(
    task: Task, problems: Sequence[Problem], cfg: RLVRConfig
) -> tuple[list[RewardFunction], list[float]]:
    """The reward functions and their weights for TRL; shaping terms only when their weight is > 0."""
    functions, weights = [outcome_reward(task, problems)], [1.0]
    if cfg.format_reward > 0:
        functions.append(format_reward(task))
        weights.append(cfg.format_reward)
    if cfg.length_penalty > 0:
        functions.append(overlong_penalty(cfg.max_completion_length, cfg.overlong_buffer))
        weights.append(cfg.length_penalty)
    return functions, weights
