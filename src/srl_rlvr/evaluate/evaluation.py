"""Score a model on held-out problems: the task's metrics, per-problem records, latency and throughput.

Every problem's completion and reward is kept, so slicing, failure examples and paired confidence
intervals between models (`compare`) are computed afterwards from the records, without generating
again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from srl_rlvr.config import EvalConfig
from srl_rlvr.errors import DataError
from srl_rlvr.evaluate.stats import paired_delta_ci
from srl_rlvr.modeling import chat_prompt
from srl_rlvr.rollout.generation import generate_timed
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
    generation = generate_timed(
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
    return EvalResult(
        label=label,
        model=source or label,
        task=task.name,
        metrics={
            "reward": float(np.mean(rewards)),
            **task.metrics(generation.completions, list(problems)),
        },
        latency_ms={f"p{q}": float(np.percentile(latencies_ms, q)) for q in PERCENTILES},
        tokens_per_second=sum(generation.num_tokens) / wall if wall > 0 else float("nan"),
        max_new_tokens=eval_config.max_new_tokens,
        records=records,
    )


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
        "metrics": {k: v - base.metrics[k] for k, v in other.metrics.items() if k in base.metrics},
        "latency_ms": {k: v - base.latency_ms[k] for k, v in other.latency_ms.items()},
        "tokens_per_second": other.tokens_per_second - base.tokens_per_second,
    }
