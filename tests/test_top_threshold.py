"""Top-k/top-p without a sort: the radix cut keeps the tokens the definition keeps, and its draws
follow the sort-based sampler's distribution (a wrong cut, off by one token, is caught)."""

import pytest
import torch

from srl_rlvr.rollout.sampling import _race, sample, sample_cut, sample_sorted
from srl_rlvr.rollout.top_threshold import SEGMENT, kept_mask, order_keys, radix_cut


def defined_kept(scores: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """The kept set straight from the definition (quadratic, small rows only): fewer than k tokens
    score higher, and the mass scoring higher is below top_p of the top-k survivors' mass."""
    higher = scores[:, None, :] > scores[:, :, None]  # [r, i, j]: j scores above i
    count = higher.sum(-1)
    kept = count < top_k if top_k else torch.ones_like(scores, dtype=torch.bool)
    probs = scores.softmax(-1)
    survivors = (probs * kept).sum(-1, keepdim=True)
    return kept & ((higher * probs[:, None, :]).sum(-1) < top_p * survivors)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("top_k", "top_p"), [(0, 0.9), (0, 0.3), (7, 1.0), (25, 0.8), (1, 0.5)])
def test_the_radix_cut_keeps_exactly_the_tokens_the_definition_keeps(
    dtype: torch.dtype, top_k: int, top_p: float
) -> None:
    torch.manual_seed(1)
    logits = (torch.randn(64, 300) * torch.rand(64, 1) * 6).to(dtype)
    logits[:4, 100:] = float("-inf")  # masked tokens (a grammar): never kept by mass, still counted
    scores = logits.float() / 0.8
    kept = kept_mask(logits, scores.softmax(-1), top_k, top_p < 1, torch.tensor([top_p]))
    assert torch.equal(kept, defined_kept(scores, top_k, top_p))


def test_order_keys_order_as_the_floats_do() -> None:
    values = torch.tensor([float("-inf"), -3e38, -2.5, -1e-30, 0.0, 1e-30, 0.5, 2.5, 3e38, float("inf")])
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        keys, bits = order_keys(values.to(dtype))
        assert (keys >= 0).all() and (keys < 2**bits).all()
        assert torch.equal(keys.argsort(), values.to(dtype).float().argsort())


def test_a_cut_above_every_key_keeps_the_highest_and_a_target_above_the_total_keeps_all() -> None:
    keys, bits = order_keys(torch.tensor([[3.0, 1.0, 2.0, 2.0]]))
    ones = torch.ones(1, 4)
    assert keys[0, 0] == radix_cut(keys, ones, torch.tensor([[1.0]]), bits).item()  # top-1
    assert keys[0, 2] == radix_cut(keys, ones, torch.tensor([[2.0]]), bits).item()  # ties stay
    assert radix_cut(keys, ones, torch.tensor([[9.0]]), bits).item() <= keys.min()


SAMPLES = 6_000
# Each row falls off geometrically (every token ~0.55 of the one before), so the kept sets are a few
# tokens and the last kept one holds at least 0.08 of their mass. Total variation between 6,000
# draws and their distribution is then ~0.01 on average (noise alone); 0.035 is above that and below
# what dropping the boundary token costs.
BOUND = 0.035


def frequencies(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.bincount(tokens, minlength=vocab).float() / len(tokens)


def off_by_one_cut(
    logits: torch.Tensor,
    greedy: bool,
    top_k: int,
    use_top_p: bool,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A deliberately wrong sampler: the right kept set less its lowest token (the cut one key too
    high), the top token always kept."""
    probs = (logits / temperature).softmax(-1)
    kept = kept_mask(logits, probs, top_k, use_top_p, top_p)
    keys, _ = order_keys(logits)
    lowest = torch.where(kept, keys, keys.amax(-1, keepdim=True)).amin(-1, keepdim=True)
    kept = (kept & (keys > lowest)) | (keys == keys.amax(-1, keepdim=True))
    token = _race(probs.masked_fill(~kept, 0.0))
    return token, probs.gather(-1, token[:, None]).squeeze(-1).log()


@pytest.mark.parametrize(
    ("top_k", "top_p", "temperature"), [(0, 0.9, 1.0), (3, 1.0, 1.0), (0, 0.6, 0.7), (5, 0.8, 1.3)]
)
def test_draws_follow_the_sort_based_sampler_and_an_off_by_one_cut_is_caught(
    top_k: int, top_p: float, temperature: float
) -> None:
    generator = torch.Generator().manual_seed(3)
    vocab = 64
    row = -0.6 * torch.arange(vocab) + 0.01 * torch.randn(vocab, generator=generator)
    row = row[torch.randperm(vocab, generator=generator)]  # the order of the ids plays no part
    logits = row.expand(SAMPLES, -1).contiguous()
    args = (False, top_k, top_p < 1, torch.tensor([temperature]), torch.tensor([top_p]))
    exact = defined_kept(row[None] / temperature, top_k, top_p)[0]
    target = (row / temperature).softmax(-1) * exact
    target /= target.sum()
    variation = {}
    samplers = {"radix": sample_cut, "default": sample, "sorted": sample_sorted, "wrong": off_by_one_cut}
    for name, sampler in samplers.items():
        torch.manual_seed(0)
        tokens, logps = sampler(logits, *args)
        variation[name] = 0.5 * (frequencies(tokens, vocab) - target).abs().sum().item()
        if name != "wrong":
            full = (row / temperature).log_softmax(-1)  # log-probs before filtering, as documented
            assert torch.allclose(logps, full[tokens], atol=1e-5)
    assert max(variation["radix"], variation["default"], variation["sorted"]) < BOUND, variation
    assert variation["wrong"] > BOUND, variation


@pytest.mark.parametrize(("top_k", "top_p"), [(0, 0.9), (3000, 1.0), (5000, 0.5)])
def test_a_vocabulary_wider_than_one_bin_segment_keeps_the_sorted_prefix(top_k: int, top_p: float) -> None:
    torch.manual_seed(2)
    logits = torch.randn(6, 3 * SEGMENT + 123) * torch.tensor([[0.5], [1.0], [2.0], [3.0], [5.0], [8.0]])
    probs = logits.softmax(-1)
    ordered, index = logits.sort(-1, descending=True)
    survivors = ordered.softmax(-1) if not top_k else ordered[:, :top_k].softmax(-1)
    prefix = (survivors.cumsum(-1) - survivors < top_p) | (top_p == 1.0)  # 1.0: no top-p at all
    expected = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, index[:, : prefix.size(1)], prefix)
    assert torch.equal(kept_mask(logits, probs, top_k, top_p < 1, torch.tensor([top_p])), expected)
