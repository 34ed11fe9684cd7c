"""The Triton decode attention (rollout/attention.py), run on the CPU through Triton's interpreter:
the cache write and the attention against PyTorch's SDPA, and whole greedy rollouts against HF.

The interpreter's bfloat16 matmul is wrong (a Triton limitation, not the kernel's), so these run in
float16 and float32; the H200 benchmark checks bfloat16 (BENCHMARKS.md). conftest.py sets
TRITON_INTERPRET."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from srl_rlvr.modeling import byte_tokenizer, tiny_model
from srl_rlvr.rollout import FastEngine, SamplingParams
from tests.test_rollout import hf_greedy, lively, mixed_prompts

pytest.importorskip("triton")
from srl_rlvr.rollout.attention import decode_attention


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_the_kernel_writes_the_step_and_attends_like_sdpa_over_padded_rows(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    rows, heads, kv_heads, head_dim, columns, slot, width = 5, 14, 2, 64, 192, 100, 128
    cache = torch.randn(2, rows + 3, kv_heads, columns, head_dim).to(dtype)  # more rows than used
    bias = torch.full((rows + 3, columns), float("-inf"), dtype=dtype)
    for row, pad in enumerate([0, 3, 70, 10, 1]):  # row 2's first block is padding only
        bias[row, pad:slot] = 0.0
    bias[:, slot] = 0.0
    qkv = torch.randn(rows, (heads + 2 * kv_heads) * head_dim).to(dtype)  # strided views, as in the engine
    q, k, v = qkv.split([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim], dim=-1)
    q = q.view(rows, heads, head_dim)
    k, v = k.view(rows, kv_heads, head_dim), v.view(rows, kv_heads, head_dim)
    expected_cache = cache.clone()
    expected_cache[0, :rows, :, slot], expected_cache[1, :rows, :, slot] = k, v

    out = decode_attention(q, k, v, cache, bias, torch.tensor([slot]), width, scale=0.125)

    assert torch.equal(cache, expected_cache)
    grouped = q.float().view(rows, kv_heads, heads // kv_heads, head_dim)
    keys, values = (expected_cache[i, :rows, :, :width].float() for i in (0, 1))
    mask = bias[:rows, None, None, :width].float()
    expected = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=mask, scale=0.125)
    tolerance = 1e-3 if dtype == torch.float16 else 1e-5
    assert torch.allclose(out.float(), expected.reshape(rows, -1), atol=tolerance)


@pytest.mark.parametrize("kv_heads", [2, 1], ids=["two-query-groups", "one-kv-head"])
def test_an_engine_on_the_kernel_gives_hf_greedy_tokens(kv_heads: int) -> None:
    model = lively(tiny_model(byte_tokenizer(), num_attention_heads=4, num_key_value_heads=kv_heads))
    prompts = mixed_prompts()
    engine = FastEngine(model, window=16)
    engine.decoder.kernel_attention = True
    rollout = engine.generate(prompts, SamplingParams(max_new_tokens=24, temperature=0))
    assert rollout.completion_ids == hf_greedy(model, prompts, 24)
