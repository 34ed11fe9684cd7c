"""What to sample and how: the request (`SamplingParams`), the result (`Rollout`), and the GPU sampler.

The sampler never leaves the device and never synchronises with the host, so it can sit inside a
captured CUDA graph. It follows Hugging Face's order of logits warpers (temperature, then top-k,
then top-p over the renormalised survivors) and draws with the Gumbel-max trick (the argmax of the
softmax probabilities, each divided by an Exp(1) draw, is a sample of the softmax; Gumbel 1954; vLLM
samples this way): no sort and no cumulative sum when top-k/top-p are off, the GRPO default, and
no sort of the vocabulary when they are on: top-p's cut comes from a radix select
(`top_threshold.py`, `sample_cut`), a small top-k from torch.topk; `sample_sorted` keeps the
sort-based draw as the reference.

The log-probability returned for each token is log_softmax(logits / temperature) of the chosen
token, before top-k/top-p filtering: the quantity TRL's GRPO computes for the same token in its
training forward pass (it divides the logits by the temperature and does not filter), so the two
can be compared or used for importance weights directly. Greedy decoding uses temperature 1.

`chunked_sample` is the same draw in a form a compiler fuses well (`fused_sampler`, used with
`fused_ops`): inverse-CDF sampling in two stages over vocabulary chunks, with the log-probability
from the same pass. `sample`'s six passes over the (rows, vocab) scores cost ~0.55 ms a decode step at
batch 256 with a 152k vocabulary on an H200.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import torch

from srl_rlvr.rollout.top_threshold import kept_mask


@dataclass(frozen=True)
class SamplingParams:
    """One generation request. `temperature == 0` is greedy decoding."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop_token_ids: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1 (got {self.max_new_tokens})")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"invalid sampling parameters: {self}")
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Rollout:
    """Completions of one `generate` call, in prompt order.

    Each completion ends with its first stop token (kept, as TRL and HF `generate` keep EOS) or at
    `max_new_tokens`; `logprobs[i][j]` belongs to `completion_ids[i][j]`.
    """

    completion_ids: list[list[int]]
    logprobs: list[list[float]]


def stop_length(ids: Sequence[int], stops: Collection[int]) -> int:
    """How many of `ids` a completion keeps: up to and including the first stop token, else all of
    them (TRL's completion mask; what HF `generate` writes after a stop is padding). The one
    stop-at-EOS rule on the host; the fast engine applies the same rule on the device (`_result`)."""
    return next((i + 1 for i, token in enumerate(ids) if token in stops), len(ids))


def _race(probs: torch.Tensor) -> torch.Tensor:
    """A sample of each row of `probs`: argmax of p / E with E ~ Exp(1) is the Gumbel-max trick
    in exponential form (what torch.multinomial does for one sample, minus its host-side validity
    check, which would break graph capture). CUDA's exponential_ never returns 0."""
    return (probs / torch.empty_like(probs).exponential_()).argmax(dim=-1)


TOP_K_SELECT = 1024  # top-k up to this: torch.topk (a radix select of k, then a sort of k only)


