"""`sft:`, `srl:` and `rlvr:`: the training stages, each with the defaults of its paper."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from srl_rlvr.config.policy_rl import PolicyRLConfig
from srl_rlvr.config.section import Section


class SRLConfig(PolicyRLConfig):
    """Supervised RL (Deng et al. 2025, arXiv 2510.25992): step-wise similarity rewards, GRPO objective."""

    max_completion_length: int = Field(96, gt=0, description="Tokens for reasoning plus action.")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field(
        "grpo",
        description="Token aggregation of the GRPO loss (TRL); 'grpo' is the paper's per-sequence mean.",
    )
    prompt_style: Literal["instruct", "continue"] = Field(
        "instruct",
        description="instruct (paper): problem, expert steps so far, an instruction to think then write "
        "the next step. continue: problem and expert steps so far, one a line; the model's next line is "
        "the step, so SRL trains exactly the continuation a plain-solution model writes at inference "
        "(for small models without a think habit); a chat model continues its own answer turn.",
    )
    think_open: str = Field("<think>", min_length=1)
    think_close: str = Field("</think>", min_length=1)
    require_think: bool = Field(
        True,
        description="Paper format: no think block is a format failure. False: a bare completion is the action.",
    )
    format_penalty: float = Field(
        -1.0,
        le=0,
        description="Reward for a completion without a well-formed action, and for one that gives a "
        "wrong answer (the task's verifier judges any completion that gives the answer).",
    )
    step_check: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Weight of the task's own check of a step's result (arithmetic's running value, "
        "extraction's field; tasks with a check_step method) in the step reward: "
        "(1 - w) x similarity + w x check. 0 is the paper's similarity alone.",
    )
    step_hint: bool = Field(
        False,
        description="instruct style: the prompt names the step to write ('step k of n'), as the paper's "
        "prompt tells the model which step it is on.",
    )
    val_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Share of the trajectories held out (at least one) to validate on when eval_steps > 0: "
        "mean step reward of greedy next-step predictions, as the paper selects its checkpoint.",
    )

    @model_validator(mode="after")
    def _srl_defaults(self) -> SRLConfig:
        self._fill({"dynamic_sampling": True, "steps_per_generation": 1, "num_iterations": 1})
        return self


class SFTConfig(Section):
    """Supervised fine-tuning on whole expert solutions (TRL SFTTrainer): SRL's baseline and warm start."""

    learning_rate: float = Field(1e-4, gt=0)
    batch_size: int = Field(16, gt=0)
    epochs: int = Field(3, gt=0)
    max_steps: int = Field(-1, description="Stop after this many optimiser steps; -1 runs all epochs.")
    max_length: int = Field(512, gt=0, description="Prompt plus solution tokens; longer rows are truncated.")
    max_grad_norm: float = Field(1.0, gt=0)
    lr_scheduler: Literal["linear", "constant", "cosine"] = Field(
        "linear",
        description="How the learning rate moves over max_steps: linear decay to 0 (transformers' "
        "default), constant, or cosine. A short run that stops at a fixed step count learned more "
        "with constant (BENCHMARKS.md, distillation).",
    )
    save_steps: int = Field(100, gt=0)
    save_minutes: float = Field(
        5.0, ge=0, description="Also checkpoint when this many minutes have passed since the last one."
    )
    logging_steps: int = Field(5, gt=0)


