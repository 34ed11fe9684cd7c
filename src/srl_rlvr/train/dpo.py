"""RLVR's `dpo` algorithm: Direct Preference Optimization on pairs the verifier labels.

DPO (Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model", eq. 7) learns from (prompt, chosen, rejected) triples with no reward model and no rollouts
during training. Here the preferences are not human: for each prompt we sample k completions from
the start policy, score each with the task's verifiable reward, and pair a verified-correct sample
(chosen) with a verified-wrong one (rejected) of the same prompt. TRL's DPOTrainer does the loss and
the frozen reference; this file only builds the pairs.

Because the pairs are sampled once, before training, this is offline DPO on on-policy data: a prompt
the start model always (or never) solves gives no pair and teaches nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import set_seed
from trl import DPOConfig, DPOTrainer

from srl_rlvr.config import Config, RLVRConfig
from srl_rlvr.distributed import is_main, on_main
from srl_rlvr.errors import DataError
from srl_rlvr.modeling import chat_prompt, load_model, materialize
from srl_rlvr.rollout import generate_texts
from srl_rlvr.tasks import Problem, Task, safe_reward
from srl_rlvr.train.runner import device_batch, one_gpu_per_process, stage_args

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreferencePair:
    """One DPO example: a verified-correct and a verified-wrong completion of the same prompt."""

    prompt: str
    chosen: str
    rejected: str
    chosen_reward: float
    rejected_reward: float


def build_preference_pairs(
    prompts: Sequence[str],
    completions: Sequence[str],
    rewards: Sequence[float],
    k: int,
    threshold: float,
    max_pairs_per_prompt: int,
) -> list[PreferencePair]:
    """Pair each prompt's correct (reward >= threshold) with its wrong samples, `k` a prompt, prompt-major.

    The best correct meets the worst wrong first, then the next of each, so the clearest contrasts come
    first and no completion is used twice; a prompt gives min(#correct, #wrong, max_pairs_per_prompt).
    """
    if len(completions) != len(prompts) * k or len(rewards) != len(completions):
        raise ValueError(
            f"{len(prompts)} prompts x k={k} need {len(prompts) * k} completions and rewards, "
            f"got {len(completions)} and {len(rewards)}"
        )
    pairs = []
    for i, prompt in enumerate(prompts):
        group = range(i * k, (i + 1) * k)
        # Sorting on (reward, index) keeps ties in sampling order, so the result is deterministic.
        correct = sorted((j for j in group if rewards[j] >= threshold), key=lambda j: (-rewards[j], j))
        wrong = sorted((j for j in group if rewards[j] < threshold), key=lambda j: (rewards[j], j))
        for c, w in list(zip(correct, wrong, strict=False))[:max_pairs_per_prompt]:
            pairs.append(PreferencePair(prompt, completions[c], completions[w], rewards[c], rewards[w]))
    return pairs


def sample_preference_pairs(
    model: Any, tokenizer: Any, task: Task, problems: Sequence[Problem], cfg: RLVRConfig
) -> tuple[list[PreferencePair], dict[str, float]]:
    """Sample `num_generations` completions a problem, verify them, pair them; also return stats to log.

    Stats: `sample_accuracy` (fraction of samples at or above the threshold), `prompts_with_pairs`
    (fraction of problems with both kinds), `num_pairs`.
    """
    k = cfg.num_generations
    prompts = [chat_prompt(tokenizer, task.prompt(p)) for p in problems]
    completions = generate_texts(
        model,
        tokenizer,
        prompts,
        cfg.max_completion_length,
        batch_size=max(1, cfg.batch_size // k),  # batch_size counts completions, as in the GRPO family
        num_return_sequences=k,
        temperature=cfg.temperature,
    ).completions
    rewards = [safe_reward(task, c, problems[j // k]) for j, c in enumerate(completions)]
    pairs = build_preference_pairs(
        prompts, completions, rewards, k, cfg.dpo_correct_threshold, cfg.dpo_pairs_per_prompt
    )
    stats = {
        "sample_accuracy": sum(r >= cfg.dpo_correct_threshold for r in rewards) / max(len(rewards), 1),
        "prompts_with_pairs": len({p.prompt for p in pairs}) / max(len(prompts), 1),
        "num_pairs": float(len(pairs)),
    }
    return pairs, stats


def save_pairs(pairs: Sequence[PreferencePair], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(p)) + "\n" for p in pairs))


def load_pairs(path: Path) -> list[PreferencePair]:
    try:
        return [PreferencePair(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    except (json.JSONDecodeError, TypeError) as e:
        raise DataError(f"{path}: not a preference-pair JSONL ({e}); delete it to resample") from None


def _no_pairs_message(stats: dict[str, float], num_prompts: int, cfg: RLVRConfig) -> str:
    if stats["sample_accuracy"] == 0.0:
        hint = (
            f"no sample reached rlvr.dpo_correct_threshold={cfg.dpo_correct_threshold}: lower it, raise "
            "rlvr.num_generations or rlvr.temperature, or warm-start from an SFT/SRL model"
        )
    elif stats["sample_accuracy"] == 1.0:
        hint = "every sample was correct: raise rlvr.dpo_correct_threshold or train on harder problems"
    else:
        hint = "raise rlvr.num_generations or rlvr.temperature so prompts get both kinds of sample"
    return (
        f"dpo: no preference pairs: 0 of {num_prompts} prompts had both a correct and a wrong sample "
        f"(sample accuracy {stats['sample_accuracy']:.2f}); {hint}"
    )


def build_dpo_trainer(
    config: Config, problems: Sequence[Problem], out_dir: Path, task: Task, resume: bool = False
) -> tuple[DPOTrainer, Any]:
    """Sample verified pairs from the start model and set up TRL's DPOTrainer on them.

    `train_rlvr` runs it with the callbacks every RLVR algorithm shares. Pairs go to
    `out_dir/pairs.jsonl`; a resumed run reuses that file, so it trains on the same pairs.
    """
    out_dir = Path(out_dir)
    cfg = config.rlvr
    model_config = materialize(config.model, out_dir / "base", seed=config.seed)
    model, tokenizer = load_model(model_config, seed=config.seed)
    pairs_file = out_dir / "pairs.jsonl"
    if resume and pairs_file.is_file():
        pairs = load_pairs(pairs_file)
        log.info("dpo: resuming on %d preference pairs from %s", len(pairs), pairs_file)
    else:
        set_seed(config.seed)
        # With several processes the main one samples and writes the pairs; every rank trains on them.
        pairs, stats = on_main(lambda: sample_preference_pairs(model, tokenizer, task, problems, cfg))
        if not pairs:
            raise DataError(_no_pairs_message(stats, len(problems), cfg))
        if is_main():
            save_pairs(pairs, pairs_file)
        log.info(
            "dpo: %d preference pairs from %d prompts (sample accuracy %.2f, %.0f%% of prompts paired) -> %s",
            len(pairs),
            len(problems),
            stats["sample_accuracy"],
            100 * stats["prompts_with_pairs"],
            pairs_file,
        )
    if not pairs:
        raise DataError(f"dpo: {pairs_file} holds no preference pairs; delete it to resample")

    dataset = Dataset.from_dict(
        {
            "prompt": [p.prompt for p in pairs],
            "chosen": [p.chosen for p in pairs],
            "rejected": [p.rejected for p in pairs],
        }
    )
    longest_prompt = max(len(tokenizer(p.prompt)["input_ids"]) for p in pairs)
    args = DPOConfig(
        **stage_args(config, cfg, out_dir),  # type: ignore[arg-type]
        beta=cfg.dpo_beta,
        # A pair is two completions; batch_size counts completions, as in the GRPO family.
        per_device_train_batch_size=device_batch(max(1, cfg.batch_size // 2), "rlvr.batch_size / 2 (pairs)"),
        max_length=longest_prompt + cfg.max_completion_length + 1,  # +1: TRL appends EOS
        trust_remote_code=config.model.trust_remote_code,
    )
    # No ref_model: TRL reloads it from the policy's `_name_or_path` (the start model's folder, which is
    # why `tiny` is materialized first), or, for a LoRA policy, keeps a frozen copy of the adapter.
    trainer = DPOTrainer(
        model=model, args=one_gpu_per_process(args), train_dataset=dataset, processing_class=tokenizer
    )
    return trainer, tokenizer
