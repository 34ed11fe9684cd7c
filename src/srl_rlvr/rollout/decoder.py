"""The Llama/Qwen2-family forward pass, written out over the live weights of a Hugging Face model.

Why not call the HF model: its decode step allocates a growing cache, builds masks and dispatches
through layers of Python on every token, so a 0.5B model spends most of a step on the host (HF
`generate`: ~80 ms a step, 3.2k tokens/s at batch 256 on an H100; `benchmarks/rollout.py`). Written
out, one decode step is a fixed sequence of kernels over fixed buffers, which `engine.py` captures
once as a CUDA graph and replays (3.9 ms a step at batch 256).

Weights are read from the HF modules (`layer.self_attn.q_proj.weight`, ...) at call time, never
copied: an optimiser step that updates them in place is seen by the next rollout with no sync, and
a captured graph reads the same storage. The numerics follow transformers' `modeling_qwen2.py` /
`modeling_llama.py` op for op (RMSNorm in float32, rotary tables from the model's own
`rotary_emb`, bf16 matmuls), so greedy decoding matches HF `generate`; the elementwise ops can be
fused instead (`ops.py`), trading the last bit of bf16 agreement for fewer kernels.

Attention over the cache folds GQA into the query length: the `g` query heads that share one KV
head attend as `g` query rows of that head (q: rows, kv_heads, g, head_dim), so the cache is read
once per KV head with no `repeat_kv` copy (the layout FlashDecoding-style kernels use).

Packed weights (`pack=True`): each layer's q/k/v weights become slices of one tensor, and gate/up of
another, so a decode step runs one matmul for q, k and v and one for gate and up. At the small row
counts of decoding, each matmul costs a fixed few microseconds however small its weight: on an H200
at batch 256 (0.5B), q, k and v took 12.3 us a layer as three matmuls and 4.5 us as one, gate and up
13.6 and 10.0 us. The model's parameters are re-pointed at the slices, so it stays a working HF model
and an in-place update of a slice (a rollout copy's refresh) reaches the packed tensor; but they are
new tensors, so only a model no optimiser holds may be packed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from srl_rlvr.rollout import attention
from srl_rlvr.rollout.cache import KVCache
from srl_rlvr.rollout.ops import PLAIN_OPS, fused_ops

SUPPORTED_TYPES = ("llama", "qwen2", "qwen3", "mistral")


def unsupported_reason(model: nn.Module) -> str | None:
    """Why the written-out forward cannot run `model` (None when it can)."""
    if hasattr(model, "peft_config"):
        # Adapter state (enabled, merged, dropout, several adapters) is Python control flow in peft's
        # modules; a captured graph would freeze whatever it was at capture time.
        return "a peft/LoRA-wrapped model"
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_TYPES:
        return f"model type {model_type!r} (supported: {', '.join(SUPPORTED_TYPES)})"
    base = getattr(model, "model", None)
    if not all(hasattr(base, name) for name in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return "a module layout other than transformers' CausalLM (model.model.layers, lm_head)"
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        return "sliding-window attention layers"
    if model_type == "mistral" and getattr(config, "sliding_window", None) is not None:
        return "sliding-window attention"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r}"
    rope_type = getattr(base.rotary_emb, "rope_type", "default")
    if "dynamic" in rope_type or rope_type == "longrope":
        return f"rope type {rope_type!r} (its frequencies depend on the sequence length)"
    linears = [
        getattr(layer.self_attn, n) for layer in base.layers for n in ("q_proj", "k_proj", "v_proj", "o_proj")
    ]
    linears += [getattr(layer.mlp, n) for layer in base.layers for n in ("gate_proj", "up_proj", "down_proj")]
    if any(type(m).forward is not nn.Linear.forward for m in [*linears, model.lm_head]):
        return "quantised or adapted linear layers"
    if any(hasattr(p, "full_tensor") for p in model.parameters()):
        return "sharded (FSDP2) weights: a rollout copy gathers them"
    if any(p.device.type == "meta" or not p.is_floating_point() for p in model.parameters()):
        return "offloaded or quantised weights"
    if len({p.device for p in model.parameters()}) > 1:
        return "weights spread over several devices"
    return None


def linear(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    return F.linear(x, module.weight, module.bias)


@dataclass(frozen=True)
class PackedLayer:
    """One layer's q/k/v (rows: q, then k, then v) and gate/up (gate, then up) weights as one tensor
    each; None where that layer's modules could not be packed (q/k/v with some biases but not all)."""

    qkv: torch.Tensor | None
    qkv_bias: torch.Tensor | None
    gate_up: torch.Tensor


