"""The rollout trainer's loss: what TRL's GRPO loss gets from us on top."""

import math
from pathlib import Path

import pytest
import torch
from rl_helpers import recording_trainer

from srl_rlvr.train.group_trainer import KL_LOG_RATIO_CAP, with_row_scale


def test_masked_rows_do_not_shrink_the_per_sequence_grpo_loss(tmp_path: Path) -> None:
    # TRL's 'grpo' loss is a mean over rows; a masked row (filler group, truncated completion) must
    # not count as a zero in it, or the gradient shrinks with the fraction kept.
    trainer = recording_trainer(tmp_path, "rlvr.max_steps=1", "rlvr.dynamic_sampling=false")
    trainer.train()
    batch = trainer.batches[0]
    half = with_row_scale(
        {k: v[:4] if isinstance(v, torch.Tensor) and v.dim() else v for k, v in batch.items()}
    )
    masked = {**batch, "completion_mask": batch["completion_mask"].clone()}
    masked["completion_mask"][4:] = 0
    masked = with_row_scale(masked)
    with torch.no_grad():
        assert float(trainer._compute_loss(trainer.model, masked)) == pytest.approx(
            float(trainer._compute_loss(trainer.model, half)), rel=1e-4, abs=1e-7
        )


def test_micro_batches_take_the_same_step_as_one_pass(tmp_path: Path) -> None:
    # micro_batch_size trades memory for passes: the rollouts, the loss and the gradient of the step
    # are those of the whole batch at once.
    steps = {}
    for micro in (8, 2):
        trainer = recording_trainer(
            tmp_path / str(micro),
            "rlvr.max_steps=1",
            "rlvr.dynamic_sampling=false",
            f"rlvr.micro_batch_size={micro}",
        )
        trainer.train()
        assert trainer.args.gradient_accumulation_steps == 8 // micro
        logged = next(entry for entry in trainer.state.log_history if "grad_norm" in entry)
        steps[micro] = (trainer.batches[0]["completion_ids"], logged)
    (whole_ids, whole), (micro_ids, micro) = steps[8], steps[2]
    assert torch.equal(whole_ids, micro_ids)
    assert micro["grad_norm"] == pytest.approx(whole["grad_norm"], rel=1e-3)
    assert micro["loss"] == pytest.approx(whole["loss"], rel=1e-3, abs=1e-6)


def test_the_kl_cap_bounds_a_token_the_reference_likes_far_more_on_a_copy_of_trls_buffer(
    tmp_path: Path,
) -> None:
    # Where the policy has learned to avoid a token the reference likes (ref - logp = 7 here), k3 is
    # e^7 - 8 = 1,089 per token; bounded, it is e^2.6 - 3.6 = 9.86 and still pulls the token back.
    # TRL hands the same buffered rollout batch to every pass (num_iterations > 1): a cap written
    # into it would make pass k read min(ref, logp_1 + cap, ...) instead of min(ref, logp_k + cap).
    trainer = recording_trainer(tmp_path, "rlvr.max_steps=1", "rlvr.dynamic_sampling=false")
    trainer.train()
    batch = dict(trainer.batches[0])
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        logps, *_ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, attention, batch["completion_ids"].size(1)
        )
    batch["ref_per_token_logps"] = logps + 7.0
    buffered = batch["ref_per_token_logps"].clone()
    loss = trainer._compute_loss(trainer.model, batch)
    assert torch.equal(batch["ref_per_token_logps"], buffered), "the cap wrote into TRL's buffer"
    assert math.isfinite(loss.item())
    bound = math.exp(KL_LOG_RATIO_CAP) - KL_LOG_RATIO_CAP - 1
    assert trainer._metrics["train"]["kl"][-1] == pytest.approx(bound, rel=1e-3)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in trainer.model.parameters() if p.grad is not None)


def test_rescaling_for_masked_rows_leaves_the_entropy_bonus_alone(tmp_path: Path) -> None:
    # With half the rows masked, the per-sequence policy term is doubled back to the live rows'
    # mean; TRL's entropy bonus is already a mean over live tokens and must not double with it.
    trainer = recording_trainer(
        tmp_path, "rlvr.max_steps=1", "rlvr.dynamic_sampling=false", "rlvr.entropy_coef=0.5"
    )
    trainer.train()
    batch = trainer.batches[0]
    half = with_row_scale(
        {k: v[:4] if isinstance(v, torch.Tensor) and v.dim() else v for k, v in batch.items()}
    )
    masked = {**batch, "completion_mask": batch["completion_mask"].clone()}
    masked["completion_mask"][4:] = 0
    masked = with_row_scale(masked)
    with torch.no_grad():
        assert float(trainer._compute_loss(trainer.model, masked)) == pytest.approx(
            float(trainer._compute_loss(trainer.model, half)), rel=1e-4, abs=1e-7
        )
