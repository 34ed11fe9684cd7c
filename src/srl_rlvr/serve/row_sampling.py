"""Each row of a batch sampled its own way inside HF `generate`: the last logits processor picks the token.

HF `generate` shares one sampling configuration and one random stream across a batch, but requests in
a batch differ: temperature, top_p, a seed, penalties, a grammar, log-probs. So `RowSampler` does the
whole choice per row (penalties -> grammar mask -> temperature -> top_p -> draw, from the row's own
`torch.Generator` when it has a seed) and hands `generate` (run greedily) logits with every token but
the chosen one at -inf. The order follows OpenAI's documentation of the penalties (subtracted from the
logits: frequency times the token's count so far, presence once if it occurred) and HF's order of
warpers (temperature, then top-p over the renormalised survivors).

Log-probs are the model's own: log_softmax of the logits the model produced, before penalties, the
grammar mask, temperature or top_p (vLLM's default), so they say how likely the model found each token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor

from srl_rlvr.serve.sampling_params import RowSampling
from srl_rlvr.serve.structured import allocate_bitmask, apply_bitmask, new_matcher


@dataclass
class RowTrace:
    """What a row chose: token ids, their log-probs, and the top alternatives (id, log-prob) per step."""

    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)


class RowSampler(LogitsProcessor):
    """Put last in `generate`'s processors with `do_sample=False`; `traces` hold each row's choices."""

    def __init__(
        self,
        rows: Sequence[RowSampling],
        tokenizer: Any,
        vocab_size: int,
        stop_ids: Sequence[int],
        device: torch.device,
    ) -> None:
        self.rows = list(rows)
        self.stop_ids = set(stop_ids)
        self.generators = [
            None if r.seed is None else torch.Generator(device=device).manual_seed(r.seed) for r in rows
        ]
        self.matchers = [
            None if r.grammar is None else new_matcher(r.grammar, tokenizer, vocab_size, list(stop_ids))
            for r in rows
        ]
        self.bitmask = allocate_bitmask(len(rows), vocab_size) if any(self.matchers) else None
        self.penalised = any(r.frequency_penalty or r.presence_penalty for r in rows)
        self.counts: torch.Tensor | None = None
        self.done = [False] * len(rows)
        self.traces = [RowTrace() for _ in rows]
        self.temperature = torch.tensor([r.temperature or 1.0 for r in rows], device=device).unsqueeze(1)
        self.frequency = torch.tensor([r.frequency_penalty for r in rows], device=device).unsqueeze(1)
        self.presence = torch.tensor([r.presence_penalty for r in rows], device=device).unsqueeze(1)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float()
        if self.counts is None:
            self.counts = torch.zeros_like(scores)
        else:
            self._follow(input_ids[:, -1].tolist())
        model_logprobs = (
            scores.log_softmax(dim=-1) if any(r.logprobs is not None for r in self.rows) else None
        )
        if self.penalised:
            scores = scores - self.frequency * self.counts - self.presence * (self.counts > 0).float()
        self._mask(scores)
        chosen = self._choose(scores)
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(chosen)), chosen] = 0.0
        self._record(chosen, model_logprobs)
        return out

    def _follow(self, last: list[int]) -> None:
        """The token `generate` appended for each row: the penalties' counts and the grammar advance."""
        for i, token in enumerate(last):
            if self.done[i]:
                continue
            if self.penalised:
                assert self.counts is not None
                self.counts[i, token] += 1
            matcher = self.matchers[i]
            if matcher is not None and not matcher.is_terminated():
                matcher.accept_token(token)
            if token in self.stop_ids:
                self.done[i] = True

    def _mask(self, scores: torch.Tensor) -> None:
        rows = [i for i, m in enumerate(self.matchers) if m is not None and not self.done[i]]
        if not rows:
            return
        for i in rows:
            matcher = self.matchers[i]
            assert matcher is not None
            matcher.fill_next_token_bitmask(self.bitmask, i)
        apply_bitmask(scores, self.bitmask, rows)

    def _choose(self, scores: torch.Tensor) -> list[int]:
        probs = (scores / self.temperature).softmax(dim=-1)
        top_p = [r.top_p for r in self.rows]
        if any(p < 1.0 for p in top_p):
            probs = _top_p(probs, torch.tensor(top_p, device=probs.device).unsqueeze(1))
        chosen = []
        for i, row in enumerate(self.rows):
            if row.temperature == 0 or self.done[i]:
                chosen.append(int(scores[i].argmax()))
            else:
                chosen.append(int(torch.multinomial(probs[i], 1, generator=self.generators[i])))
        return chosen

    def _record(self, chosen: list[int], model_logprobs: torch.Tensor | None) -> None:
        for i, token in enumerate(chosen):
            if self.done[i]:
                continue
            trace = self.traces[i]
            trace.ids.append(token)
            k = self.rows[i].logprobs
            if k is None or model_logprobs is None:
                continue
            trace.logprobs.append(float(model_logprobs[i, token]))
            if k > 0:
                values, ids = model_logprobs[i].topk(k)
                trace.top.append(list(zip(ids.tolist(), values.tolist(), strict=True)))
            else:
                trace.top.append([])


def _top_p(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p (always the first)."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)
