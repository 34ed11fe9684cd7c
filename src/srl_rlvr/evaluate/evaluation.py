"""Score a model on held-out problems: the task's metrics, per-problem records, latency and throughput.

Every problem's completion and reward is kept, so slicing, failure examples and paired confidence
intervals between models (`compare`) are computed afterwards from the records, without generating
again. With `eval.samples: k`, each problem also gets k sampled completions' rewards, for avg@k and
pass@k (Chen et al. 2021's pass@k with n = k: a problem passes when any of its k samples does; with
partial-credit rewards, the best sample's reward).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from srl_rlvr.config import EvalConfig
from srl_rlvr.errors import DataError
from srl_rlvr.evaluate.stats import paired_delta_ci
from srl_rlvr.modeling import chat_prompt
from srl_rlvr.rollout import generate_texts
from srl_rlvr.tasks import Problem, Task, safe_reward

PERCENTILES = (50, 95, 99)


@dataclass
class ProblemRecord:
    """One problem as the model answered it."""

    id: str
    text: str
    answer: Any
    metadata: dict[str, Any]
    completion: str
    reward: float
    num_tokens: int
    sample_rewards: list[float] = field(default_factory=list)  # eval.samples draws, when asked


@dataclass
class EvalResult:
    """A model's score on one problem set. `latency_ms` holds p50/p95/p99 per request."""

    label: str
    model: str
    task: str
    metrics: dict[str, float]
    latency_ms: dict[str, float]
    tokens_per_second: float
    max_new_tokens: int
    records: list[ProblemRecord] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def rewards(self) -> list[float]:
        return [r.reward for r in self.records]

    def summary(self) -> dict[str, Any]:
        """Everything but the per-problem records."""
        return {k: v for k, v in asdict(self).items() if k != "records"} | {"n": self.n}