def _repoint(modules: list[nn.Module], name: str, packed: torch.Tensor) -> None:
    start = 0
    for module in modules:
        rows = getattr(module, name).size(0)
        setattr(module, name, nn.Parameter(packed[start : start + rows], requires_grad=False))
        start += rows


@torch.no_grad()
def pack_layer(layer: nn.Module) -> PackedLayer:
    """Concatenate the layer's q/k/v and gate/up weights and re-point its modules at the slices."""
    attn, mlp = layer.self_attn, layer.mlp
    qkv_modules = [attn.q_proj, attn.k_proj, attn.v_proj]
    biases = [m.bias for m in qkv_modules]
    qkv = qkv_bias = None
    if all(b is None for b in biases) or all(b is not None for b in biases):
        qkv = torch.cat([m.weight for m in qkv_modules])
        _repoint(qkv_modules, "weight", qkv)
        if biases[0] is not None:
            qkv_bias = torch.cat(biases)
            _repoint(qkv_modules, "bias", qkv_bias)
    gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
    _repoint([mlp.gate_proj, mlp.up_proj], "weight", gate_up)
    return PackedLayer(qkv, qkv_bias, gate_up)


class Decoder:
    """Prefill and decode steps of a supported HF causal LM, reading its modules on every call.

    `fused`: use the torch.compile-fused elementwise ops (`ops.py`) and the Triton decode attention
    (`attention.py`) where it applies; CUDA only. `pack`: pack each layer's q/k/v and gate/up
    weights (see the module docstring; the model's parameters change). `kernel_attention` overrides
    the attention choice (tests run the kernel on CPU through Triton's interpreter).
    """

    def __init__(
        self, model: nn.Module, fused: bool = False, pack: bool = False, kernel_attention: bool | None = None
    ) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"the fast rollout engine does not support {reason}")
        config = model.config
        base = model.model
        self.embed, self.layers, self.norm = base.embed_tokens, list(base.layers), base.norm
        self.rotary, self.lm_head = base.rotary_emb, model.lm_head
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.num_heads
        self.scaling = self.layers[0].self_attn.scaling
        self.qk_norm = hasattr(self.layers[0].self_attn, "q_norm")  # Qwen3
        self.ops = fused_ops() if fused and self.device.type == "cuda" else PLAIN_OPS
        self.packed = [pack_layer(layer) for layer in self.layers] if pack else None
        self.q_size = self.num_heads * self.head_dim
        self.kv_size = self.num_kv_heads * self.head_dim
        self.cos = self.sin = torch.empty(0)
        if kernel_attention is None:
            kernel_attention = fused and attention.available(self.device, self.dtype, self.head_dim)
        self.kernel_attention = kernel_attention

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def weight_pointers(self) -> tuple[int, ...]:
        """Where every weight lives. Graphs hold these addresses: a change (weights replaced, not
        updated in place) means the graphs must be captured again."""
        modules = [self.embed, self.norm, self.lm_head, *self.layers]
        return tuple(p.data_ptr() for m in modules for p in m.parameters())

    def build_rope_tables(self, length: int) -> None:
        """cos and sign-folded sin (`ops.rope`) for positions 0..length-1, from the model's own rotary
        module: HF's exact values for every static rope type (default, linear, llama3, yarn)."""
        positions = torch.arange(length, device=self.device)[None]
        cos, sin = self.rotary(self.embed.weight, positions)
        half = self.head_dim // 2
        self.cos, self.sin = cos[0], torch.cat((-sin[0, :, :half], sin[0, :, half:]), dim=-1)

    def _forward(
        self, x: torch.Tensor, tokens: int, cos: torch.Tensor, sin: torch.Tensor, attend: Callable
    ) -> torch.Tensor:
        """The layer stack over hidden states x (rows x tokens, hidden), flat so that the fused ops
        see one varying dimension (one compilation for every batch and prompt length); cos/sin are
        (rows x tokens, 1, head_dim). `attend(i, q, k, v)` gets layer i's (rows, heads, tokens,
        head_dim) tensors, stores k and v, and returns the attention output (rows x tokens, heads x
        head_dim). Returns the final-normed hidden states."""
        ops, flat = self.ops, x.size(0)
        shape = (flat // tokens, tokens)
        first = self.layers[0].input_layernorm
        h = ops.rms_norm(x, first.weight, first.variance_epsilon)
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            packed = self.packed[i] if self.packed else None
            if packed is not None and packed.qkv is not None:
                sizes = [self.q_size, self.kv_size, self.kv_size]
                q, k, v = F.linear(h, packed.qkv, packed.qkv_bias).split(sizes, dim=-1)
            else:
                q, k, v = linear(h, attn.q_proj), linear(h, attn.k_proj), linear(h, attn.v_proj)
            q = q.view(flat, self.num_heads, self.head_dim)
            k = k.view(flat, self.num_kv_heads, self.head_dim)
            v = v.view(*shape, self.num_kv_heads, self.head_dim)
            if self.qk_norm:
                q = ops.rms_norm(q, attn.q_norm.weight, attn.q_norm.variance_epsilon)
                k = ops.rms_norm(k, attn.k_norm.weight, attn.k_norm.variance_epsilon)
            q, k = ops.rope(q, k, cos, sin)
            q = q.view(*shape, self.num_heads, self.head_dim).transpose(1, 2)
            k = k.view(*shape, self.num_kv_heads, self.head_dim).transpose(1, 2)
            out = attend(i, q, k, v.transpose(1, 2))
            post = layer.post_attention_layernorm
            x, h = ops.add_rms_norm(x, linear(out, attn.o_proj), post.weight, post.variance_epsilon)
            mlp = layer.mlp
            if packed is not None:
                up = ops.silu_mul(*F.linear(h, packed.gate_up).chunk(2, dim=-1))
            else:
                up = ops.silu_mul(linear(h, mlp.gate_proj), linear(h, mlp.up_proj))
            following = self.layers[i + 1].input_layernorm if i + 1 < len(self.layers) else self.norm
            x, h = ops.add_rms_norm(
                x, linear(up, mlp.down_proj), following.weight, following.variance_epsilon
            )
        return h

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h.to(self.lm_head.weight.dtype), self.lm_head.weight, self.lm_head.bias)

    def prefill(self, cache: KVCache, rows: slice, ids: torch.Tensor, pads: torch.Tensor) -> torch.Tensor:
        """Run left-padded prompts `ids` (rows, P) into cache rows `rows`, columns 0..P-1; return the
        logits of each row's last position (rows, vocab). `pads` is each row's left padding."""
        count, length = ids.shape
        columns = torch.arange(length, device=ids.device)
        positions = (columns[None] - pads[:, None]).clamp(min=0)
        real = columns[None] >= pads[:, None]
        cache.bias[rows, :length] = torch.where(real, 0.0, float("-inf")).to(cache.bias.dtype)
        # Causal over real keys; a padding query sees itself so no softmax row is empty (NaN).
        causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()
        allowed = (causal[None] & real[:, None, :]) | torch.eye(length, dtype=torch.bool, device=ids.device)
        mask = torch.zeros(allowed.shape, dtype=self.dtype, device=ids.device)
        mask = mask.masked_fill(~allowed, float("-inf"))[:, None]
        groups = self.num_heads // self.num_kv_heads

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            cache.kv[i, 0, rows, :, :length] = k
            cache.kv[i, 1, rows, :, :length] = v
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling)
            return out.transpose(1, 2).reshape(count * length, -1)

        flat = positions.flatten()
        cos, sin = self.cos[flat][:, None], self.sin[flat][:, None]
        h = self._forward(F.embedding(ids.flatten(), self.embed.weight), length, cos, sin, attend)
        return self._logits(h.view(count, length, -1)[:, -1])

    def decode(
        self, cache: KVCache, ids: torch.Tensor, positions: torch.Tensor, slot: torch.Tensor, width: int
    ) -> torch.Tensor:
        """One token per row: `ids` (rows,) at rope `positions`, written to cache column `slot` (a
        one-element device tensor, so a graph replays it at any column); attention reads columns
        0..width-1. Returns logits (rows, vocab). Host-sync free, so it can be captured."""
        count = ids.size(0)
        bias = cache.bias[:count]
        bias.index_fill_(1, slot, 0.0)
        mask = bias[:, None, None, :width]
        groups = self.num_heads // self.num_kv_heads

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            if self.kernel_attention:
                return attention.decode_attention(
                    q[:, :, 0], k[:, :, 0], v[:, :, 0], cache.kv[i], cache.bias, slot, width, self.scaling
                )
            keys, values = cache.kv[i, 0, :count], cache.kv[i, 1, :count]
            keys.index_copy_(2, slot, k)
            values.index_copy_(2, slot, v)
            q = q.reshape(count, self.num_kv_heads, groups, self.head_dim)
            out = F.scaled_dot_product_attention(
                q, keys[:, :, :width], values[:, :, :width], attn_mask=mask, scale=self.scaling
            )
            return out.reshape(count, -1)

        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        return self._logits(self._forward(F.embedding(ids, self.embed.weight), 1, cos, sin, attend))
