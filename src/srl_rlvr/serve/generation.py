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
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from srl_rlvr.rollout import FastEngine, SamplingParams, make_engine
from srl_rlvr.rollout.generation import eos_ids
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


_ENGINES: weakref.WeakKeyDictionary[Any, FastEngine] = weakref.WeakKeyDictionary()


def _fast_engine(model: Any, choice: Literal["auto", "hf", "fast"]) -> FastEngine | None:
    """The model's fast engine when `choice` picks one for it (its CUDA graphs are reused), else None."""
    if choice == "hf":
        return None
    if model not in _ENGINES:
        engine = make_engine(model, choice)
        if not isinstance(engine, FastEngine):
            return None
        _ENGINES[model] = engine
    return _ENGINES[model]


def _row_sampler(model: Any, tokenizer: Any, rows: Sequence[RowSampling]) -> RowSampler:
    device = next(model.parameters()).device
    vocab_size = model.get_output_embeddings().weight.shape[0]
    return RowSampler(rows, tokenizer, vocab_size, eos_ids(model, tokenizer), device)


def _new_tokens_fast(
    engine: FastEngine,
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new: int,
    temperature: float,
    sampler: RowSampler | None = None,
) -> tuple[list[list[int]], list[int]]:
    """The fast engine's tokens; with a `sampler`, it chooses each row's tokens (the engine then
    decodes eagerly: no CUDA graphs for such a batch)."""
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    params = SamplingParams(
        max_new_tokens=max_new,
        temperature=0.0 if sampler is not None else temperature,
        stop_token_ids=tuple(eos_ids(model, tokenizer)),
    )
    return engine.generate(ids, params, sampler).completion_ids, [len(i) for i in ids]


@torch.no_grad()
def generate_batch(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_tokens: Sequence[int],
    temperature: float,
    stops: Sequence[Sequence[str]],
    adapter_names: Sequence[str] | None = None,
    engine: Literal["auto", "hf", "fast"] = "auto",
    sampling: Sequence[RowSampling] | None = None,
) -> list[Completion]:
    """One completion per prompt; `adapter_names` (one per row, BASE_ADAPTER for none) needs a PeftModel.
    `engine` as in `srl_rlvr.rollout.make_engine` (auto: the fast engine on a GPU). `sampling`, one per
    row, overrides `temperature`."""
    rows = list(sampling) if sampling is not None else [RowSampling(temperature)] * len(prompts)
    plain = all(r.plain for r in rows) and len({r.temperature for r in rows}) == 1
    fast = _fast_engine(model, engine) if adapter_names is None else None
    if fast is not None:
        sampler = None if plain else _row_sampler(model, tokenizer, rows)
        new_tokens, prompt_tokens = _new_tokens_fast(
            fast, model, tokenizer, prompts, max(max_tokens), rows[0].temperature, sampler
        )
        traces = sampler.traces if sampler is not None else None
        return _completions(model, tokenizer, new_tokens, prompt_tokens, max_tokens, stops, traces)
    device = next(model.parameters()).device
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True).to(device)
    extra = {"adapter_names": list(adapter_names)} if adapter_names is not None else {}
    sampler = _row_sampler(model, tokenizer, rows)
    generated = model.generate(
        **batch,
        max_new_tokens=max(max_tokens),
        do_sample=False,  # the sampler has chosen: every other token is at -inf
        temperature=None,
        top_p=None,
        top_k=None,
        logits_processor=[sampler],
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )
    new_tokens = generated[:, batch["input_ids"].shape[1] :].cpu().tolist()
    prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
    return _completions(model, tokenizer, new_tokens, prompt_tokens, max_tokens, stops, sampler.traces)


def _completions(
    model: Any,
    tokenizer: Any,
    new_tokens: Sequence[Sequence[int]],
    prompt_tokens: Sequence[int],
    max_tokens: Sequence[int],
    stops: Sequence[Sequence[str]],
    traces: Sequence[RowTrace] | None = None,
) -> list[Completion]:
    """Each row cut at its own token budget, its first stop token and its first stop string (found in
    the decoded text, so a stop string split across tokens is found too)."""
    stop_ids = eos_ids(model, tokenizer)
    out = []
    for i, (row, limit, row_stops, n_prompt) in enumerate(
        zip(new_tokens, max_tokens, stops, prompt_tokens, strict=True)
    ):
        row = list(row[:limit])
        end = next((j for j, token in enumerate(row) if token in stop_ids), None)
        ids = row if end is None else row[:end]
        text, stopped = _cut(tokenizer.decode(ids, skip_special_tokens=True), row_stops)
        finish = "stop" if end is not None or stopped else "length"
        logprobs = None
        if traces is not None and traces[i].logprobs:
            logprobs = _token_logprobs(tokenizer, traces[i], _tokens_within(tokenizer, ids, len(text)))
        out.append(Completion(text, int(n_prompt), len(row) if end is None else end + 1, finish, logprobs))
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
