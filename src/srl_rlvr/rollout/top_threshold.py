"""Top-k and top-p without sorting the vocabulary: each row's cut found by a radix select.

Both filters keep an upper set of a row's scores. A token stays under top-k iff fewer than k tokens
score higher, and under top-p iff the softmax mass of the tokens scoring higher is below top_p (over
the top-k survivors, renormalised: Hugging Face's order of warpers). Both conditions only grow with
the score, so the kept set is {i : score_i >= cut} and a sampler needs the cut, not the order. A full
sort of 152k entries a row was the whole cost of top-p in the engine (30k against 62k tokens/s at
batch 256 on an H100).

The cut is found exactly by a radix select over the scores' bit patterns read as ordered integers
(the way torch.topk's radix select finds a k-th value): one byte a pass, each pass a weighted
histogram (256 bins a row, `scatter_add_`) of the next byte of the keys still in the running, whose
suffix sums say which bin holds the cut. bfloat16/float16 logits take two passes, float32 four.
Static shapes and no host sync, so the search sits inside a captured CUDA graph. FlashInfer's
samplers reach the same set by rejection against pivots (Ye et al. 2025, "FlashInfer", sorting-free
sampling), a data-dependent loop inside one kernel; in PyTorch ops a fixed number of rejection
rounds could not be exact, a fixed number of radix passes is.

Ties: every token equal to the cut stays (a sort-based sampler keeps whichever tied tokens its sort
put first), so the two differ only when tied scores straddle the cut.
"""

from __future__ import annotations

import torch

RADIX = 8  # bits a pass: 256 bins a row
# Each run of SEGMENT vocabulary entries has bins of its own, summed after the scatter: a row's keys
# crowd into a few bins (logits of one magnitude share their top byte), and atomic adds to one
# address serialise (on an H100, 256 x 152k bf16 scores through one set of bins a row took 8.2 ms
# for the search and draw, against 5.0 ms for the sort).
SEGMENT = 4096


def order_keys(logits: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Non-negative integer keys ordered as the floats are, and their width in bits (int32 keys for
    16-bit floats, int64 for float32). Flipping every bit of a negative float and the sign bit of
    the rest turns IEEE order into unsigned-integer order."""
    if logits.dtype in (torch.bfloat16, torch.float16):
        bits, raw = 16, logits.view(torch.int16).to(torch.int32)  # sign-extended
    elif logits.dtype == torch.float32:
        bits, raw = 32, logits.view(torch.int32).to(torch.int64)
    else:
        raise ValueError(f"top-k/top-p keys need bfloat16, float16 or float32 logits, not {logits.dtype}")
    # A negative raw value shifts to all ones: ~raw; a non-negative one gets its sign bit set.
    return raw ^ ((raw >> (bits - 1)) | (1 << (bits - 1))), bits


def radix_cut(keys: torch.Tensor, weights: torch.Tensor, target: torch.Tensor, bits: int) -> torch.Tensor:
    """Per row, the smallest key v present such that the weight of the keys above v is below
    `target` (rows, 1): with unit weights and target k the k-th largest key, with probabilities and
    target top_p the smallest key top-p keeps. `target` must be positive. Returns (rows, 1) keys.

    Each pass bins the keys by their next byte under the prefix chosen so far, into 258 bins: bin 0
    the keys below the prefix, 1-256 the prefix's bytes, 257 the keys above it."""
    (rows, vocab), bins = keys.shape, 1 << RADIX
    digits = torch.arange(1, bins + 1, device=keys.device)
    segments = -(-vocab // SEGMENT)
    segment = torch.arange(vocab, device=keys.device) // SEGMENT * (bins + 2)
    prefix = torch.zeros(rows, 1, dtype=keys.dtype, device=keys.device)  # bytes chosen so far
    for shift in range(bits - RADIX, -1, -RADIX):
        # ((key - start) >> shift) + 1, clamped: the prefix's keys land in 1..256.
        start = (prefix << (shift + RADIX)) - (1 << shift)
        index = ((keys - start) >> shift).clamp_(0, bins + 1) + segment
        histogram = torch.zeros(rows, segments * (bins + 2), dtype=weights.dtype, device=keys.device)
        histogram = histogram.scatter_add_(1, index.long(), weights).view(rows, segments, -1).sum(1)
        higher = (histogram.flip(-1).cumsum(-1).flip(-1) - histogram)[:, 1:-1]  # weight above each bin
        # The lowest bin whose higher weight is below target; bin 256 always qualifies (its higher
        # weight is the keys above the prefix, below target by the previous pass). An empty bin is
        # chosen only at the bottom, when all the prefix's weight is below target: every key stays.
        chosen = torch.where(higher < target, digits, bins + 1).amin(dim=-1, keepdim=True) - 1
        prefix = (prefix << RADIX) | chosen.to(keys.dtype)
    return prefix


def kept_mask(
    logits: torch.Tensor, probs: torch.Tensor, top_k: int, use_top_p: bool, top_p: torch.Tensor
) -> torch.Tensor:
    """Which tokens top-k and then top-p keep (rows, vocab), from the logits' order and the softmax
    `probs` (float32, after temperature). `top_p` is a one-element device tensor."""
    keys, bits = order_keys(logits)
    kept = torch.ones_like(keys, dtype=torch.bool)
    target = top_p.to(probs.dtype).expand(logits.size(0), 1)
    if top_k and top_k < logits.size(-1):
        counts = torch.ones_like(probs)
        kept = keys >= radix_cut(keys, counts, torch.full_like(target, float(top_k)), bits)
        # top-p over the top-k survivors renormalised: a share top_p of their mass
        target = target * (probs * kept).sum(dim=-1, keepdim=True)
    if use_top_p:
        kept = kept & (keys >= radix_cut(keys, probs, target, bits))
    return kept
