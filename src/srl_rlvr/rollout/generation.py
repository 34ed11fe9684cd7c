"""Batched generation for evaluation, validation during training, and a local teacher; and task
scoring of what it generates.

Plain HF `generate` in batches of left-padded prompts; greedy unless a temperature is given. The
fast engine (`engine.py`) serves training rollouts only: scores stay on HF's generate, the reference
the engine's own parity tests compare against."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from srl_rlvr.modeling import chat_prompt
from srl_rlvr.tasks import Problem, Task, safe_reward


@dataclass(frozen=True)
class Generation:
    """Completions and what they cost: generated tokens per completion (up to and including the first
    EOS, no padding) and the wall time of the batch each completion came from."""

    completions: list[str]
    num_tokens: list[int]
    batch_seconds: list[float]


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """EOS ids that end a completion: an instruct model's generation config may list several."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {i for i in ids if i is not None}


def _generated_lengths(new_tokens: torch.Tensor, stop_ids: set[int], pad_id: int | None) -> list[int]:
    lengths = []
    for row in new_tokens.tolist():
        stop = next((i for i, token in enumerate(row) if token in stop_ids), None)
        lengths.append(stop + 1 if stop is not None else sum(token != pad_id for token in row))
    return lengths


@torch.no_grad()
def generate_timed(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 32,
    num_return_sequences: int = 1,
    temperature: float = 0.0,
    on_batch: Callable[[int, int], None] | None = None,
) -> Generation:
    """`generate`, also measuring each batch: tokenize + generate + decode, as a caller would wait.
    `on_batch(prompts done, prompts in all)` after each batch, for progress output."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sampling = temperature > 0
    stop_ids = eos_ids(model, tokenizer)
    completions: list[str] = []
    num_tokens: list[int] = []
    batch_seconds: list[float] = []
    try:
        for start in range(0, len(prompts), batch_size):
            began = time.perf_counter()
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
            new_tokens = generated[:, batch["input_ids"].shape[1] :].cpu()  # .cpu() waits for the GPU
            completions += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            elapsed = time.perf_counter() - began
            num_tokens += _generated_lengths(new_tokens, stop_ids, tokenizer.pad_token_id)
            batch_seconds += [elapsed] * len(new_tokens)
            if on_batch is not None:
                on_batch(min(start + batch_size, len(prompts)), len(prompts))
    finally:
        model.train(was_training)
    return Generation(completions, num_tokens, batch_seconds)


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
    return generate_timed(
        model, tokenizer, prompts, max_new_tokens, batch_size, num_return_sequences, temperature
    ).completions


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
        model,
        tokenizer,
        [chat_prompt(tokenizer, task.prompt(p)) for p in problems],
        max_new_tokens,
        batch_size=batch_size,
    )
    rewards = [safe_reward(task, c, p) for c, p in zip(completions, problems, strict=True)]
    return {"reward": sum(rewards) / max(len(rewards), 1), **task.metrics(completions, list(problems))}
