"""What the two policy-RL stages (`srl:`, `rlvr:`) share: rollout groups and their engine, the clipped
objective, the KL anchor, checkpoints and the stability guard."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from srl_rlvr.config.section import Section


class RolloutConfig(Section):
    """How SRL/RLVR rollouts are generated (`srl_rlvr.rollout`)."""

    engine: Literal["auto", "hf", "fast"] = Field(
        "auto",
        description="auto: the built-in fast engine on a CUDA GPU for a Llama/Qwen2/Qwen3/Mistral-family "
        "model without FSDP or DeepSpeed (a LoRA policy or float32 master weights get a bf16 rollout "
        "copy), else TRL's HF generate; hf: always TRL's generate; fast: the fast engine wherever it "
        "can run (eagerly on a CPU), else HF generate with a warning.",
    )
    cuda_graphs: bool = Field(
        True, description="Replay the fast engine's decode step as a CUDA graph (off: eager, for debugging)."
    )
    fused_ops: bool | Literal["auto"] = Field(
        "auto",
        description="Fuse the fast engine's elementwise ops and its sampler with torch.compile and run "
        "its decode attention as one Triton kernel (CUDA): 2.3x faster decode steps (0.5B rollout "
        "copy, batch 256, H200) for a ~9 s compile at the first rollout (~2 s once cached on disk). "
        "auto: on for runs of at least 100 optimiser steps on CUDA; false: rollouts start at once and "
        "follow HF's op order exactly.",
    )
    max_batch: int | None = Field(
        None,
        gt=0,
        description="Rows the fast engine runs at once (None: every completion of a step). Below a "
        "step's completions, the rest wait and each starts in the row of one that ended (continuous "
        "batching: the batch stays full while rows stop at different points; same greedy tokens, "
        "completions in order, groups together); it also caps the engine's KV cache.",
    )


class ScaleOutConfig(Section):
    """Options for the host work around a step (rewards, DDP's bookkeeping), each off until a GPU
    benchmark shows it faster (`benchmarks/scale_out_gpu.sh leads`). None changes a reward or its
    order; CI checks each on two processes against the run without it."""

    overlap_rewards: bool = Field(
        False,
        description="Compute a rollout batch's rewards in a background thread from the moment its "
        "completions are decoded, while the GPU takes their old and reference log-probabilities; "
        "collected before the advantages need them. Not with the next rollout: that one samples from "
        "the weights these rewards update. Gains up to the shorter of the reward and the log-prob "
        "passes (none with kl_penalty_weight 0 and one update a rollout batch: no pass to hide behind).",
    )
    host_reward_pool: bool = Field(
        False,
        description="One pool of reward worker processes a host, served by local rank 0 to the "
        "host's other ranks, instead of one a rank with its share of the cores: a rank whose batch "
        "is ready first may use every core. Two rank pools on one host took 0.082 s a step where "
        "one alone took 0.071 s (2 H200s, SRL shape).",
    )
    ddp_static_graph: bool = Field(
        False,
        description="DDP's static_graph: the same parameters are used every step, so DDP may skip "
        "re-checking its gradient hooks and bucket order each step. With DDP only.",
    )


class PolicyRLConfig(Section):
    """What SRL and RLVR share: rollout groups, the clipped objective, the KL anchor, checkpoints.

    Both stages run on TRL's GRPOTrainer, so these fields mean the same thing in `srl:` and `rlvr:`.
    A field left unset (None) takes the default of the stage's algorithm (see each stage's section).
    """

    learning_rate: float = Field(1e-5, gt=0)
    kl_penalty_weight: float = Field(
        0.1, ge=0, description="Initial weight of the KL anchor to the reference model (0 turns it off)."
    )
    max_kl: float = Field(
        0.1,
        gt=0,
        description="Target KL: the adaptive controller raises the KL weight above it, lowers it below.",
    )
    reward_norm_method: Literal["z_score", "group", "none"] = Field(
        "z_score",
        description="z_score: (r-mean)/std within each rollout group (GRPO); group: r-mean only (Dr. GRPO); none.",
    )
    batch_size: int = Field(
        32, gt=0, description="Completions per optimiser step (prompts x num_generations)."
    )
    micro_batch_size: int | None = Field(
        None,
        gt=0,
        description="Completions per forward and backward pass: gradients accumulate over "
        "batch_size / micro_batch_size passes, so memory falls and the update stays the same. A real "
        "model's activations grow with batch x length: SmolLM2-135M's SRL step at batch 64 ran out of a 24 GB "
        "CPU machine, at 16 it peaked at 10.7 GB. Unset: the whole batch in one pass.",
    )
    epochs: int = Field(5, gt=0, description="Passes over the training prompts.")
    max_steps: int = Field(-1, description="Stop after this many optimiser steps; -1 runs all epochs.")
    num_generations: int = Field(8, ge=2, description="Rollouts per prompt (the GRPO group).")
    steps_per_generation: int | None = Field(
        None,
        gt=0,
        description="Optimiser steps per rollout batch: each rollout batch holds steps_per_generation x "
        "batch_size completions, split into that many minibatches (PPO's minibatches; DAPO makes 16). "
        "From the second minibatch on the policy has moved, so the ratio to the rollout policy differs "
        "from 1 and the clip acts. Default: 4 for ppo and dapo, else 1.",
    )
    num_iterations: int | None = Field(
        None,
        gt=0,
        description="Passes over each rollout batch (mu in the GRPO paper, PPO's epochs). Old "
        "log-probabilities (and PPO's old values) are taken once at rollout time. Default: 4 for ppo, "
        "else 1.",
    )
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(
        1.0, gt=0, le=1, description="Nucleus sampling for rollouts (1: off, as the papers run)."
    )
    top_k: int = Field(
        0,
        ge=0,
        description="Sample rollouts from the k likeliest tokens (0: off). 1 makes rollouts greedy and so "
        "reproducible across process counts (the multi-process tests use it).",
    )
    max_completion_length: int = Field(96, gt=0, description="Tokens a rollout may generate.")
    clip_epsilon: float = Field(0.2, gt=0, description="PPO-style ratio clip: [1-eps, 1+eps_high].")
    clip_epsilon_high: float | None = Field(
        None, gt=0, description="Upper clip (DAPO's clip-higher); unset means clip_epsilon."
    )
    mask_truncated_completions: bool = Field(
        False, description="Leave completions cut off at max_completion_length out of the loss (DAPO)."
    )
    dynamic_sampling: bool | None = Field(
        None,
        description="Dynamic sampling with refill (DAPO, Yu et al. 2025 §3.2; SRL paper §4.2): a rollout group "
        "whose reward std is at most min_group_std is dropped, and more prompts are drawn until the batch "
        "holds its full count of groups or max_draws rollout batches are spent. Default: on for srl and "
        "dapo, off for grpo, dr_grpo and ppo.",
    )
    min_group_std: float = Field(
        0.01,
        ge=0,
        description="Dynamic sampling: a group is kept when the population std of its rewards exceeds this. "
        "Its own threshold, not z-score normalisation's epsilon: a near-tie (rollouts a character apart) "
        "would otherwise be blown up to unit variance.",
    )
    max_draws: int = Field(
        4,
        gt=0,
        description="Dynamic sampling: rollout batches drawn at most per step (the first included); then "
        "the step trains on the groups it kept.",
    )
    warmup_steps: float = Field(
        0,
        ge=0,
        description="Linear learning-rate warm-up: steps, or a fraction of all steps when < 1. Adam's first "
        "updates move every weight by the full learning rate whatever its gradient's noise; a warm-up "
        "keeps them from knocking a trained policy off.",
    )
    max_grad_norm: float = Field(1.0, gt=0)
    save_steps: int = Field(50, gt=0, description="Checkpoint every N optimiser steps (and on SIGTERM).")
    save_minutes: float = Field(
        5.0,
        ge=0,
        description="Also checkpoint when this many minutes have passed since the last one, so a kill -9 "
        "or a lost spot machine costs at most that much work however slow the steps; 0: steps only.",
    )
    logging_steps: int = Field(1, gt=0)
    spike_factor: float = Field(
        5.0,
        gt=1,
        description="Stability guard: KL above factor x its recent mean (or x max_kl), or a reward drop "
        "beyond factor x its recent std, restores the last good checkpoint.",
    )
    restore_lr_factor: float = Field(0.5, gt=0, lt=1, description="Learning rate multiplier after a restore.")
    max_restores: int = Field(3, ge=0, description="Give up after this many restores.")
    eval_steps: int = Field(
        50,
        ge=0,
        description="Validate on held-out data every N steps and at the end; the best model is kept as "
        "final/. 0 turns validation off (final/ is then the last model).",
    )
    early_stopping_patience: int = Field(
        5, ge=0, description="Stop after this many validations without a new best; 0 never stops early."
    )
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    scale_out: ScaleOutConfig = Field(default_factory=ScaleOutConfig)

    def _fill(self, defaults: dict[str, Any]) -> None:
        """Set the fields the user did not set to the algorithm's defaults."""
        for name, value in defaults.items():
            if name not in self.model_fields_set:
                object.__setattr__(self, name, value)
