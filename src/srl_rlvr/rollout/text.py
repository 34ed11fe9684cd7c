"""Prompts in, completions out: the one way our code generates text with a model.

Evaluation, the stage gate, validation during training, DPO's preference sampling, a local teacher,
distillation's teacher answers and the server all call `generate_texts`. It tokenises, runs an
engine (HF `generate` by default, so scores stay on the reference the fast engine's parity tests
compare against; the server asks for `auto`: the fast engine on a GPU) and decodes. Training
rollouts call an engine with token ids instead (TRL hands them over tokenised). Greedy unless a
temperature is given; `num_return_sequences` repeats each prompt in place, which draws what HF's
`num_return_sequences` draws (it repeats the rows the same way), batch for batch.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor

from srl_rlvr.rollout.choice import EngineChoice, make_engine
from srl_rlvr.rollout.engine import FastEngine
from srl_rlvr.rollout.hf_engine import HFEngine
from srl_rlvr.rollout.sampling import SamplingParams


@dataclass(frozen=True)
class Generation:
    """Completions in prompt order, a prompt's `num_return_sequences` together, and what they cost.

    `completion_ids[i]` ends with its first stop token (kept) or at its token budget; `completions[i]`
    is its text without the stop token and special tokens; `batch_seconds[i]` is the wall time of the
    batch row i came from (tokenise, generate, decode), which is what a caller of that batch waited."""

    completions: list[str]
    completion_ids: list[list[int]]
    prompt_tokens: list[int]
    stopped: list[bool]  # ended at a stop token, not at its budget
    batch_seconds: list[float]

    @property
    def num_tokens(self) -> list[int]:
        """Generated tokens per completion, up to and including its stop token, no padding."""
        return [len(ids) for ids in self.completion_ids]


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """EOS ids that end a completion: an instruct model's generation config may list several."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {i for i in ids if i is not None}


# One fast engine per model, kept while the model lives: its CUDA graphs are reused across calls.
_FAST_ENGINES: weakref.WeakKeyDictionary[Any, FastEngine] = weakref.WeakKeyDictionary()


def engine_for(model: Any, choice: EngineChoice, pad_token_id: int | None) -> FastEngine | HFEngine:
    """The engine `choice` picks for `model` (see `choose_engine`); a fast one is made once."""
    if choice != "hf" and model in _FAST_ENGINES:
        return _FAST_ENGINES[model]
    engine = make_engine(model, choice, pad_token_id=pad_token_id)
    if isinstance(engine, FastEngine):
        _FAST_ENGINES[model] = engine
    return engine


@torch.no_grad()
def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int | Sequence[int],
    *,
    temperature: float = 0.0,
    num_return_sequences: int = 1,
    batch_size: int | None = 32,
    engine: EngineChoice = "hf",
    adapter_names: Sequence[str] | None = None,
    processor: LogitsProcessor | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> Generation:
    """Completions of `prompts`, `num_return_sequences` each, consecutive (prompt-major).

    `max_new_tokens`: one budget, or one per prompt (the batch runs to the largest, each row is cut
    at its own). `batch_size`: prompts a batch (None: all at once). `adapter_names`, one per prompt,
    needs a PeftModel and runs on HF `generate`. `processor` (HF's LogitsProcessor, holding state
    for every row, so all prompts run as one batch) chooses each token of a greedy call: per-row
    sampling and grammars in serving. `on_batch(prompts done, prompts in all)` after each batch."""
    k = num_return_sequences
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(budgets) != len(prompts) or (adapter_names is not None and len(adapter_names) != len(prompts)):
        raise ValueError("max_new_tokens and adapter_names need one value a prompt")
    step = len(prompts) if batch_size is None else batch_size
    if processor is not None and step < len(prompts):
        raise ValueError("a processor holds every row's state: generate all prompts in one batch")
    chosen = engine_for(model, "hf" if adapter_names is not None else engine, tokenizer.pad_token_id)
    stops = eos_ids(model, tokenizer)
    was_training = model.training
    model.eval()
    out = Generation([], [], [], [], [])
    try:
        for start in range(0, len(prompts), max(step, 1)):
            began = time.perf_counter()
            end = min(start + step, len(prompts))
            prompt_ids = [row for row in tokenizer(list(prompts[start:end]))["input_ids"] for _ in range(k)]
            limits = [limit for limit in budgets[start:end] for _ in range(k)]
            params = SamplingParams(max(limits), temperature, stop_token_ids=tuple(sorted(stops)))
            if isinstance(chosen, FastEngine):
                rows = chosen.generate(prompt_ids, params, processor).completion_ids
            else:
                names = (
                    None if adapter_names is None else [n for n in adapter_names[start:end] for _ in range(k)]
                )
                rows = chosen.completion_ids(prompt_ids, params, processor, names)
            # each engine has cut its rows after the first stop token; each row now gets its own budget
            rows = [row[:limit] for row, limit in zip(rows, limits, strict=True)]
            stopped = [bool(row) and row[-1] in stops for row in rows]
            out.completions.extend(
                tokenizer.batch_decode(
                    [row[:-1] if ended else row for row, ended in zip(rows, stopped, strict=True)],
                    skip_special_tokens=True,
                )
            )
            out.completion_ids.extend(rows)
            out.prompt_tokens.extend(len(row) for row in prompt_ids)
            out.stopped.extend(stopped)
            out.batch_seconds.extend([time.perf_counter() - began] * len(rows))
            if on_batch is not None:
                on_batch(end, len(prompts))
    finally:
        model.train(was_training)
    return out
