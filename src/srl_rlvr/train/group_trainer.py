"""The rollout trainer SRL, the RLVR GRPO family and PPO all run on: TRL's GRPOTrainer plus our advantage rule.

TRL does the rollouts, the clipped objective, the KL term, multi-GPU, checkpoints, and several
updates per rollout batch (`steps_per_generation` minibatches, `num_iterations` passes, with old
log-probabilities taken at rollout time). We add what it lacks and both stages need:

- `reward_norm_method`: z_score is per-group (r-mean)/std as in GRPO; group is r-mean as in Dr. GRPO;
  none is the raw reward. TRL runs with `scale_rewards="none"` and advantages are recomputed from
  the rewards gathered over all processes, so groups split between GPUs stay whole.
- Per-row importance weights (a dataset column `weight`; SRL's step rewards) multiply the advantages.
- Rows left out of the loss (truncated completions under `mask_truncated_completions`) are left out
  of their group's mean and std too, so they cannot move the advantages of the rows that train.
- Dynamic sampling with refill (DAPO §3.2, SRL §4.2; `train/dynamic_sampling.py`): groups whose
  verifier outcomes do not differ (DAPO's accuracy filter, verl's `filter_groups.metric: acc`; SRL,
  which has no outcome reward, filters on its step reward) are dropped and more prompts are drawn
  until the batch is full again. A group left in the batch only as filler (the draw budget ran out)
  has its completion mask zeroed, so it leaves the loss, the KL and the token normaliser; with the
  per-sequence `grpo` loss, which averages over rows, the policy term (not TRL's entropy bonus,
  already a mean over live tokens) is rescaled to the rows that remain, so the gradient does not
  shrink with the kept fraction.
- Extra stop tokens (`stop_token_ids`): rollouts end there as at EOS, in generation and in the mask
  (SRL's `continue` style stops each rollout at the end of its line).
- A bound on each token's KL log-ratio (`KL_LOG_RATIO_CAP`), as verl bounds its KL estimate; TRL has none.
- A floor on token log-probabilities (`LOGP_FLOOR`). TRL's KL term is exp(ref - logp) - (ref - logp)
  - 1 on every position, masked afterwards by multiplication. On a padding position after a rollout
  stopped, logp can fall so low that exp() overflows, and inf x 0 is NaN.
- Fast rollouts (`stage.rollout.engine`): TRL's HF `generate` path is replaced by `srl_rlvr.rollout`'s
  engine where it applies (`auto`: CUDA, a Llama/Qwen2-family model, no FSDP/DeepSpeed/vLLM, and
  sampling options it implements). A bf16-computing policy it reads directly, so there is nothing to
  sync after an optimiser step. A LoRA policy, or float32 master weights under bf16 autocast, gets a
  rollout copy (`rollout/weights_copy.py`: adapters merged, bf16) that is refreshed in place before
  the first rollout after each optimiser step; its time is logged as `rollout/copy_refresh_s`. It
  returns the same completion ids TRL's path does (cut after the first EOS/stop token) plus the
  sampling log-probs, which TRL keeps as `sampling_per_token_logps`.
- Host work around a step (`stage.scale_out`, each off by default): the rewards computed while the
  GPU takes the batch's log-probabilities (`train/reward_overlap.py`), one reward worker pool a
  machine for its ranks (`train/reward_pool.py`), DDP's static graph. None changes a reward or a loss.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from trl.extras.profiling import profiling_context
from trl.trainer.utils import is_async_callable

from srl_rlvr.config import Config, PolicyRLConfig
from srl_rlvr.distributed import from_local_main, local_rank, world_size
from srl_rlvr.errors import ConfigError
from srl_rlvr.rollout import FastEngine, SamplingParams, choose_engine, stop_length
from srl_rlvr.rollout.weights_copy import RolloutCopy, is_sharded
from srl_rlvr.train import reward_pool
from srl_rlvr.train.adaptive_kl import AdaptiveKLCallback, AdaptiveKLController
from srl_rlvr.train.dynamic_sampling import (
    PromptDraws,
    chosen_groups,
    informative_groups,
    merge_rollouts,
    take_rows,
)
from srl_rlvr.train.guard import stability_guard
from srl_rlvr.train.reward_overlap import RewardOverlap, replaying
from srl_rlvr.train.runner import device_batch, one_gpu_per_process, stage_args
from srl_rlvr.train.validation import Score, ValidationCallback

log = logging.getLogger(__name__)

LOGP_FLOOR = -50.0
# TRL's per-token KL estimate k3 = exp(r) - r - 1, r = ref - logp, is unbounded where the policy has
# learned to avoid a token the reference likes: one such sampled token (r = 7, k3 = 1,300, seen in
# RLVR on an H200) moves a batch's mean KL by 0.65, which the stability guard took for divergence and
# which dominates the clipped gradient. r is capped at 2.6 (k3 <= 9.9, as verl bounds its low-variance
# KL at 10); past the cap the term still pulls the token back, at the cap's constant strength.
KL_LOG_RATIO_CAP = 2.6

# `rollout.fused_ops: auto` fuses from this many optimiser steps: the compile costs ~5 s once, the
# fused step saves ~0.2 s (0.5B, 64 completions x 256 tokens on an H200), so it is repaid in ~25 steps.
FUSED_OPS_MIN_STEPS = 100
ROLLOUT_BUFFER = "rollout_buffer"  # a checkpoint's file of the rollouts left for later minibatches
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


def group_advantages(
    rewards: torch.Tensor, group_size: int, method: str, live: torch.Tensor | None = None
) -> torch.Tensor:
    """Advantages per completion over a flat reward vector of consecutive groups (see module docstring).
    `live` (one bool a row) leaves masked rows out of their group's mean and std; their advantage is 0."""
    grouped = rewards.view(-1, group_size)
    weight = torch.ones_like(grouped) if live is None else live.view(-1, group_size).to(grouped.dtype)
    count = weight.sum(dim=1, keepdim=True)
    mean = (grouped * weight).sum(dim=1, keepdim=True) / count.clamp(min=1)
    if method == "z_score":  # the sample std (torch.std's), over the live rows
        variance = ((grouped - mean) ** 2 * weight).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)
        advantages = (grouped - mean) / (variance.sqrt() + 1e-4)
    elif method == "group":
        advantages = grouped - mean
    else:
        advantages = grouped
    return (advantages * weight).flatten()


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
        self._global_outcomes: torch.Tensor | None = None
        self._global_weights: torch.Tensor | None = None
        self._fast_engine: FastEngine | None = None
        self._rollout_copy: RolloutCopy | None = None
        self._copy_step = 0  # the optimiser step the rollout copy holds (it is written when made)
        self._engine_decided = False
        self._draws: PromptDraws | None = None
        self._overlong_checked = False
        self._kl_reference: torch.Tensor | None = None
        self._scoring_inputs: list[dict[str, Any]] | None = None  # the batch TRL is scoring
        self._reward_overlap = RewardOverlap() if stage.scale_out.overlap_rewards else None
        if stage.scale_out.host_reward_pool:
            share_host_reward_pool()

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
        elif self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3:
            why = "DeepSpeed ZeRO-3 shards the weights (the engine gathers FSDP2 shards: use fsdp2.yaml)"
        elif self.is_fsdp_enabled and not getattr(self.accelerator, "is_fsdp2", False):
            why = "FSDP1 shards the weights (the engine gathers FSDP2 shards: set fsdp_version: 2)"
        else:
            policy = self.accelerator.unwrap_model(self.model)
            rollout_copy = self._make_rollout_copy(policy)
            name, why = choose_engine(rollout_copy.model if rollout_copy else policy, settings.engine)
            if name == "fast":
                self._rollout_copy = rollout_copy
                served = rollout_copy.model if rollout_copy else policy
                fused = self._fused_ops(served)
                # A rollout copy belongs to the engine alone, so its weights may be packed.
                engine_options = {
                    "fused": fused,
                    "pack": rollout_copy is not None,
                    "max_batch": settings.max_batch,
                }
                self._fast_engine = FastEngine(served, settings.cuda_graphs, **engine_options)
                if rollout_copy is not None:
                    why += f"; a {str(rollout_copy.dtype).removeprefix('torch.')} rollout copy "
                    why += f"({rollout_copy.nbytes / 2**20:.0f} MiB) refreshed after each optimiser step"
                if fused:
                    why += "; fused ops"
                log.info("rollouts: fast engine (%s)", why)
                return self._fast_engine
        (log.warning if settings.engine == "fast" else log.info)("rollouts: TRL's HF generate (%s)", why)
        return None

    def _fused_ops(self, served: torch.nn.Module) -> bool:
        """`rollout.fused_ops`; auto: on for a run of at least FUSED_OPS_MIN_STEPS optimiser steps on
        CUDA, where the compile (~5 s) is repaid many times over."""
        choice = self.stage.rollout.fused_ops
        if choice != "auto":
            return bool(choice)
        on_cuda = next(served.parameters()).device.type == "cuda"
        return on_cuda and self.state.max_steps >= FUSED_OPS_MIN_STEPS

    def _make_rollout_copy(self, policy: torch.nn.Module) -> RolloutCopy | None:
        """A rollout copy when the policy's own weights cannot be generated with fast: a LoRA policy
        (its adapters merged in the copy), float32 master weights under bf16 autocast (a bf16 copy:
        the engine's matmuls then run at bf16 speed), or FSDP2 shards (gathered into a whole copy on
        every rank). None when the policy itself will do."""
        lora = hasattr(policy, "peft_config")
        master_fp32 = self.args.bf16 and next(policy.parameters()).dtype == torch.float32
        if not (lora or master_fp32 or is_sharded(policy)) or (lora and is_sharded(policy)):
            return None  # the policy will do, or (sharded LoRA) TRL's generate must
        return RolloutCopy(policy, dtype=torch.bfloat16 if self.args.bf16 else None)

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, *args, **kwargs):  # type: ignore[no-untyped-def]
        engine = self._rollout_engine()
        params = fast_sampling_params(self.generation_config) if engine is not None else None
        if engine is None or params is None or images is not None or multimodal_fields:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, *args, **kwargs
            )
        if self._rollout_copy is not None and self._copy_step != self.state.global_step:
            self._rollout_copy.refresh()  # the optimiser stepped since the copy was written
            self._copy_step = self.state.global_step
            self._metrics["train"]["rollout/copy_refresh_s"].append(self._rollout_copy.refresh_s)
        with profiling_context(self, "rollout.generate"):
            rollout = engine.generate(prompt_ids, params)
        # The engine stopped at the generation config's EOS ids, which GroupTrainer keeps equal to
        # `eos_token_ids`; cutting again keeps TRL's mask semantics should the two ever differ.
        lengths = [stop_length(ids, self.eos_token_ids) for ids in rollout.completion_ids]
        completion_ids = [ids[:n] for ids, n in zip(rollout.completion_ids, lengths, strict=True)]
        logprobs = [lp[:n] for lp, n in zip(rollout.logprobs, lengths, strict=True)]
        return completion_ids, logprobs

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any) -> Any:
        logps, *rest = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        logps = logps.clamp(min=LOGP_FLOOR)
        if self._kl_reference is not None and self._kl_reference.shape == logps.shape:
            # The policy forward of a loss computation: bound each token's KL log-ratio (see
            # KL_LOG_RATIO_CAP) in the reference log-probs TRL reads next.
            self._kl_reference.copy_(torch.minimum(self._kl_reference, logps.detach() + KL_LOG_RATIO_CAP))
        return (logps, *rest)

    def _generate(self, prompts):  # type: ignore[no-untyped-def]
        generated = super()._generate(prompts)
        if self._reward_overlap is not None:
            self._start_rewards(prompts, generated)
        return generated

    def _start_rewards(self, prompts: list[Any], generated: tuple[Any, ...]) -> None:
        """Start this batch's reward functions in the background (`scale_out.overlap_rewards`), with
        the arguments TRL's `_calculate_rewards` will pass them; only plain reward functions, and not
        where TRL changes the batch between here and there (tools, environments, a rollout function)."""
        assert self._reward_overlap is not None
        _, completion_ids, _, completions, _, extra_fields, _, _ = generated
        inputs = self._scoring_inputs
        plain = all(
            not isinstance(f, torch.nn.Module) and not is_async_callable(f) for f in self.reward_funcs
        )
        changed = self.tools or self.environments or self.rollout_func is not None or extra_fields
        if not plain or changed or inputs is None or len(inputs) != len(prompts):
            return
        columns: dict[str, Any] = {
            key: [x[key] for x in inputs]
            for key in inputs[0]
            if key not in ("prompt", "completion", "completion_ids")
        }
        columns["trainer_state"] = self.state
        self._reward_overlap.start(self.reward_funcs, prompts, completions, completion_ids, columns)

    def _overlapped_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]
        """TRL's reward step on the rewards computed in the background, or TRL's own where none were."""
        calls = None
        if self._reward_overlap is not None:
            began = time.perf_counter()
            calls = self._reward_overlap.take(prompts, completions)
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["rewards/overlap_wait_s"].append(time.perf_counter() - began)
        if calls is None:
            return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        loggers = {"log_metric": self._log_metric, "log_extra": self._log_completion_extra}
        for name, args in calls.logged:
            loggers[name](*args)
        functions = self.reward_funcs
        self.reward_funcs = [replaying(outputs) for outputs in calls.outputs]
        try:
            return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        finally:
            self.reward_funcs = functions

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]
        rewards_per_func = self._overlapped_rewards(inputs, prompts, completions, completion_ids_list)
        weights = torch.tensor([float(x.get("weight", 1.0)) for x in inputs], device=rewards_per_func.device)
        self._global_weights = self.accelerator.gather(weights)
        reward_weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        self._global_rewards = (rewards_per_func * reward_weights).nansum(dim=1)
        # Dynamic sampling filters on whether the answers were right, not on the shaped total: an
        # all-wrong group whose lengths differ has nothing to teach but "be shorter" (DAPO §3.2).
        names = list(self.reward_func_names)
        outcome = rewards_per_func[:, names.index("outcome")] if "outcome" in names else None
        self._global_outcomes = self._global_rewards if outcome is None else outcome.nan_to_num(0.0)
        if not self._overlong_checked:
            self._check_overlong_headroom(rewards_per_func, completion_ids_list)
        return rewards_per_func

    def _check_overlong_headroom(
        self, rewards_per_func: torch.Tensor, completion_ids: list[list[int]]
    ) -> None:
        """Warn once when DAPO's overlong penalty starts below the length of right answers: it then
        rewards giving up early (measured: the `dapo` preset at 64 tokens, where right arithmetic
        answers run 40-65, took held-out accuracy from 0.23 to 0.01; BENCHMARKS.md)."""
        names = list(self.reward_func_names)
        if "overlong" not in names or "outcome" not in names:
            self._overlong_checked = True
            return
        outcome = self._local_slice(rewards_per_func[:, names.index("outcome")], len(completion_ids))
        right = sorted(len(ids) for ids, r in zip(completion_ids, outcome.tolist(), strict=True) if r >= 1)
        if not right:
            return  # decide on the first batch with a right answer
        self._overlong_checked = True
        start = self.stage.max_completion_length - self.stage.overlong_buffer
        median = right[len(right) // 2]
        if median > start:
            log.warning(
                "the overlong penalty starts at %d tokens but right answers have a median of %d: it "
                "will teach the model to stop early; raise max_completion_length or overlong_buffer, "
                "or set length_penalty: 0",
                start,
                median,
            )

    def _local_slice(self, global_values: torch.Tensor, local: int) -> torch.Tensor:
        start = self.accelerator.process_index * local
        return global_values[start : start + local]

    def _score_draw(self, inputs: list[dict[str, Any]]) -> tuple[dict[str, Any], torch.Tensor]:
        """TRL's rollout and scoring of `inputs`, with our advantages; and, per local row, whether its
        group's rewards differ enough to train on (dynamic sampling's test)."""
        output = self._trl_scoring(inputs)
        assert self._global_rewards is not None and self._global_weights is not None
        assert self._global_outcomes is not None
        groups = self.num_generations
        live = self.accelerator.gather(output["completion_mask"].sum(dim=1)) > 0
        advantages = group_advantages(self._global_rewards, groups, self.stage.reward_norm_method, live)
        informative = informative_groups(self._global_outcomes, groups, self.stage.min_group_std, live)
        local = len(output["advantages"])
        output["advantages"] = self._local_slice(advantages * self._global_weights, local)
        keep = self._local_slice(informative.repeat_interleave(groups), local)
        return output, keep

    def _trl_scoring(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        """TRL's rollout and scoring of `inputs`, the batch kept at hand for the reward overlap."""
        self._scoring_inputs = inputs
        try:
            return GRPOTrainer._generate_and_score_completions(self, inputs)
        finally:
            self._scoring_inputs = None
            if self._reward_overlap is not None:
                self._reward_overlap.discard()  # a batch that failed before its rewards were taken

    def _generate_and_score_completions(self, inputs):  # type: ignore[no-untyped-def]
        if not (self.model.training and self.stage.dynamic_sampling):
            return with_row_scale(self._score_draw(inputs)[0])
        wanted = len(inputs) // self.num_generations  # whole groups on each process (grpo_args checks)
        parts, keeps, draws = [], [], 0
        while True:
            output, keep = self._score_draw(inputs)
            parts.append(output)
            keeps.append(keep)
            draws += 1
            kept = torch.cat(keeps).view(-1, self.num_generations)[:, 0].sum()
            # Every process draws until the one with the fewest kept groups is full: the scoring of a
            # draw gathers rewards across processes, so all must take part in each one.
            fewest = self.accelerator.gather(kept.reshape(1)).min().item()
            if fewest >= wanted or draws >= self.stage.max_draws:
                break
            inputs = self._prompt_draws().draw(wanted)
        merged = merge_rollouts(parts, self._tokenizer.pad_token_id)
        group_keep = torch.cat(keeps).view(-1, self.num_generations)[:, 0]
        groups, informative = chosen_groups(group_keep, wanted)
        rows = groups[:, None] * self.num_generations + torch.arange(
            self.num_generations, device=groups.device
        )
        output = take_rows(merged, rows.flatten())
        row_keep = informative.repeat_interleave(self.num_generations)
        output["completion_mask"] = output["completion_mask"] * row_keep.unsqueeze(1).to(
            output["completion_mask"].dtype
        )
        output["advantages"] = output["advantages"] * row_keep.to(output["advantages"].dtype)
        output["num_items_in_batch"] = self.accelerator.gather(output["completion_mask"].sum()).sum()
        counts = torch.tensor([group_keep.numel(), informative.sum().item()], device=self.accelerator.device)
        drawn, trained = self.accelerator.reduce(counts.float(), reduction="sum").tolist()
        metrics = self._metrics["train"]
        metrics["dynamic_sampling/draws"].append(float(draws))
        metrics["dynamic_sampling/groups_drawn"].append(drawn)
        metrics["dynamic_sampling/groups_kept"].append(trained)
        metrics["filtered_group_frac"].append(1.0 - trained / (wanted * self.accelerator.num_processes))
        return with_row_scale(output)

    def _save_rng_state(self, output_dir: str) -> None:
        """The trainer's RNG states, dynamic sampling's prompt order (its own generator), and, when the
        checkpoint falls inside a rollout batch (steps_per_generation or num_iterations > 1), the
        rollouts TRL buffered for its later minibatches with its micro-step count. Without the order a
        resumed run refills from a fresh one; without the buffer it samples a new batch mid-way from
        the resumed weights and every later rollout batch starts at another step."""
        super()._save_rng_state(output_dir)
        rank = self.accelerator.process_index
        if self._draws is not None:
            torch.save(self._draws.state(), Path(output_dir) / f"prompt_draws_{rank}.pt")
        if self._buffered_inputs is not None and self._step % self._generate_every():
            state = {"step": self._step, "buffer": self._buffered_inputs}
            torch.save(state, Path(output_dir) / f"{ROLLOUT_BUFFER}_{rank}.pt")

    def _load_rng_state(self, checkpoint: str | None) -> None:
        super()._load_rng_state(checkpoint)
        if checkpoint is None:
            return
        rank = self.accelerator.process_index
        draws = Path(checkpoint) / f"prompt_draws_{rank}.pt"
        if draws.is_file():
            self._prompt_draws().restore(torch.load(draws))
        buffered = Path(checkpoint) / f"{ROLLOUT_BUFFER}_{rank}.pt"
        if buffered.is_file():
            state = torch.load(buffered, map_location=self.accelerator.device)
            self._step, self._buffered_inputs = state["step"], state["buffer"]

    def _generate_every(self) -> int:
        """Micro-steps between two rollout batches, as TRL's _prepare_inputs counts them."""
        return self.args.steps_per_generation * self.num_iterations

    def _prompt_draws(self) -> PromptDraws:
        if self._draws is None:
            self._draws = PromptDraws(
                self.train_dataset, self.num_generations, self.args.seed, self.accelerator.process_index
            )
        return self._draws

    def _compute_loss(self, model, inputs):  # type: ignore[no-untyped-def]
        reference = inputs.get("ref_per_token_logps")
        if reference is not None:
            # TRL buffers a rollout batch and hands the same tensors to every pass over it
            # (num_iterations > 1): the cap must bound this pass's log-ratio, on a copy.
            inputs = {**inputs, "ref_per_token_logps": reference.clone()}
        self._kl_reference = inputs.get("ref_per_token_logps")
        beta = self.beta
        if self.loss_type in ("grpo", "sapo"):
            # TRL averages per-sequence losses over every row; rows masked out (dynamic sampling's
            # filler, truncated completions) would count as zeros and shrink the gradient. The policy
            # and KL terms are linear in the advantages and beta, so scaling those scales the policy
            # term alone: TRL's entropy bonus, a mean over live tokens already, stays as it is.
            scale = inputs.get("row_scale")
            if scale is None:  # PPO's rollouts skip ours: scale by this micro-batch's rows
                mask = inputs["completion_mask"]
                scale = mask.size(0) / (mask.sum(dim=1) > 0).sum().clamp(min=1)
            scale = float(scale)
            inputs = {**inputs, "advantages": inputs["advantages"] * scale}
            self.beta = beta * scale
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._kl_reference = None
            self.beta = beta


def share_host_reward_pool() -> None:
    """One reward worker pool for this machine's ranks (`scale_out.host_reward_pool`): local rank 0
    serves it, and every local rank joins it. Every rank of the run must call this at the same point."""
    served = reward_pool.serve_host_pool() if local_rank() == 0 else None
    reward_pool.join_host_pool(*from_local_main(served))


def with_row_scale(output: dict[str, Any]) -> dict[str, Any]:
    """Add `row_scale`: rows / rows with a token to train on, over the whole rollout batch. With
    micro-batches a step's loss is the mean of micro-batch means, so scaling each by its own share of
    masked rows would weight a micro-batch of few live rows up; one factor for the batch keeps every
    live row's weight equal (exactly so when a rollout batch is one step, the default)."""
    mask = output["completion_mask"]
    output["row_scale"] = (mask.size(0) / (mask.sum(dim=1) > 0).sum().clamp(min=1)).float()
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
    share = device_batch(stage.batch_size)  # batch_size is global: each process rolls out its share
    micro = stage.micro_batch_size or share
    if share % micro:
        raise ConfigError(
            f"batch_size ({stage.batch_size}) over {world_size()} process(es) must be a multiple of "
            f"micro_batch_size ({micro}): each optimiser step accumulates whole micro-batches"
        )
    if stage.dynamic_sampling and share % stage.num_generations:
        raise ConfigError(
            f"dynamic_sampling keeps or drops whole rollout groups on each process: batch_size "
            f"({stage.batch_size}) over {world_size()} process(es) is {share} completions a process, not a "
            f"multiple of num_generations ({stage.num_generations})"
        )
    accumulation = share // micro
    args = GRPOConfig(
        **stage_args(config, stage, out_dir),  # type: ignore[arg-type]
        # TRL's optimiser step is per_device x gradient_accumulation_steps completions, and its
        # steps_per_generation counts micro-batches: a rollout batch stays steps_per_generation x
        # batch_size completions whatever the micro-batch.
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        num_generations=stage.num_generations,
        steps_per_generation=(stage.steps_per_generation or 1) * accumulation,
        num_iterations=stage.num_iterations or 1,
        max_completion_length=stage.max_completion_length,
        temperature=stage.temperature,
        top_p=stage.top_p,
        top_k=stage.top_k,
        beta=stage.kl_penalty_weight,
        epsilon=stage.clip_epsilon,
        epsilon_high=stage.clip_epsilon_high,
        mask_truncated_completions=stage.mask_truncated_completions,
        loss_type=loss_type,
        entropy_coef=entropy_coef,
        scale_rewards="none",
        save_only_model=False,
        ddp_static_graph=stage.scale_out.ddp_static_graph,
    )
    return one_gpu_per_process(args)


def stage_callbacks(
    trainer: Any,
    out_dir: Path,
    stage: PolicyRLConfig,
    score: Score | None,
    primary: str,
    adaptive_kl: bool = True,
) -> list[TrainerCallback]:
    """What SRL and RLVR wire around their trainer: the adaptive KL controller (not for DPO, whose
    beta is its anchor), the stability guard (which rolls the controller back with the weights) and,
    when `stage.eval_steps` and a `score` are given, validation keeping the best model by `primary`."""
    controller = AdaptiveKLController(stage.kl_penalty_weight, stage.max_kl) if adaptive_kl else None
    callbacks: list[TrainerCallback] = [stability_guard(trainer, out_dir, stage, controller)]
    if controller is not None:
        callbacks.insert(0, AdaptiveKLCallback(trainer, controller))
    if stage.eval_steps and score is not None:
        callbacks.append(
            ValidationCallback(
                trainer,
                score,
                primary,
                out_dir,
                every=stage.eval_steps,
                patience=stage.early_stopping_patience,
            )
        )
    return callbacks
