"""Hugging Face `generate` behind the fast engine's interface: any architecture, any device, LoRA.

The fallback wherever the fast engine cannot run (CPU under `auto`, unsupported architectures,
peft-wrapped or sharded models). Log-probabilities come from one teacher-forced forward pass over
prompt + completion after generation (in row chunks, so a 152k vocabulary does not hold every step's
logits at once): the same definition the fast engine returns, log_softmax(logits / temperature) of
each generated token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import GenerationConfig

from srl_rlvr.rollout.sampling import Rollout, SamplingParams

LOGIT_BUDGET = 2**27  # float32 logits held at once in the log-prob pass (512 MiB)


def _left_pad(
    prompts: Sequence[Sequence[int]], pad: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad, dtype=torch.long)
    mask = torch.zeros(len(prompts), length, dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, length - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[i, length - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def _cut(ids: list[int], stops: Sequence[int]) -> list[int]:
    for i, token in enumerate(ids):
        if token in stops:
            return ids[: i + 1]
    return ids


class HFEngine:
    """`model.generate` with an explicit GenerationConfig (the model's saved defaults, such as a
    repetition penalty, do not leak in), returning a `Rollout`."""

    def __init__(self, model: nn.Module, pad_token_id: int | None = None) -> None:
        self.model = model
        config_pad = getattr(getattr(model, "generation_config", None), "pad_token_id", None)
        self.pad_token_id = pad_token_id if pad_token_id is not None else (config_pad or 0)
        self.warmup_s = 0.0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _generation_config(self, params: SamplingParams) -> GenerationConfig:
        options: dict = {
            "max_new_tokens": params.max_new_tokens,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": list(params.stop_token_ids) or None,
            "do_sample": not params.greedy,
        }
        if not params.greedy:
            options.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or None)
        return GenerationConfig(**options)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> Rollout:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        ids, mask = _left_pad(prompts, self.pad_token_id, self.device)
        output = self.model.generate(
            input_ids=ids, attention_mask=mask, generation_config=self._generation_config(params)
        )
        completions = [_cut(row, params.stop_token_ids) for row in output[:, ids.size(1) :].tolist()]
        return Rollout(completions, self.logprobs(prompts, completions, params.temperature or 1.0))

    @torch.no_grad()
    def logprobs(
        self, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], temperature: float = 1.0
    ) -> list[list[float]]:
        """log_softmax(logits / temperature) of each completion token, teacher-forced."""
        vocab = self.model.get_output_embeddings().weight.size(0)
        longest = max(len(p) + len(c) for p, c in zip(prompts, completions, strict=True))
        chunk = max(1, LOGIT_BUDGET // (longest * vocab))
        result: list[list[float]] = []
        for start in range(0, len(prompts), chunk):
            rows = [
                list(p) + list(c)
                for p, c in zip(
                    prompts[start : start + chunk], completions[start : start + chunk], strict=True
                )
            ]
            ids, mask = _left_pad(rows, self.pad_token_id, self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
            logp = (logits[:, :-1].float() / temperature).log_softmax(-1)
            logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
            for row, completion in zip(logp.tolist(), completions[start : start + chunk], strict=True):
                result.append(row[len(row) - len(completion) :] if completion else [])
        return result
