"""Dynamic sampling with refill: train only on rollout groups whose rewards differ, at a full batch size.

DAPO (Yu et al. 2025, §3.2 "Dynamic Sampling") and SRL (Deng et al. 2025, §4.2) drop every group whose
rewards are (near-)equal, since its advantages carry no signal, and "continuously sample and filter
until the batch is filled". Dropping alone shrinks the batch to the informative groups, so the
gradient's size and noise change from step to step; refilling keeps the batch at its configured size.
TRL's GRPOTrainer has no refill (it generates exactly one batch per optimiser step), so this module
holds the pieces the rollout trainer (`train/group_trainer.py`) uses to draw more:

- `informative_groups`: which groups to keep (population std of the verifier's outcomes, or SRL's
  step rewards, above a threshold: the SRL paper's criterion, DAPO's accuracy filter), over the rows
  that train (truncated completions masked out of the loss do not count).
- `PromptDraws`: an endless shuffled stream of training rows to draw extra prompts from.
- `merge_rollouts` / `take_rows`: join the scored outputs of several draws (each padded to its own
  width) and pick the rows of the chosen groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# Keys of TRL's scored-rollout dict whose tensors are padded on the left (prompts), the rest on the right.
_LEFT_PADDED = ("prompt_ids", "prompt_mask")


def informative_groups(
    rewards: torch.Tensor, group_size: int, min_std: float, live: torch.Tensor | None = None
) -> torch.Tensor:
    """One bool per group of `group_size` consecutive rewards: the population std of its live rows
    (`live`, one bool a row; default all) exceeds `min_std`."""
    grouped = rewards.view(-1, group_size)
    weight = torch.ones_like(grouped) if live is None else live.view(-1, group_size).to(grouped.dtype)
    count = weight.sum(dim=1, keepdim=True)
    mean = (grouped * weight).sum(dim=1, keepdim=True) / count.clamp(min=1)
    variance = ((grouped - mean) ** 2 * weight).sum(dim=1) / count.squeeze(1).clamp(min=1)
    return variance.sqrt() > min_std


class PromptDraws:
    """Rows of a dataset in an endless series of shuffled passes, each row repeated `group_size`
    times (one group); every process gets its own order from `seed` and its rank."""

    def __init__(self, dataset: Any, group_size: int, seed: int, rank: int) -> None:
        self.dataset, self.group_size = dataset, group_size
        self.generator = torch.Generator().manual_seed(seed * 1_000_003 + rank)
        self.order: list[int] = []

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed run draws the prompts this one would have drawn."""
        return {"generator": self.generator.get_state(), "order": list(self.order)}

    def restore(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = list(state["order"])

    def draw(self, groups: int) -> list[dict[str, Any]]:
        rows = []
        for _ in range(groups):
            if not self.order:
                self.order = torch.randperm(len(self.dataset), generator=self.generator).tolist()
            rows.extend([self.dataset[self.order.pop()]] * self.group_size)
        return rows


def _pad_to(tensor: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    missing = width - tensor.size(1)
    if missing <= 0:
        return tensor
    padding = tensor.new_full((tensor.size(0), missing), value)
    return torch.cat([padding, tensor] if left else [tensor, padding], dim=1)


def merge_rollouts(parts: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """One scored-rollout dict from several (same keys), rows in order; 2-D tensors are padded to the
    widest part (prompts on the left, completions on the right). Scalars are dropped: the caller
    recomputes what depends on the whole batch (`num_items_in_batch`)."""
    merged: dict[str, Any] = {}
    for key, first in parts[0].items():
        values = [part[key] for part in parts]
        if isinstance(first, torch.Tensor) and first.dim() == 0:
            continue
        if isinstance(first, torch.Tensor) and first.dim() == 2:
            width = max(v.size(1) for v in values)
            fill = pad_token_id if key.endswith("_ids") else 0
            values = [_pad_to(v, width, fill, left=key in _LEFT_PADDED) for v in values]
            merged[key] = torch.cat(values, dim=0)
        elif isinstance(first, torch.Tensor):
            merged[key] = torch.cat(values, dim=0)
        else:
            merged[key] = [item for value in values for item in value]
    return merged


def take_rows(rollouts: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
    """The given rows of every per-row entry of a scored-rollout dict."""
    picked = rows.tolist()
    return {
        key: value[rows] if isinstance(value, torch.Tensor) else [value[i] for i in picked]
        for key, value in rollouts.items()
    }


def chosen_groups(keep: torch.Tensor, wanted: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `wanted` groups a step trains on: informative groups first, in draw order, then (only when
    the draw budget ran out) uninformative ones as masked filler. Returns their indices and whether
    each is informative."""
    order = torch.cat([torch.nonzero(keep).flatten(), torch.nonzero(~keep).flatten()])[:wanted]
    return order, keep[order]