class RLVRConfig(PolicyRLConfig):
    """Outcome RL with verifiable rewards (Task.reward): GRPO family and PPO on rollouts, DPO on verified pairs.

    `algorithm` presets the fields a user did not set, to what its paper does:
    - grpo (Shao et al. 2024): z-score advantages, per-sequence loss mean, one update per rollout batch.
    - dr_grpo (Liu et al. 2025): advantages r - mean (no std division), constant loss normaliser.
    - dapo (Yu et al. 2025): no KL term, clip (0.2, 0.28), token-level loss, overlong shaping,
      truncated completions masked, dynamic sampling with refill, several minibatch updates a batch.
    - ppo (Schulman et al. 2017; LLM setting as InstructGPT): value head, GAE with gamma 1 and lambda
      0.95, 4 epochs x 4 minibatches a rollout batch, value clipping, entropy bonus 0.01.
    """

    algorithm: Literal["grpo", "dr_grpo", "dapo", "ppo", "dpo"] = "grpo"
    use_ppo: bool = Field(False, description="Shorthand older configs use: true selects algorithm 'ppo'.")
    learning_rate: float = Field(1e-6, gt=0)
    kl_penalty_weight: float = Field(0.05, ge=0)
    epochs: int = Field(3, gt=0)
    max_completion_length: int = Field(128, gt=0)
    value_coef: float = Field(0.5, ge=0, description="PPO value-loss weight.")
    value_clip: float = Field(0.2, gt=0, description="PPO: how far a value prediction may move per update.")
    entropy_coef: float | None = Field(
        None,
        ge=0,
        description="Entropy bonus weight. Default: 0.01 for ppo (Schulman et al. 2017); 0 for the GRPO "
        "family, whose papers have none.",
    )
    gamma: float = Field(
        1.0,
        ge=0,
        le=1,
        description="PPO discount. The reward sits on the last token, so gamma < 1 scales a token's "
        "advantage by gamma^(tokens to the end): 0.99 weighs the first of 128 tokens 0.28 as much as the "
        "last, a bias against long answers. 1 (InstructGPT, TRL) has none.",
    )
    lam: float = Field(0.95, ge=0, le=1, description="PPO GAE lambda.")
    format_reward: float = Field(
        0.0, ge=0, description="Added to the reward when the task can parse an answer from the completion."
    )
    length_penalty: float = Field(
        0.0,
        ge=0,
        description="Weight of DAPO's overlong penalty: 0 up to max_completion_length-overlong_buffer, "
        "falling linearly to -1 at max_completion_length. The dapo preset's 0.5 is DAPO's scale: its "
        "outcome reward is +-1, ours 1/0, so its full penalty is half the gap between right and wrong "
        "(at weight 1 a right answer at the limit would tie a short wrong one). The penalty must start "
        "above the length of a correct answer (DAPO: 16k of a 20k limit): where it does not, it rewards "
        "giving up early.",
    )
    overlong_buffer: int = Field(
        32, gt=0, description="Tokens before the limit where the length penalty starts."
    )
    dpo_beta: float = Field(0.1, gt=0, description="DPO temperature (strength of the implicit KL anchor).")
    dpo_correct_threshold: float = Field(
        1.0, description="DPO: a sample whose reward reaches this is correct; below it, wrong."
    )
    dpo_pairs_per_prompt: int = Field(
        2, gt=0, description="DPO: at most this many (correct, wrong) pairs a prompt."
    )

    @model_validator(mode="after")
    def _algorithm_presets(self) -> RLVRConfig:
        if self.use_ppo and self.algorithm != "ppo":
            object.__setattr__(self, "algorithm", "ppo")
        single_pass = {"steps_per_generation": 1, "num_iterations": 1}
        presets: dict[str, dict[str, Any]] = {
            "grpo": {**single_pass, "dynamic_sampling": False, "entropy_coef": 0.0},
            "dr_grpo": {
                **single_pass,
                "reward_norm_method": "group",
                "dynamic_sampling": False,
                "entropy_coef": 0.0,
            },
            "dapo": {
                "kl_penalty_weight": 0.0,
                "clip_epsilon_high": 0.28,
                "mask_truncated_completions": True,
                "length_penalty": 0.5,
                "dynamic_sampling": True,
                "steps_per_generation": 4,
                "num_iterations": 1,
                "entropy_coef": 0.0,
            },
            "ppo": {
                "steps_per_generation": 4,
                "num_iterations": 4,
                "dynamic_sampling": False,
                "entropy_coef": 0.01,
            },
            "dpo": {**single_pass, "dynamic_sampling": False, "entropy_coef": 0.0},
        }
        self._fill(presets[self.algorithm])
        ignored = self._ignored_options()
        if ignored:
            raise ValueError(
                f"{', '.join(ignored)} would do nothing under algorithm {self.algorithm}: remove it"
            )
        if self.dynamic_sampling and self.algorithm in ("ppo", "dpo"):
            raise ValueError(
                f"dynamic_sampling is for the GRPO family (grpo, dr_grpo, dapo), not {self.algorithm}: "
                "PPO's baseline is its value head and DPO trains on pairs"
            )
        return self

    def _ignored_options(self) -> list[str]:
        """Options the user set that the algorithm never reads: DPO trains on pairs in TRL's own
        DPOTrainer (no rollout rewards, its own batching, nothing truncated to mask); PPO's advantages
        come from its value head, not from group statistics."""
        chosen = self.model_fields_set
        if self.algorithm == "dpo":
            active = {
                "micro_batch_size": self.micro_batch_size is not None,
                "format_reward": self.format_reward > 0,
                "length_penalty": self.length_penalty > 0,
                "mask_truncated_completions": self.mask_truncated_completions,
            }
        elif self.algorithm == "ppo":
            active = {"reward_norm_method": True}
        else:
            return []
        return [name for name, used in active.items() if used and name in chosen]

    @property
    def loss_type(self) -> str:
        """TRL's token aggregation: the algorithm's own for the GRPO family, token-level mean for PPO."""
        return {"grpo": "grpo", "dr_grpo": "dr_grpo", "dapo": "dapo"}.get(self.algorithm, "dapo")
