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
- Fast rollouts (`stage.rollout.engine`): TRL's HF `generate` path is replaced by `srl_rlvr.rollout`'s
  engine where it applies (`auto`: CUDA, a Llama/Qwen2-family model, no LoRA/FSDP/DeepSpeed/vLLM, and
  sampling options it implements). It reads the policy's own weights, so there is nothing to sync
  after an optimiser step; it returns the same completion ids TRL's path does (cut after the first
  EOS/stop token) plus the sampling log-probs, which TRL keeps as `sampling_per_token_logps`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig
from trl import GRPOConfig, GRPOTrainer
from trl.extras.profiling import profiling_context

from srl_rlvr.config import Config, PolicyRLConfig
from srl_rlvr.errors import ConfigError
from srl_rlvr.rollout import FastEngine, SamplingParams, choose_engine
from srl_rlvr.train.loop import run_settings

log = logging.getLogger(__name__)

LOGP_FLOOR = -50.0

# Generation options the fast engine does not implement, with their neutral values; any other value
# sends the rollout through TRL's own generate.
_NEUTRAL_GENERATION = {
    "min_p": (None, 0.0),
    "repetition_penalty": (None, 1.0),
    "typical_p": (None, 1.0),
    "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0),
    "no_repeat_ngram_size": (None, 0),
    "num_beams": (None, 1),
    "min_new_tokens": (None, 0),
    "min_length": (None, 0),
    "suppress_tokens": (None, []),
    "begin_suppress_tokens": (None, []),
    "bad_words_ids": (None, []),
}


def fast_sampling_params(generation: GenerationConfig) -> SamplingParams | None:
    """TRL's generation config as the fast engine's request; None when it uses an option the engine
    lacks (the caller then keeps TRL's path)."""
    if any(getattr(generation, name, None) not in neutral for name, neutral in _NEUTRAL_GENERATION.items()):
        return None
    eos = generation.eos_token_id
    sampled = bool(generation.do_sample)
    return SamplingParams(
        max_new_tokens=generation.max_new_tokens,
        temperature=generation.temperature if sampled else 0.0,
        top_p=generation.top_p if sampled and generation.top_p is not None else 1.0,
        top_k=(generation.top_k or 0) if sampled else 0,
        stop_token_ids=() if eos is None else tuple([eos] if isinstance(eos, int) else eos),
    )


def cut_after_first(ids: list[int], stops: Sequence[int]) -> int:
    """Length of `ids` up to and including the first stop token (TRL's completion mask)."""
    return next((i + 1 for i, token in enumerate(ids) if token in stops), len(ids))


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
        self._fast_engine: FastEngine | None = None
        self._engine_decided = False

    def _rollout_engine(self) -> FastEngine | None:
        """The fast engine when `stage.rollout` picks it for this model and setup, else None (TRL's
        own generation). Decided at the first rollout, once accelerate has placed the model."""
        if self._engine_decided:
            return self._fast_engine
        self._engine_decided = True
        settings = self.stage.rollout
        if settings.engine == "hf":
            return None
        if self.use_vllm or self.use_transformers_continuous_batching:
            why = "TRL's vLLM or continuous-batching generation is configured"
        elif self.is_deepspeed_enabled or self.is_fsdp_enabled:
            why = "the weights are sharded (DeepSpeed/FSDP)"
        else:
            name, why = choose_engine(self.accelerator.unwrap_model(self.model), settings.engine)
            if name == "fast":
                self._fast_engine = FastEngine(
                    self.accelerator.unwrap_model(self.model), settings.cuda_graphs, settings.fused_ops
                )
                log.info("rollouts: fast engine (%s)", why)
                return self._fast_engine
        (log.warning if settings.engine == "fast" else log.info)("rollouts: TRL's HF generate (%s)", why)
        return None

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, *args, **kwargs):  # type: ignore[no-untyped-def]
        engine = self._rollout_engine()
        params = fast_sampling_params(self.generation_config) if engine is not None else None
        if engine is None or params is None or images is not None or multimodal_fields:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, *args, **kwargs
            )
        with profiling_context(self, "rollout.generate"):
            rollout = engine.generate(prompt_ids, params)
        # The engine stopped at the generation config's EOS ids, which GroupTrainer keeps equal to
        # `eos_token_ids`; cutting again keeps TRL's mask semantics should the two ever differ.
        lengths = [cut_after_first(ids, self.eos_token_ids) for ids in rollout.completion_ids]
        completion_ids = [ids[:n] for ids, n in zip(rollout.completion_ids, lengths, strict=True)]
        logprobs = [lp[:n] for lp, n in zip(rollout.logprobs, lengths, strict=True)]
        return completion_ids, logprobs

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
