"""Dynamic sampling with refill: every optimiser batch is full of groups that carry signal."""

from pathlib import Path
from typing import Any

import pytest
import torch
from rl_helpers import StopAtStep, recording_trainer

from srl_rlvr.config import build_config
from srl_rlvr.errors import ConfigError
from srl_rlvr.train.dynamic_sampling import chosen_groups, informative_groups, merge_rollouts
from srl_rlvr.train.group_trainer import group_advantages, grpo_args


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


def test_a_resumed_run_refills_with_the_prompts_an_uninterrupted_run_draws(tmp_path: Path) -> None:
    # Dynamic sampling draws refill prompts from its own generator: a resumed run started it afresh,
    # so from the resumed step on it trained on other prompts (reward 0.823 vs 0.734 in the quickstart).
    settings = (
        "rlvr.max_steps=3",
        "rlvr.dynamic_sampling=true",
        "rlvr.min_group_std=0.01",
        "rlvr.max_draws=20",
    )
    whole = recording_trainer(tmp_path / "whole", *settings)
    whole.train()
    stopped = recording_trainer(tmp_path / "resumed", *settings)
    stopped.add_callback(StopAtStep(2))
    stopped.train()
    resumed = recording_trainer(tmp_path / "resumed", *settings)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-2"))
    assert [b["prompt_ids"].tolist() for b in resumed.batches] == [
        b["prompt_ids"].tolist() for b in whole.batches[2:]
    ]
    for (name, a), b in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def outcome(completions: list[str], constant: list[bool], **_: Any) -> list[float]:
    """The verifier: the 'constant' prompts are never answered right; the others are when the
    completion starts with an ASCII character (about half the time)."""
    return [
        0.0 if fixed else float(c[:1].isascii() and c != "")
        for c, fixed in zip(completions, constant, strict=True)
    ]


def shaping(completions: list[str], **_: Any) -> list[float]:
    """A shaping term that differs between completions whether or not they are right (like DAPO's
    length penalty on answers of different lengths)."""
    return [sum(map(ord, c)) % 7 / 7 for c in completions]


def test_dynamic_sampling_drops_groups_the_verifier_scores_alike_whatever_the_shaping(tmp_path: Path) -> None:
    # DAPO filters on accuracy (verl: filter_groups.metric acc): an all-wrong group whose shaped
    # rewards differ would teach only the shaping term.
    trainer = recording_trainer(
        tmp_path,
        "rlvr.max_steps=2",
        "rlvr.dynamic_sampling=true",
        "rlvr.max_draws=20",
        reward_funcs=(outcome, shaping),
    )
    trainer.train()
    tokenizer = trainer.processing_class
    for batch in trainer.batches:
        trained = batch["completion_mask"].sum(dim=1) > 0
        texts = tokenizer.batch_decode(batch["prompt_ids"][trained], skip_special_tokens=True)
        assert texts and not any("constant" in text for text in texts), "an all-wrong group was trained on"
    logged = [r for r in trainer.state.log_history if "dynamic_sampling/draws" in r]
    dropped = sum(r["dynamic_sampling/groups_drawn"] - r["dynamic_sampling/groups_kept"] for r in logged)
    assert dropped > 0, "no all-wrong group was drawn: the test saw nothing to drop"


def test_rows_left_out_of_the_loss_are_left_out_of_their_groups_statistics() -> None:
    # The last row was truncated and masked: it must not move the mean or spread of the other three.
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.9])
    live = torch.tensor([True, True, True, False])
    advantages = group_advantages(rewards, 4, "z_score", live)
    expected = (rewards[:3] - rewards[:3].mean()) / (rewards[:3].std() + 1e-4)
    assert torch.allclose(advantages[:3], expected) and advantages[3] == 0
    # only one live row differs from an all-wrong group: nothing left to learn from
    assert not informative_groups(torch.tensor([0.0, 0.0, 0.0, 1.0]), 4, 0.01, live).item()


def test_dynamic_sampling_refuses_a_batch_that_splits_groups_between_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # 24 completions over 2 processes is 12 each: one whole group of 8 and half of another.
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = build_config(overrides=["rlvr.algorithm=dapo", "rlvr.batch_size=24", "rlvr.num_generations=8"])
    with pytest.raises(ConfigError, match="whole rollout groups on each process"):
        grpo_args(config, config.rlvr, tmp_path, "dapo")
