"""A decode step's attention as one Triton kernel: store the step's key and value, attend over the
used cache width.

Why our own kernel: at one query token a row, PyTorch's SDPA backends are built for long queries.
On an H200 cuDNN's kernel read the cache at ~1 TB/s (25 µs a layer at width 256 against 7 µs at
full bandwidth), and the cache writes before it were two more launches a layer (`index_copy_`,
127 µs a step over 48 launches at batch 256). FlashAttention's `flash_attn_with_kvcache` does both
in one kernel, but it is a CUDA build we cannot ship; this is the same idea in ~80 lines of Triton,
which comes with PyTorch on CUDA.

One program per (row, KV head) serves the head's whole query group (grouped-query attention reads
each key once for all its query heads): it writes the new key and value at the cache column
`slot`, then runs an online softmax (Milakov and Gimelshein 2018, as in FlashAttention) over the
row's first `width` columns in blocks, with the cache's additive bias (0 for a row's tokens, -inf
for padding and unwritten columns). A 0.5B model at batch 256 gives 512 programs, enough to fill an
H200, so the width is not split across programs (flash-decoding's split-K); at width <= a few
hundred that split would only add a reduction.

The engine uses it with fused ops on CUDA for 16-bit caches (`available`). `TRITON_INTERPRET=1`
runs the same kernel on CPU tensors (the tests do, in float16 and float32: the interpreter's bfloat16
`dot` is wrong); the kernel is compiled at first use, so that setting can come after import.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # PyTorch's CPU builds come without Triton
    triton = None

BLOCK = 64  # cache columns a loop iteration reads: the engine's width granularity


def available(device: torch.device, dtype: torch.dtype, head_dim: int) -> bool:
    """Whether the engine uses the kernel: CUDA, a 16-bit cache, a power-of-two head size >= 16."""
    return (
        triton is not None
        and device.type == "cuda"
        and dtype in (torch.bfloat16, torch.float16)
        and head_dim >= 16
        and head_dim & (head_dim - 1) == 0
    )


@functools.cache
def _kernel() -> Callable:
    return triton.jit(_decode_attention)


if triton is not None:

    def _decode_attention(
        q_ptr,
        k_ptr,
        v_ptr,
        cache_ptr,
        bias_ptr,
        slot_ptr,
        out_ptr,
        width,
        scale_log2,
        q_row,
        q_head,
        k_row,
        k_head,
        v_row,
        v_head,
        c_kv,
        c_row,
        c_head,
        c_col,
        bias_row,
        out_row,
        GROUPS: tl.constexpr,
        GROUPS_PAD: tl.constexpr,
        HEAD_DIM: tl.constexpr,
        BLOCK_N: tl.constexpr,
    ):
        row = tl.program_id(0)
        head = tl.program_id(1)
        dims = tl.arange(0, HEAD_DIM)
        slot = tl.load(slot_ptr)
        keys = cache_ptr + row * c_row + head * c_head
        values = keys + c_kv
        tl.store(keys + slot * c_col + dims, tl.load(k_ptr + row * k_row + head * k_head + dims))
        tl.store(values + slot * c_col + dims, tl.load(v_ptr + row * v_row + head * v_head + dims))
        tl.debug_barrier()  # the block's own stores are visible to its loads after a barrier

        group = tl.arange(0, GROUPS_PAD)
        real = group < GROUPS
        heads = head * GROUPS + group
        q = tl.load(q_ptr + row * q_row + heads[:, None] * q_head + dims[None], mask=real[:, None], other=0.0)
        best = tl.full([GROUPS_PAD], float("-inf"), tl.float32)
        total = tl.zeros([GROUPS_PAD], tl.float32)
        acc = tl.zeros([GROUPS_PAD, HEAD_DIM], tl.float32)
        for start in range(0, width, BLOCK_N):
            columns = start + tl.arange(0, BLOCK_N)
            inside = columns < width
            k = tl.load(keys + columns[:, None] * c_col + dims[None], mask=inside[:, None], other=0.0)
            bias = tl.load(bias_ptr + row * bias_row + columns, mask=inside, other=float("-inf"))
            scores = tl.dot(q, tl.trans(k)) * scale_log2 + bias.to(tl.float32)[None] * 1.4426950408889634
            new_best = tl.maximum(best, tl.max(scores, 1))
            shift = tl.where(new_best == float("-inf"), 0.0, new_best)  # a block of padding only
            p = tl.exp2(scores - shift[:, None])
            alpha = tl.exp2(best - shift)
            v = tl.load(values + columns[:, None] * c_col + dims[None], mask=inside[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            total = total * alpha + tl.sum(p, 1)
            best = new_best
        out = acc / total[:, None]
        target = out_ptr + row * out_row + heads[:, None] * HEAD_DIM + dims[None]
        tl.store(target, out.to(out_ptr.dtype.element_ty), mask=real[:, None])


def decode_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kv: torch.Tensor,
    bias: torch.Tensor,
    slot: torch.Tensor,
    width: int,
    scale: float,
) -> torch.Tensor:
    """Store k and v (rows, kv_heads, head_dim) at cache column `slot` (a one-element device tensor)
    of `kv` (2, rows', kv_heads, columns, head_dim: one layer of `KVCache.kv`), then attend q (rows,
    heads, head_dim) over columns 0..width-1 with `bias` (rows', columns). Returns (rows, heads x
    head_dim). Strides may be anything with a contiguous last dimension."""
    rows, heads, head_dim = q.shape
    kv_heads = k.size(1)
    groups = heads // kv_heads
    for tensor in (q, k, v, kv, bias):
        assert tensor.stride(-1) == 1, "the last dimension must be contiguous"
    out = torch.empty(rows, heads * head_dim, dtype=q.dtype, device=q.device)
    _kernel()[(rows, kv_heads)](
        q,
        k,
        v,
        kv,
        bias,
        slot,
        out,
        width,
        scale * 1.4426950408889634,  # softmax in base 2: exp(x) = exp2(x log2 e)
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        kv.stride(0),
        kv.stride(1),
        kv.stride(2),
        kv.stride(3),
        bias.stride(0),
        out.stride(0),
        GROUPS=groups,
        GROUPS_PAD=max(16, triton.next_power_of_2(groups)),
        HEAD_DIM=head_dim,
        BLOCK_N=BLOCK,
    )
    return out