def sample(
    logits: torch.Tensor,
    greedy: bool,
    top_k: int,
    use_top_p: bool,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token and its log-probability for each row of `logits` (rows, vocab).

    `greedy`, `top_k` and `use_top_p` change the kernels and so are Python values (part of a graph's
    key); `temperature` and `top_p` are one-element float32 device tensors, so a captured graph
    serves any value without recapture. Every pass over (rows, vocab) costs ~0.05 ms at 256 x 152k
    in float32, so the plain path makes six: scale, softmax, noise, divide, argmax. No path sorts
    the vocabulary: a small top-k goes through torch.topk (top-p then over its k survivors), any
    other top-k/top-p through the radix cut (`sample_cut`), which measured faster than the sort it
    replaced (`sample_sorted`, kept as the reference): top-p 0.9 over 256 x 152k bf16 logits in a
    CUDA graph, 3.66 vs 4.96 ms a call on an H100 (BENCHMARKS.md, rollout speed).
    """
    if not greedy and top_k and top_k <= TOP_K_SELECT and top_k < logits.size(-1):
        return sample_sorted(logits, greedy, top_k, use_top_p, temperature, top_p)
    return sample_cut(logits, greedy, top_k, use_top_p, temperature, top_p)


def sample_cut(
    logits: torch.Tensor,
    greedy: bool,
    top_k: int,
    use_top_p: bool,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`sample` with top-k/top-p always by each row's cut from a radix select (`top_threshold.py`),
    then a race over the survivors."""
    if greedy:
        token = logits.argmax(dim=-1)
        probs = logits.softmax(dim=-1, dtype=torch.float32)
    else:
        scores = logits / temperature  # a float32 tensor divisor promotes bf16 logits to float32
        probs = scores.softmax(dim=-1)
        if top_k or use_top_p:
            kept = kept_mask(logits, probs, top_k, use_top_p, top_p)
            token = _race(probs.masked_fill(~kept, 0.0))  # the top token is always kept, p > 0
        else:
            token = _race(probs)
    logp = probs.gather(-1, token[:, None]).squeeze(-1).log()
    return token, logp


def sample_sorted(
    logits: torch.Tensor,
    greedy: bool,
    top_k: int,
    use_top_p: bool,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`sample` with top-k/top-p by sorting (torch.topk, or a full sort of the vocabulary for top-p
    alone), as Hugging Face's warpers do: the reference the radix cut is tested against, its
    benchmark baseline, and `sample`'s path for a small top-k."""
    if greedy or not (top_k or use_top_p):
        return sample_cut(logits, greedy, top_k, use_top_p, temperature, top_p)
    scores = logits / temperature
    probs = scores.softmax(dim=-1)
    if top_k and top_k < scores.size(-1):
        kept, index = scores.topk(top_k, dim=-1)  # sorted, largest first
    else:
        kept, index = scores.sort(dim=-1, descending=True)
    if use_top_p:
        kept_probs = kept.softmax(dim=-1)
        mass_before = kept_probs.cumsum(dim=-1) - kept_probs  # the first token always stays
        kept = kept.masked_fill(mass_before >= top_p, float("-inf"))
    token = index.gather(-1, _race(kept.softmax(dim=-1))[:, None]).squeeze(-1)
    logp = probs.gather(-1, token[:, None]).squeeze(-1).log()
    return token, logp


def chunked_sample(
    logits: torch.Tensor,
    greedy: bool,
    top_k: int,
    use_top_p: bool,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    chunks: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`sample` without top-k/top-p, by inverse-CDF in two stages: each row's vocabulary is cut into
    `chunks` (a divisor of its size); one uniform draw picks a chunk by its share of the softmax
    mass, then a token inside it. Only the chosen chunk is scanned, so the work is one read of the
    logits plus rows x vocab / chunks, and no random number per vocabulary entry (a Gumbel-max draw
    needs one per entry, and on an H200 generating 39M of them cost ~0.3 ms a step)."""
    rows, vocab = logits.shape
    return _chunked_draw(logits.view(rows, chunks, vocab // chunks), greedy, temperature)


def _chunked_draw(
    logits: torch.Tensor, greedy: bool, temperature: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`chunked_sample` over logits already viewed as (rows, chunks, vocab / chunks): the chunk count
    is then a static shape to a compiler, not an integer argument it might make dynamic. Greedy
    takes the argmax and temperature 1."""
    rows, chunks, part = logits.shape
    scale = torch.ones_like(temperature) if greedy else temperature
    scores = logits.float() / scale
    top = scores.amax(dim=-1).amax(dim=-1)  # (rows,)
    mass = (scores - top[:, None, None]).exp().sum(dim=-1)  # (rows, chunks), unnormalised
    total = mass.sum(dim=-1)
    if greedy:
        token = scores.view(rows, chunks * part).argmax(dim=-1)
    else:
        target = torch.rand_like(total) * total
        before = mass.cumsum(dim=-1)
        # The first chunk whose cumulative mass passes the target, so a zero-mass chunk is never
        # chosen, not even for a draw of exactly 0; rounding past the end picks the heaviest chunk.
        chunk = (before <= target[:, None]).sum(dim=-1)
        chunk = torch.where(chunk < chunks, chunk, mass.argmax(dim=-1))
        rest = target - (before.gather(-1, chunk[:, None]) - mass.gather(-1, chunk[:, None])).squeeze(-1)
        inside = scores.gather(1, chunk[:, None, None].expand(rows, 1, part)).squeeze(1)
        weights = (inside - top[:, None]).exp()
        index = (weights.cumsum(dim=-1) <= rest[:, None]).sum(dim=-1)
        index = torch.where(index < part, index, weights.argmax(dim=-1))
        token = chunk * part + index
    chosen = scores.view(rows, chunks * part).gather(-1, token[:, None]).squeeze(-1)
    return token, chosen - top - total.log()


def sampler_chunks(vocab: int, most: int = 32) -> int:
    """The largest divisor of `vocab` up to `most` (1 for a prime vocabulary)."""
    return next(c for c in range(min(most, vocab), 0, -1) if vocab % c == 0)


_compiled: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None


def fused_sampler() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """`sample`'s signature: `chunked_sample` compiled where it applies (no top-k/top-p), `sample`
    elsewhere. The row count is marked dynamic, so one compilation serves every batch."""
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(_chunked_draw, fullgraph=True)

    def draw(
        logits: torch.Tensor,
        greedy: bool,
        top_k: int,
        use_top_p: bool,
        temperature: torch.Tensor,
        top_p: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if top_k or use_top_p:
            return sample(logits, greedy, top_k, use_top_p, temperature, top_p)
        rows, vocab = logits.shape
        chunks = sampler_chunks(vocab)
        viewed = logits.view(rows, chunks, vocab // chunks)
        torch._dynamo.mark_dynamic(viewed, 0)
        assert _compiled is not None
        return _compiled(viewed, greedy, temperature)

    return draw
