"""The rollout trainer SRL, the RLVR GRPO family and PPO all run on: TRL's GRPOTrainer plus our advantage rule.

TRL does the rollouts, the clipped objective, the KL term, multi-GPU and checkpoints. We add what it
lacks and both stages need:

- `reward_norm_method`: z_score is per-group (r-mean)/std as in GRPO; group is r-mean as in Dr. GRPO;
  none is the raw reward. TRL runs with `scale_rewards="none"` and advantages are recomputed from
  the rewards gathered over all processes, so groups split between GPUs stay whole.
- Per-row importance weights (a dataset column `weight`; SRL's step rewards) multiply the advantages.
- Dynamic sampling (DAPO): a group whose reward std is below `min_group_std` carries no signal; its
  completion mask is zeroed, so it leaves the loss, the KL and the token normaliser.
- Extra stop tokens (`stop_token_ids`): rollouts end there as at EOS, in generation and in the mask
  (SRL's `continue` style stops each rollout at the end of its line).
- A floor on token log-probabilities (`LOGP_FLOOR`). TRL's KL term is exp(ref - logp) - (ref - logp)
  - 1 on every position, masked afterwards by multiplication. On a padding position after a rollout
  stopped, logp can fall so low that exp() overflows, and inf x 0 is NaN: the loss and then the
  weights go NaN (seen in long SRL runs on a GPU). No sampled token has a log-probability near -50.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer

from srl_rlvr.config import Config, PolicyRLConfig
from srl_rlvr.errors import ConfigError
from srl_rlvr.train.loop import run_settings

LOGP_FLOOR = -50.0


def group_advantages(
    rewards: torch.Tensor, group_size: int, method: str, min_std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages per completion and the keep-mask of dynamic sampling, over a flat reward vector."""
    grouped = rewards.view(-1, group_size)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)
    if method == "z_score":
        advantages = (grouped - mean) / (std + 1e-4)
    elif method == "group":
        advantages = grouped - mean
    else:
        advantages = grouped
    keep = (std >= min_std).expand_as(grouped)
    return (advantages * keep).flatten(), keep.flatten()


class GroupTrainer(GRPOTrainer):
    """GRPOTrainer with our advantage rule: normalisation, importance weights, dynamic sampling."""

    def __init__(
        self, *args: Any, stage: PolicyRLConfig, stop_token_ids: Sequence[int] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.stage = stage
        if stop_token_ids:
            # TRL masks after the first of `eos_token_ids` and passes them to generate(); the
            # model's own generation config (saved with it) stays untouched.
            self.eos_token_ids = [*self.eos_token_ids, *stop_token_ids]
            self.generation_kwargs["eos_token_id"] = self.eos_token_ids
            self.generation_config.eos_token_id = self.eos_token_ids
        self._global_rewards: torch.Tensor | None = None
        self._global_weights: torch.Tensor | None = None

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any) -> Any:
        logps, *rest = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        return (logps.clamp(min=LOGP_FLOOR), *rest)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        weights = torch.tensor([float(x.get("weight", 1.0)) for x in inputs], device=rewards_per_func.device)
        self._global_weights = self.accelerator.gather(weights)
        reward_weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        self._global_rewards = (rewards_per_func * reward_weights).nansum(dim=1)
        return rewards_per_func

    def _local_slice(self, global_values: torch.Tensor, local: int) -> torch.Tensor:
        start = self.accelerator.process_index * local
        return global_values[start : start + local]

    def _generate_and_score_completions(self, inputs):  # type: ignore[no-untyped-def]
        output = super()._generate_and_score_completions(inputs)
        assert self._global_rewards is not None and self._global_weights is not None
        advantages, keep = group_advantages(
            self._global_rewards,
            self.num_generations,
            self.stage.reward_norm_method,
            self.stage.min_group_std,
        )
        local = len(output["advantages"])
        output["advantages"] = self._local_slice(advantages * self._global_weights, local)
        local_keep = self._local_slice(keep, local).to(output["completion_mask"].dtype)
        output["completion_mask"] = output["completion_mask"] * local_keep.unsqueeze(1)
        output["num_items_in_batch"] = self.accelerator.gather(output["completion_mask"].sum()).sum()
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["filtered_group_frac"].append(1.0 - keep.float().mean().item())
        return output


def grpo_args(
    config: Config, stage: PolicyRLConfig, out_dir: Path, loss_type: str, entropy_coef: float = 0.0
) -> GRPOConfig:
    """TRL's GRPOConfig from one of our stage sections (`srl:` or `rlvr:`)."""
    if stage.batch_size % stage.num_generations:
        raise ConfigError(
            f"batch_size ({stage.batch_size}) must be a multiple of num_generations "
            f"({stage.num_generations}): each step trains whole rollout groups"
        )
    return GRPOConfig(
        output_dir=str(out_dir),
        learning_rate=stage.learning_rate,
        num_train_epochs=stage.epochs,
        max_steps=stage.max_steps,
        per_device_train_batch_size=stage.batch_size,
        num_generations=stage.num_generations,
        max_completion_length=stage.max_completion_length,
        temperature=stage.temperature,
        beta=stage.kl_penalty_weight,
        epsilon=stage.clip_epsilon,
        epsilon_high=stage.clip_epsilon_high,
        mask_truncated_completions=stage.mask_truncated_completions,
        loss_type=loss_type,
        entropy_coef=entropy_coef,
        scale_rewards="none",
        max_grad_norm=stage.max_grad_norm,
        warmup_steps=stage.warmup_steps,
        save_steps=stage.save_steps,
        logging_steps=stage.logging_steps,
        logging_nan_inf_filter=False,  # a NaN loss must reach the logs and the stability guard
        **run_settings(config.seed, config.model),
        save_only_model=False,
    )
