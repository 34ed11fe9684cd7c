"""Batched generation and task scoring, shared by validation during training and by evaluation.

Plain HF `generate` in batches of left-padded prompts; greedy unless a temperature is given. The
fast engine of issue 8 will sit behind the same function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from srl_rlvr.errors import TaskError
from srl_rlvr.tasks import Problem, Task


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 32,
    num_return_sequences: int = 1,
    temperature: float = 0.0,
) -> list[str]:
    """Completions for `prompts`, `num_return_sequences` per prompt, consecutive (prompt-major)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sampling = temperature > 0
    completions: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(list(prompts[start : start + batch_size]), return_tensors="pt", padding=True)
            batch = batch.to(device)
            generated = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=sampling,
                temperature=temperature if sampling else None,
                top_p=None,
                top_k=None,
                num_return_sequences=num_return_sequences,
                pad_token_id=tokenizer.pad_token_id,
            )
            completions += tokenizer.batch_decode(
                generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True
            )
    finally:
        model.train(was_training)
    return completions


def safe_reward(task: Task, completion: str, problem: Problem) -> float:
    """`task.reward`, with a user task's exception turned into an error that names the problem."""
    try:
        return float(task.reward(completion, problem))
    except Exception as e:  # a user's task code: anything can go wrong in it
        raise TaskError(
            f"task '{task.name}': reward() failed on problem {problem.id}: {type(e).__name__}: {e}"
        ) from e


def evaluate_task(
    model: Any,
    tokenizer: Any,
    task: Task,
    problems: Sequence[Problem],
    max_new_tokens: int,
    batch_size: int = 32,
) -> dict[str, float]:
    """Greedy completions on `problems`, scored by the task: mean `reward` plus the task's own metrics."""
    completions = generate(
        model, tokenizer, [task.prompt(p) for p in problems], max_new_tokens, batch_size=batch_size
    )
    rewards = [safe_reward(task, c, p) for c, p in zip(completions, problems, strict=True)]
    return {"reward": sum(rewards) / max(len(rewards), 1), **task.metrics(completions, list(problems))}
