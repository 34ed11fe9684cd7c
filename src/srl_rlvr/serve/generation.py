"""Prompts in, completions out: the one function the server generates through.

A batch of prompts that share a temperature; each row keeps its own token budget and stop strings.
A plain model on a GPU goes through the fast rollout engine (`srl_rlvr.rollout`: static KV cache,
CUDA-graph decode steps), one engine per model, kept while the model lives. Rows of one batch may
use different LoRA adapters of the same base (peft's `adapter_names`); such a batch, and everything
on a CPU, goes through HF `generate`. A batch in which any row asks for more than a shared
temperature (seed, top_p, log-probs, penalties, a grammar) is sampled row by row by
`row_sampling.RowSampler`, on either engine (the fast one then decodes without CUDA graphs).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from srl_rlvr.rollout import EngineChoice, FastEngine, Generation, eos_ids, generate_texts
from srl_rlvr.rollout.text import engine_for
from srl_rlvr.serve.row_sampling import RowSampler, RowTrace
from srl_rlvr.serve.sampling_params import RowSampling

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed-adapter batch


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's log-prob under the model, with the most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    logprobs: tuple[TokenLogprob, ...] | None = None  # when the request asked for them


def context_length(model: Any) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


def _cut(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    ends = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(ends)], True) if ends else (text, False)


def cut_at_stops(c: Completion, stops: Sequence[str]) -> Completion:
    """`c` cut at its first stop string (finish_reason "stop"), its log-probs with it; else unchanged."""
    text, stopped = _cut(c.text, stops)
    if not stopped:
        return c
    logprobs = c.logprobs
    if logprobs is not None:
        lengths = list(itertools.accumulate(len(t.token) for t in logprobs))
        logprobs = logprobs[: next((i for i, n in enumerate(lengths) if n >= len(text)), len(logprobs)) + 1]
        logprobs = logprobs if text else ()
    return replace(c, text=text, finish_reason="stop", logprobs=logprobs)


def _row_sampler(model: Any, tokenizer: Any, rows: Sequence[RowSampling]) -> RowSampler:
    device = next(model.parameters()).device
    vocab_size = model.get_output_embeddings().weight.shape[0]
    return RowSampler(rows, tokenizer, vocab_size, eos_ids(model, tokenizer), device)


def generate_batch(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_tokens: Sequence[int],
    temperature: float,
    stops: Sequence[Sequence[str]],
    adapter_names: Sequence[str] | None = None,
    engine: EngineChoice = "auto",
    sampling: Sequence[RowSampling] | None = None,
) -> list[Completion]:
    """One completion per prompt; `adapter_names` (one per row, BASE_ADAPTER for none) needs a PeftModel.
    `engine` as in `srl_rlvr.rollout.make_engine` (auto: the fast engine on a GPU). `sampling`, one per
    row, overrides `temperature`."""
    rows = list(sampling) if sampling is not None else [RowSampling(temperature)] * len(prompts)
    plain = all(r.plain for r in rows) and len({r.temperature for r in rows}) == 1
    # HF `generate` shares one sampling configuration across a batch, so there the sampler always
    # chooses; the fast engine samples a plain batch itself, inside its CUDA graphs.
    fast = adapter_names is None and isinstance(engine_for(model, engine, tokenizer.pad_token_id), FastEngine)
    sampler = None if fast and plain else _row_sampler(model, tokenizer, rows)
    generation = generate_texts(
        model,
        tokenizer,
        prompts,
        max_tokens,
        temperature=rows[0].temperature if sampler is None else 0.0,
        batch_size=None,
        engine=engine,
        adapter_names=adapter_names,
        processor=sampler,
    )
    traces = sampler.traces if sampler is not None else None
    return _completions(tokenizer, generation, stops, traces)


def _completions(
    tokenizer: Any,
    generation: Generation,
    stops: Sequence[Sequence[str]],
    traces: Sequence[RowTrace] | None = None,
) -> list[Completion]:
    """Each row cut at its first stop string too (found in the decoded text, so a stop string split
    across tokens is found too); the engine has cut it at its token budget and first stop token."""
    out = []
    for i, row_stops in enumerate(stops):
        ids, ended = generation.completion_ids[i], generation.stopped[i]
        text, stopped = _cut(generation.completions[i], row_stops)
        logprobs = None
        if traces is not None and traces[i].logprobs:
            kept = ids[:-1] if ended else ids
            logprobs = _token_logprobs(tokenizer, traces[i], _tokens_within(tokenizer, kept, len(text)))
        finish = "stop" if ended or stopped else "length"
        out.append(Completion(text, generation.prompt_tokens[i], len(ids), finish, logprobs))
    return out


def _tokens_within(tokenizer: Any, ids: Sequence[int], chars: int) -> int:
    """How many of `ids` it takes to write the first `chars` characters of their text."""
    if len(tokenizer.decode(ids, skip_special_tokens=True)) <= chars:  # not cut at a stop string
        return len(ids)
    for k in range(len(ids) + 1):
        if len(tokenizer.decode(ids[:k], skip_special_tokens=True)) >= chars:
            return k
    return len(ids)


def _token_logprobs(tokenizer: Any, trace: RowTrace, count: int) -> tuple[TokenLogprob, ...]:
    def word(token: int) -> str:
        return tokenizer.decode([token])

    return tuple(
        TokenLogprob(word(token), logprob, tuple((word(t), lp) for t, lp in top))
        for token, logprob, top in zip(trace.ids[:count], trace.logprobs, trace.top, strict=False)
    )
