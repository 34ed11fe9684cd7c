"""Which engine generates for a model: the fast one where it can run and gains, else HF `generate`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, Protocol

from torch import nn

from srl_rlvr.rollout.decoder import unsupported_reason
from srl_rlvr.rollout.engine import FastEngine
from srl_rlvr.rollout.hf_engine import HFEngine
from srl_rlvr.rollout.sampling import Rollout, SamplingParams

log = logging.getLogger(__name__)

EngineChoice = Literal["auto", "hf", "fast"]


class RolloutEngine(Protocol):
    warmup_s: float

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> Rollout: ...


def choose_engine(model: nn.Module, choice: EngineChoice = "auto") -> tuple[Literal["fast", "hf"], str]:
    """Which engine `choice` means for `model`, and why.

    auto: fast on a CUDA device for a supported architecture, else hf (on a CPU the fast engine has
    no graphs to gain from). fast: the fast engine wherever it can run, CPU included (eagerly), else
    hf. hf: always hf.
    """
    if choice == "hf":
        return "hf", "requested"
    reason = unsupported_reason(model)
    if reason is not None:
        return "hf", f"the fast engine does not support {reason}"
    if choice == "auto" and next(model.parameters()).device.type != "cuda":
        return "hf", "not on a CUDA device"
    return "fast", "supported architecture" + (" on CUDA" if choice == "auto" else "")


def make_engine(
    model: nn.Module,
    choice: EngineChoice = "auto",
    cuda_graphs: bool = True,
    fused: bool = False,
    pad_token_id: int | None = None,
) -> FastEngine | HFEngine:
    """The engine `choose_engine` picks, logging a fallback the caller asked to avoid."""
    name, why = choose_engine(model, choice)
    if name == "hf" and choice == "fast":
        log.warning("rollout engine 'fast' requested, using HF generate: %s", why)
    if name == "fast":
        return FastEngine(model, cuda_graphs=cuda_graphs, fused=fused)
    return HFEngine(model, pad_token_id=pad_token_id)
