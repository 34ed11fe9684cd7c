"""The rollout copy: a LoRA policy's adapters merged into plain weights the fast engine runs, equal to
peft's own forward token for token (float32, CPU), kept current in place after a training step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from test_rollout import FAST_RLVR, TOKENIZER, hf_greedy, lively, mixed_prompts

from srl_rlvr.config import build_config
from srl_rlvr.modeling import tiny_model
from srl_rlvr.rollout import FastEngine, HFEngine, SamplingParams
from srl_rlvr.rollout.weights_copy import RolloutCopy
from srl_rlvr.train.group_trainer import GroupTrainer, grpo_args

GREEDY = SamplingParams(max_new_tokens=32, temperature=0)


def lora_policy(r: int, targets: str | list[str], seed: int = 0) -> torch.nn.Module:
    """A tiny model with a LoRA adapter whose B is not zero (peft's default init is a no-op)."""
    base = lively(tiny_model(TOKENIZER), seed=seed)
    config = LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=targets, lora_dropout=0.1, init_lora_weights=False
    )
    torch.manual_seed(seed + 1)
    policy = get_peft_model(base, config)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.2)
    return policy.eval()


@pytest.mark.parametrize(
    ("r", "targets"),
    [(4, ["q_proj", "v_proj"]), (16, "all-linear"), (64, ["gate_proj", "up_proj", "down_proj", "o_proj"])],
    ids=["r4-qv", "r16-all-linear", "r64-mlp-and-o"],
)
def test_the_engine_on_the_merged_copy_matches_peft_token_for_token(r: int, targets: str | list[str]) -> None:
    policy = lora_policy(r, targets)
    prompts = mixed_prompts()
    rollout = FastEngine(RolloutCopy(policy).model, window=16).generate(prompts, GREEDY)
    assert rollout.completion_ids == hf_greedy(policy, prompts, 32)  # peft's forward, dropout off in eval
    with policy.disable_adapter():
        assert rollout.completion_ids != hf_greedy(policy, prompts, 32)  # the adapter matters


def test_a_refresh_after_a_training_step_updates_the_copy_in_place() -> None:
    policy = lora_policy(8, "all-linear")
    rollout_copy = RolloutCopy(policy)
    engine = FastEngine(rollout_copy.model, window=16, pack=True)  # as the trainer makes it
    pointers = engine.decoder.weight_pointers()
    prompts = mixed_prompts()
    before = engine.generate(prompts, GREEDY).completion_ids
    with torch.no_grad():  # what an optimiser step on the adapter does
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.mul_(-1.5)
    rollout_copy.refresh()
    after = engine.generate(prompts, GREEDY).completion_ids
    assert engine.decoder.weight_pointers() == pointers  # same storage: captured graphs stay valid
    assert after != before and after == hf_greedy(policy, prompts, 32)


def test_a_bfloat16_copy_of_float32_master_weights_halves_their_memory() -> None:
    policy = lively(tiny_model(TOKENIZER))
    rollout_copy = RolloutCopy(policy, dtype=torch.bfloat16)
    assert rollout_copy.model.lm_head.weight.dtype == torch.bfloat16
    assert rollout_copy.nbytes * 2 == sum(p.numel() * p.element_size() for p in policy.parameters())
    with torch.no_grad():
        policy.model.layers[0].mlp.down_proj.weight.add_(1.0)
    rollout_copy.refresh()
    expected = policy.model.layers[0].mlp.down_proj.weight.to(torch.bfloat16)
    assert torch.equal(rollout_copy.model.model.layers[0].mlp.down_proj.weight, expected)


def test_a_lora_policy_trains_with_fast_rollouts_from_its_refreshed_copy(tmp_path: Path) -> None:
    config = build_config(overrides=[f"output_dir={tmp_path}", *FAST_RLVR, "rlvr.learning_rate=0.05"])
    policy = lora_policy(4, "all-linear").train()

    def reward(completions: list[str], **kwargs: object) -> list[float]:
        return [float(len(c)) for c in completions]  # varies within a group: every step has a gradient

    trainer = GroupTrainer(
        model=policy,
        reward_funcs=[reward],
        args=grpo_args(config, config.rlvr, tmp_path, "grpo"),
        train_dataset=Dataset.from_dict({"prompt": ["2+2=", "hello", "a longer prompt", "x"] * 4}),
        processing_class=TOKENIZER,
        stage=config.rlvr,
    )
    trainer.train()
    assert isinstance(trainer._fast_engine, FastEngine) and trainer._rollout_copy is not None
    assert trainer._copy_step == 1  # refreshed before step 2's rollouts, after step 1's update
    merged = RolloutCopy(trainer.model)  # the policy as it is now, merged afresh
    stale = trainer._rollout_copy.model.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(stale, merged.model.model.layers[0].self_attn.q_proj.weight)  # step 2 moved on
    trainer._rollout_copy.refresh()
    assert torch.equal(stale, merged.model.model.layers[0].self_attn.q_proj.weight)


def test_the_embedded_model_with_a_trained_adapter_matches_peft_through_the_engine() -> None:
    from srl_rlvr.config import ModelConfig
    from srl_rlvr.modeling import load_model
    from srl_rlvr.tasks import load_task

    base, tokenizer = load_model(ModelConfig(name_or_path="embedded", dtype="float32"))
    policy = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    task = load_task("arithmetic")
    texts = [
        task.prompt(p) + task.solve(p).solution_text() + tokenizer.eos_token
        for p in task.sample(32, 1, "train")
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimiser = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(15):  # enough for the adapter to change what the model writes
        policy(**batch, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    policy.eval()
    prompts = [tokenizer(task.prompt(p))["input_ids"] for p in task.sample(24, 0, "test")]
    params = SamplingParams(max_new_tokens=64, temperature=0, stop_token_ids=(tokenizer.eos_token_id,))
    engine = FastEngine(RolloutCopy(policy).model, window=16, pack=True)
    with_adapter = HFEngine(policy, pad_token_id=tokenizer.pad_token_id).generate(prompts, params)
    assert engine.generate(prompts, params).completion_ids == with_adapter.completion_ids
    with policy.disable_adapter():
        without = HFEngine(policy, pad_token_id=tokenizer.pad_token_id).generate(prompts, params)
    assert without.completion_ids != with_adapter.completion_ids
