"""One rank of the scale-out options test (`test_scale_out.py`), started by torchrun with two processes
over gloo: the rollout trainer on the tiny model, trained a few steps once with each `scale_out`
option (none, each alone, all), and what each run's rewards were, in order, written as JSON.

Rollouts are sampled (temperature 1) from the same seed in every run, and the learning rate is high
enough that each step's weights, and so the next step's rollouts, depend on the rewards before it:
one reward out of place would change every later number.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

from datasets import Dataset

from srl_rlvr.config import build_config
from srl_rlvr.distributed import rank, state
from srl_rlvr.modeling import load_model, materialize
from srl_rlvr.train import reward_pool
from srl_rlvr.train.group_trainer import GroupTrainer, grpo_args
from srl_rlvr.train.similarity import similarities
from srl_rlvr.train.srl import make_srl_reward

VARIANTS = {  # in this order: once served, the host pool stays for the rest of the process
    "off": {},
    "overlap_rewards": {"overlap_rewards": True},
    "ddp_static_graph": {"ddp_static_graph": True},
    "host_reward_pool": {"host_reward_pool": True},
    "all": {"overlap_rewards": True, "ddp_static_graph": True, "host_reward_pool": True},
}
LOGGED = (
    "loss",
    "reward",
    "kl",
    "format_failure_rate",
    "rewards/srl_step_reward/mean",
    "rewards/pooled/mean",
)
EXPERT = "add seven to the running total, then carry the one into the tens column; " * 4


THREADS: list[str] = []  # the thread each batch's rewards ran in


def pooled(completions: list[str], expert_action: list[str], **_: Any) -> list[float]:
    """Step similarity through the worker pool whatever the batch's size (SRL's own reward keeps
    small batches in-process), so the host pool's route is taken where it is on."""
    THREADS.append(threading.current_thread().name)
    return similarities(list(zip(completions, expert_action, strict=True)), min_work=0)


class RewardRecorder(GroupTrainer):
    """The rollout trainer, keeping each batch's rewards as the advantages receive them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rewards: list[list[list[float]]] = []

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self.rewards.append(rewards.tolist())
        return rewards


def train(out: Path, options: dict[str, bool]) -> dict[str, Any]:
    config = build_config(
        overrides=[
            "srl.batch_size=16",
            "srl.num_generations=4",
            "srl.max_completion_length=24",
            "srl.max_steps=3",
            "srl.learning_rate=1e-3",
            "srl.kl_penalty_weight=0.1",  # a reference log-prob pass for the rewards to overlap
            "srl.dynamic_sampling=false",
            "srl.require_think=false",
            "srl.eval_steps=0",
            "srl.save_steps=1000",
            *(f"srl.scale_out.{name}={value}" for name, value in options.items()),
        ]
    )
    # TRL builds the reference model from the policy's folder: the tiny model written once (rank 0)
    model, tokenizer = load_model(materialize(config.model, out.parent / "base"))
    prompts = [f"Problem {i}: what is {i} + 7? Step:" for i in range(32)]
    dataset = Dataset.from_dict(
        {"prompt": prompts, "expert_action": [f"{i} + 7 = {i + 7}. {EXPERT}" for i in range(32)]}
    )
    host_before, served_before = reward_pool.batches["host"], reward_pool.host_pool_served()
    THREADS.clear()
    trainer = RewardRecorder(
        model=model,
        reward_funcs=[make_srl_reward(config.srl), pooled],
        args=grpo_args(config, config.srl, out, config.srl.loss_type),
        train_dataset=dataset,
        processing_class=tokenizer,
        stage=config.srl,
    )
    trainer.train()
    logs = [{k: log[k] for k in LOGGED if k in log} for log in trainer.state.log_history if "loss" in log]
    return {
        "rewards": trainer.rewards,
        "logs": logs,
        "ddp_static_graph": getattr(trainer.model_wrapped, "static_graph", None),
        "reward_threads": sorted(set(THREADS)),
        "host_pool_batches": reward_pool.batches["host"] - host_before,
        "host_pool_served": reward_pool.host_pool_served() - served_before,
    }


def main(out: str) -> None:
    state()  # the gloo process group
    runs = {name: train(Path(out) / name, options) for name, options in VARIANTS.items()}
    (Path(out) / f"rank{rank()}.json").write_text(json.dumps(runs))


if __name__ == "__main__":
    main(sys.argv[1])
