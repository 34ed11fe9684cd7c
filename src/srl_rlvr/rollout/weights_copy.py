"""A rollout copy of the policy: the weights the fast engine generates with, kept apart from the ones
the optimiser trains.

Two setups need it. Float32 master weights (`model.dtype: auto` keeps them, since bf16 updates of
1e-5 round away) would make every rollout matmul float32, a third of bf16's speed on an H200. And a
peft/LoRA policy has no plain weights at all: its linear layers add `scale * B(A(x))` in Python,
which the engine's written-out forward does not do. The copy is an ordinary model of the same
architecture in the rollout dtype with every adapter merged in (W + scale * B @ A, peft's own
`get_delta_weight`, so any rank, target set and fan-in/fan-out layout is handled as peft does; dropout
is a training-time op and has no place in a merged weight).

A policy sharded by FSDP2 (its parameters DTensors, each rank holding a slice) is the third case:
no rank has the weights to generate with, so each rank builds a whole copy from the policy's config
and `refresh()` gathers each parameter in turn (`full_tensor()`, an all-gather every rank joins in
the same order) into it, as verl's hybrid engine and OpenRLHF gather weights for their rollout
engines. Every rank then rolls out its own share of the batch.

`refresh()` writes the current policy into the copy in place (`copy_`), so the storage the engine's
CUDA graphs captured stays valid: call it after each optimiser step (the trainer does, before each
rollout batch). Its cost is one read of the policy and one write of the copy per step (plus the
all-gather when sharded); the memory is one more model in the rollout dtype (half the float32
policy's size for bf16), whole on every rank.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

ADAPTER_PREFIX = "base_model.model."  # where peft puts the wrapped model


def _is_peft(model: nn.Module) -> bool:
    return hasattr(model, "peft_config")


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 sharded `model` (its parameters are DTensors)."""
    return any(hasattr(p, "full_tensor") for p in model.parameters())


def _whole(param: torch.Tensor) -> torch.Tensor:
    return param.full_tensor() if hasattr(param, "full_tensor") else param


def _empty_copy(policy: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A model of the policy's architecture on this rank's device, weights to be written by refresh."""
    from transformers import AutoModelForCausalLM

    device = (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    with torch.device(device):
        return AutoModelForCausalLM.from_config(policy.config, dtype=dtype)


def _plain_name(name: str) -> str:
    """A peft parameter's name in the unwrapped model (adapter layers keep their base weight under
    `base_layer`)."""
    return name.removeprefix(ADAPTER_PREFIX).replace(".base_layer.", ".")


class RolloutCopy:
    """The policy's weights for rollouts: `dtype`, adapters merged, refreshed in place."""

    def __init__(self, policy: nn.Module, dtype: torch.dtype | None = None) -> None:
        self.policy = policy
        dtype = dtype or next(policy.parameters()).dtype
        if is_sharded(policy):
            if _is_peft(policy):
                raise ValueError("a rollout copy of a sharded LoRA policy is not supported")
            merged = _empty_copy(policy, dtype)
        else:
            # Built by copying the policy and casting: its peak is one more policy-sized model (in the
            # policy's dtype) for a moment, before the cast halves it.
            merged = copy.deepcopy(policy)
            if _is_peft(merged):
                merged = merged.merge_and_unload()  # a plain model of the same architecture
        self.model = merged.to(dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.refresh_s = 0.0  # the last refresh's wall time
        self.refresh()

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def nbytes(self) -> int:
        """The extra memory the copy takes."""
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    @torch.no_grad()
    def refresh(self) -> None:
        """Write the policy's current weights (adapters merged) into the copy's existing storage."""
        began = time.perf_counter()
        targets = dict(self.model.named_parameters())  # read each time: an engine may re-point them
        adapters = {}
        if _is_peft(self.policy):
            from peft.tuners.lora import LoraLayer

            adapters = {
                _plain_name(name) + ".weight": module
                for name, module in self.policy.named_modules()
                if isinstance(module, LoraLayer)
            }
        for name, param in self.policy.named_parameters():
            if "lora_" in name:
                continue
            target = targets.get(_plain_name(name))
            if target is None:
                raise KeyError(f"the rollout copy has no weight for {name}")
            layer = adapters.get(_plain_name(name))
            if layer is None:
                target.copy_(_whole(param))
                continue
            merged = param.float()
            for adapter in layer.active_adapters:
                if adapter in layer.lora_A and adapter not in layer.merged_adapters:
                    merged = merged + layer.get_delta_weight(adapter).float()
            target.copy_(merged)
        if self.model.config.tie_word_embeddings:
            self.model.tie_weights()
        if torch.cuda.is_available() and next(self.model.parameters()).is_cuda:
            torch.cuda.synchronize()
        self.refresh_s = time.perf_counter() - began