def evaluate_model(
    model: Any,
    tokenizer: Any,
    task: Task,
    problems: Sequence[Problem],
    eval_config: EvalConfig,
    label: str,
    source: str = "",
    on_batch: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Greedy completions on `problems`, scored by the task, with the cost of producing them.

    What is measured: batched greedy generation of `eval_config.batch_size` prompts at a time. A
    request's latency is the wall time of its whole batch (tokenize, generate, decode), since a
    request waits for its batch; it is not single-request latency under a server. tokens/s is the
    generated tokens (up to EOS, no padding) over the wall time of all batches.
    """
    if not problems:
        raise DataError(f"no problems to evaluate '{label}' on: the {task.name} problem set is empty")
    prompts = [chat_prompt(tokenizer, task.prompt(p)) for p in problems]
    began = time.perf_counter()
    generation = generate_texts(
        model,
        tokenizer,
        prompts,
        eval_config.max_new_tokens,
        batch_size=eval_config.batch_size,
        on_batch=on_batch,
    )
    wall = time.perf_counter() - began
    records = [
        ProblemRecord(
            id=p.id,
            text=p.text,
            answer=p.answer,
            metadata=dict(p.metadata),
            completion=completion,
            reward=safe_reward(task, completion, p),
            num_tokens=tokens,
        )
        for p, completion, tokens in zip(problems, generation.completions, generation.num_tokens, strict=True)
    ]
    latencies_ms = np.asarray(generation.batch_seconds) * 1000
    rewards = [r.reward for r in records]
    sampled = _sample(model, tokenizer, task, problems, prompts, records, eval_config)
    return EvalResult(
        label=label,
        model=source or label,
        task=task.name,
        metrics={
            "reward": float(np.mean(rewards)),
            **task.metrics(generation.completions, list(problems)),
            **sampled,
        },
        latency_ms={f"p{q}": float(np.percentile(latencies_ms, q)) for q in PERCENTILES},
        tokens_per_second=sum(generation.num_tokens) / wall if wall > 0 else float("nan"),
        max_new_tokens=eval_config.max_new_tokens,
        records=records,
    )


def evaluate_task(
    model: Any,
    tokenizer: Any,
    task: Task,
    problems: Sequence[Problem],
    max_new_tokens: int,
    batch_size: int = 32,
) -> dict[str, float]:
    """Greedy completions on `problems`, scored by the task: mean `reward` plus the task's own metrics.
    What training validates its checkpoints with: `evaluate_model`'s scores without its records,
    timing or sampled draws."""
    prompts = [chat_prompt(tokenizer, task.prompt(p)) for p in problems]
    completions = generate_texts(model, tokenizer, prompts, max_new_tokens, batch_size=batch_size).completions
    rewards = [safe_reward(task, c, p) for c, p in zip(completions, problems, strict=True)]
    return {"reward": sum(rewards) / max(len(rewards), 1), **task.metrics(completions, list(problems))}


SAMPLED = {"avg": np.mean, "pass": np.max}  # per problem, over its k sample rewards


def _sample(
    model: Any,
    tokenizer: Any,
    task: Task,
    problems: Sequence[Problem],
    prompts: list[str],
    records: list[ProblemRecord],
    eval_config: EvalConfig,
) -> dict[str, float]:
    """eval.samples draws a problem into `records`; avg@k and pass@k over the problems ({} when off)."""
    k = eval_config.samples
    if not k:
        return {}
    torch.manual_seed(eval_config.sample_seed)
    sampled = generate_texts(
        model,
        tokenizer,
        prompts,
        eval_config.max_new_tokens,
        batch_size=max(1, eval_config.batch_size // k),  # about the greedy pass's sequences a batch
        num_return_sequences=k,
        temperature=eval_config.sample_temperature,
    ).completions
    for i, (record, problem) in enumerate(zip(records, problems, strict=True)):
        record.sample_rewards = [safe_reward(task, c, problem) for c in sampled[i * k : (i + 1) * k]]
    return {
        f"{name}@{k}": float(np.mean([of(r.sample_rewards) for r in records])) for name, of in SAMPLED.items()
    }


def compare(base: EvalResult, other: EvalResult, eval_config: EvalConfig) -> dict[str, Any]:
    """`other` minus `base`: the reward delta with a paired bootstrap interval over problems, and the
    task metrics, latency and throughput deltas as point values (their per-problem values are not
    available in general, so only the reward gets an interval)."""
    if [r.id for r in base.records] != [r.id for r in other.records]:
        raise ValueError(f"'{base.label}' and '{other.label}' were not scored on the same problems")
    delta, low, high = paired_delta_ci(
        base.rewards,
        other.rewards,
        eval_config.bootstrap_samples,
        eval_config.bootstrap_seed,
        eval_config.confidence,
    )
    pairs = list(zip(base.rewards, other.rewards, strict=True))
    intervals: dict[str, dict[str, Any]] = {}
    k = len(base.records[0].sample_rewards) if base.records else 0
    if k and all(len(r.sample_rewards) == k for r in [*base.records, *other.records]):
        for name, of in SAMPLED.items():
            delta_k, low_k, high_k = paired_delta_ci(
                [float(of(r.sample_rewards)) for r in base.records],
                [float(of(r.sample_rewards)) for r in other.records],
                eval_config.bootstrap_samples,
                eval_config.bootstrap_seed,
                eval_config.confidence,
            )
            intervals[f"{name}@{k}"] = {
                "delta": delta_k,
                "ci_low": low_k,
                "ci_high": high_k,
                "significant": bool(low_k > 0 or high_k < 0),
            }
    return {
        "baseline": base.label,
        "model": other.label,
        "reward": {
            "delta": delta,
            "ci_low": low,
            "ci_high": high,
            "confidence": eval_config.confidence,
            "significant": bool(low > 0 or high < 0),
            "improved": sum(b > a for a, b in pairs),
            "regressed": sum(b < a for a, b in pairs),
        },
        "metrics": {m: v - base.metrics[m] for m, v in other.metrics.items() if m in base.metrics},
        "intervals": intervals,  # paired intervals of the sampled metrics (avg@k, pass@k), when drawn
        "latency_ms": {k: v - base.latency_ms[k] for k, v in other.latency_ms.items()},
        "tokens_per_second": other.tokens_per_second - base.tokens_per_second,
    }
