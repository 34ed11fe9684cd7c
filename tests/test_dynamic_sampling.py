"""Dynamic sampling with refill: every optimiser batch is full of groups that carry signal."""

from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset

from srl_rlvr.config import build_config
from srl_rlvr.modeling import load_model, materialize
from srl_rlvr.train.dynamic_sampling import chosen_groups, merge_rollouts
from srl_rlvr.train.grpo import GroupTrainer, grpo_args


def half_constant_reward(completions: list[str], constant: list[bool], **_: Any) -> list[float]:
    """0.5 whatever the answer for the 'constant' prompts (no signal); else 1 for an ASCII first
    character, which a random byte-level model writes about half the time."""
    return [
        0.5 if fixed else float(c[:1].isascii() and c != "")
        for c, fixed in zip(completions, constant, strict=True)
    ]


class RecordingTrainer(GroupTrainer):
    """The rollout trainer, keeping each batch it hands to the optimiser so the test can look at it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[dict[str, Any]] = []

    def _generate_and_score_completions(self, inputs):  # type: ignore[no-untyped-def]
        output = super()._generate_and_score_completions(inputs)
        self.batches.append(output)
        return output


def recording_trainer(tmp_path: Path, *overrides: str) -> RecordingTrainer:
    """The rollout trainer on the tiny model: 8 completions a step in groups of 4, half the prompts
    'constant' (their rewards never differ)."""
    config = build_config(
        overrides=[
            "rlvr.batch_size=8",
            "rlvr.num_generations=4",
            "rlvr.max_completion_length=4",
            "rlvr.learning_rate=1e-4",
            *overrides,
        ]
    )
    prompts = [f"Problem {i} (constant)." if i % 2 else f"Problem {i}. Start with ASCII." for i in range(16)]
    dataset = Dataset.from_dict({"prompt": prompts, "constant": [i % 2 == 1 for i in range(16)]})
    model, tokenizer = load_model(materialize(config.model, tmp_path / "base"))
    return RecordingTrainer(
        model=model,
        reward_funcs=[half_constant_reward],
        args=grpo_args(config, config.rlvr, tmp_path, "grpo"),
        train_dataset=dataset,
        processing_class=tokenizer,
        stage=config.rlvr,
    )


def test_refill_trains_only_on_informative_groups_at_the_configured_batch_size(tmp_path: Path) -> None:
    trainer = recording_trainer(
        tmp_path,
        "rlvr.max_steps=3",
        "rlvr.dynamic_sampling=true",
        "rlvr.min_group_std=0.01",
        "rlvr.max_draws=20",
    )
    tokenizer = trainer.processing_class
    trainer.train()

    assert len(trainer.batches) == 3
    for batch in trainer.batches:
        assert batch["completion_ids"].size(0) == 8, "the batch keeps its configured size"
        assert bool((batch["completion_mask"].sum(dim=1) > 0).all()), "no masked filler was needed"
        texts = tokenizer.batch_decode(batch["prompt_ids"], skip_special_tokens=True)
        assert not any("constant" in text for text in texts), "a group without signal was trained on"
        assert bool((batch["advantages"].view(-1, 4).std(dim=1) > 0).all())
    logged = [r for r in trainer.state.log_history if "dynamic_sampling/draws" in r]
    assert len(logged) == 3
    assert max(r["dynamic_sampling/draws"] for r in logged) > 1, "refill never drew a second batch"
    assert sum(r["dynamic_sampling/groups_drawn"] for r in logged) > sum(
        r["dynamic_sampling/groups_kept"] for r in logged
    )
    assert all(r["dynamic_sampling/groups_kept"] == 2 for r in logged)


def test_when_the_draw_budget_runs_out_uninformative_groups_fill_in_masked() -> None:
    keep = torch.tensor([False, True, False, False])
    groups, informative = chosen_groups(keep, wanted=3)
    assert groups.tolist() == [1, 0, 2] and informative.tolist() == [True, False, False]


def test_rollouts_of_different_widths_merge_with_prompts_left_padded() -> None:
    first = {
        "prompt_ids": torch.tensor([[5, 6]]),
        "completion_ids": torch.tensor([[7]]),
        "advantages": torch.tensor([1.0]),
        "num_items_in_batch": torch.tensor(1),
    }
    second = {
        "prompt_ids": torch.tensor([[1, 2, 3]]),
        "completion_ids": torch.tensor([[8, 9]]),
        "advantages": torch.tensor([-1.0]),
        "num_items_in_batch": torch.tensor(2),
    }
    merged = merge_rollouts([first, second], pad_token_id=0)
    assert merged["prompt_ids"].tolist() == [[0, 5, 6], [1, 2, 3]]
    assert merged["completion_ids"].tolist() == [[7, 0], [8, 9]]
    assert merged["advantages"].tolist() == [1.0, -1.0] and "num_items_in_batch" not in merged


def test_masked_rows_do_not_shrink_the_per_sequence_grpo_loss(tmp_path: Path) -> None:
    # TRL's 'grpo' loss is a mean over rows; a masked row (filler group, truncated completion) must
    # not count as a zero in it, or the gradient shrinks with the fraction kept.
    trainer = recording_trainer(tmp_path, "rlvr.max_steps=1", "rlvr.dynamic_sampling=false")
    trainer.train()
    batch = trainer.batches[0]
    half = {k: v[:4] if isinstance(v, torch.Tensor) and v.dim() else v for k, v in batch.items()}
    masked = {**batch, "completion_mask": batch["completion_mask"].clone()}
    masked["completion_mask"][4:] = 0
    with torch.no_grad():
        assert float(trainer._compute_loss(trainer.model, masked)) == pytest.approx(
            float(trainer._compute_loss(trainer.model, half)), rel=1e-4, abs=1e-7
        )
