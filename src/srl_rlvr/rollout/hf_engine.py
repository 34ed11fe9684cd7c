"""Hugging Face `generate` behind the fast engine's interface: any architecture, any device, LoRA.

The fallback wherever the fast engine cannot run (CPU under `auto`, unsupported architectures,
peft-wrapped or sharded models), and the one place our code calls `model.generate`. Log-probabilities
come from one teacher-forced forward pass over prompt + completion after generation (in row chunks,
so a 152k vocabulary does not hold every step's logits at once): the same definition the fast engine
returns, log_softmax(logits / temperature) of each generated token. `completion_ids` skips that pass
for callers that want text (`text.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import GenerationConfig, LogitsProcessor

from srl_rlvr.rollout.sampling import Rollout, SamplingParams, stop_length

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


class HFEngine:
    """`model.generate` with the request's sampling spelled out, returning a `Rollout`.

    Temperature, top-k, top-p and the stop tokens are always the request's. Options the request does
    not name, such as a repetition penalty saved in the model's generation config, still apply:
    transformers fills every unset option from the model's saved config."""

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
            # top_k 0 is off; None would let transformers fill in its default of 50
            options.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        return GenerationConfig(**options)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> Rollout:
        completions = self.completion_ids(prompts, params)
        return Rollout(completions, self.logprobs(prompts, completions, params.temperature or 1.0))

    @torch.no_grad()
    def completion_ids(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        processor: LogitsProcessor | None = None,
        adapter_names: Sequence[str] | None = None,
    ) -> list[list[int]]:
        """Each prompt's completion, cut after its first stop token. `processor` runs last on each
        step's logits (with `params` greedy it chooses the token, as serve/row_sampling.py does);
        `adapter_names`, one per row, picks each row's LoRA adapter of a PeftModel."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        ids, mask = _left_pad(prompts, self.pad_token_id, self.device)
        extra = {"adapter_names": list(adapter_names)} if adapter_names is not None else {}
        output = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            generation_config=self._generation_config(params),
            logits_processor=[processor] if processor is not None else None,
            **extra,
        )
        rows = output[:, ids.size(1) :].tolist()
        return [row[: stop_length(row, params.stop_token_ids)] for row in rows]

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
