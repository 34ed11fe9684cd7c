import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from rl_helpers import FirstCharacterTask, NaNGradientsAtStep, SigtermAtStep, StopAtStep, recording_trainer
from safetensors.torch import load_file
from transformers import TrainerControl, TrainerState, TrainingArguments

from srl_rlvr.cli import main
from srl_rlvr.config import Config, build_config
from srl_rlvr.errors import ConfigError, TaskError
from srl_rlvr.tasks import Problem
from srl_rlvr.train.guard import StabilityGuard
from srl_rlvr.train.ppo import VALUE_HEAD_FILE, PPOTrainer, gae, terminal_rewards
from srl_rlvr.train.rewards import outcome_reward, overlong_penalty, reward_functions
from srl_rlvr.train.rlvr import train_rlvr
from srl_rlvr.train.runner import TrainingInterrupted

TASK = FirstCharacterTask()


def rlvr_config(tmp_path: Path, *overrides: str) -> Config:
    return build_config(
        overrides=[
            f"output_dir={tmp_path}",
            "rlvr.max_steps=2",
            "rlvr.batch_size=8",
            "rlvr.num_generations=4",
            "rlvr.max_completion_length=6",
            "rlvr.learning_rate=1e-3",
            "rlvr.eval_steps=0",
            "rlvr.save_steps=2",
            *overrides,
        ]
    )


def records(out: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def step_records(out: Path) -> list[dict[str, float]]:
    return [r for r in records(out) if "loss" in r]


@pytest.mark.parametrize("algorithm", ["grpo", "dr_grpo", "dapo", "ppo", "dpo"])
def test_every_algorithm_trains_a_few_steps_with_finite_losses(algorithm: str, tmp_path: Path) -> None:
    # DAPO masks truncated completions, and the random model never stops by itself: keep them here.
    config = rlvr_config(tmp_path, f"rlvr.algorithm={algorithm}", "rlvr.mask_truncated_completions=false")
    final = train_rlvr(config, TASK.sample(16, 0, "train"), task=TASK)
    assert final == tmp_path / "rlvr" / "final" and (final / "config.json").is_file()
    steps = step_records(tmp_path / "rlvr")
    assert [r["step"] for r in steps] == [1, 2]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in steps)
    assert any(r["grad_norm"] > 0 for r in steps), "no gradient: nothing was trained"
    if algorithm == "dapo":  # DAPO has no KL term: no reference model, nothing to measure
        assert not any("kl" in r for r in steps)
    elif algorithm != "dpo":
        assert all(math.isfinite(r["kl"]) and "kl_weight" in r for r in steps)
    if algorithm != "dpo":  # rewards are logged on the steps that generate (every step_per_generation)
        assert 0.0 <= steps[0]["rewards/outcome/mean"] <= 1.0
    if algorithm == "ppo":
        assert all(math.isfinite(r["value_loss"]) for r in steps)


def test_gae_matches_a_hand_computed_example() -> None:
    # Row 1: three tokens, reward 1 at the end. Row 2: two tokens then padding, reward 0.
    values = torch.tensor([[0.5, 0.4, 0.2], [0.3, 0.6, 9.9]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards = terminal_rewards(torch.tensor([1.0, 0.0]), mask)
    assert rewards.tolist() == [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # delta_2 = 1 - 0.2 = 0.8; delta_1 = 0.9*0.2 - 0.4 = -0.22; A_1 = -0.22 + 0.72*0.8 = 0.356;
    # delta_0 = 0.9*0.4 - 0.5 = -0.14; A_0 = -0.14 + 0.72*0.356 = 0.11632.
    # Row 2: the padded value is ignored: A_1 = 0 - 0.6; A_0 = 0.9*0.6 - 0.3 + 0.72*(-0.6) = -0.192.
    expected = torch.tensor([[0.11632, 0.356, 0.8], [-0.192, -0.6, 0.0]])
    assert torch.allclose(advantages, expected, atol=1e-6)
    assert torch.allclose(returns, (expected + values) * mask, atol=1e-6)


def test_ppo_saves_a_plain_causal_lm_with_the_value_head_beside_it(tmp_path: Path) -> None:
    final = train_rlvr(rlvr_config(tmp_path, "rlvr.use_ppo=true"), TASK.sample(8, 0, "train"), task=TASK)
    assert not any(k.startswith("value_head") for k in load_file(final / "model.safetensors"))
    head = torch.load(final / VALUE_HEAD_FILE, weights_only=True)
    assert set(head) == {"linear.weight", "linear.bias"}
    assert head["linear.weight"].abs().sum() > 0, "the value head did not learn"


def test_a_run_resumed_inside_a_rollout_batch_trains_on_the_rollouts_an_uninterrupted_run_buffered(
    tmp_path: Path,
) -> None:
    # Two optimiser steps per rollout batch, stopped after the first: the resumed run once sampled a
    # new batch from the resumed weights at step 2, and from then on every batch began a step late.
    settings = ("rlvr.max_steps=3", "rlvr.steps_per_generation=2", "rlvr.save_steps=1")
    whole = recording_trainer(tmp_path / "whole", *settings)
    whole.train()
    stopped = recording_trainer(tmp_path / "resumed", *settings)
    stopped.add_callback(StopAtStep(1))
    stopped.train()
    resumed = recording_trainer(tmp_path / "resumed", *settings)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-1"))

    assert len(whole.batches) == 2 and len(resumed.batches) == 1
    assert torch.equal(resumed.batches[0]["completion_ids"], whole.batches[1]["completion_ids"]), (
        "the resumed run sampled its rollout batch at another step"
    )
    for (name, a), b in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_ppo_resumes_after_sigterm_with_its_value_head(tmp_path: Path) -> None:
    config = rlvr_config(tmp_path, "rlvr.algorithm=ppo", "rlvr.max_steps=4", "rlvr.save_steps=10")
    problems = TASK.sample(16, 0, "train")
    with pytest.raises(TrainingInterrupted) as stopped:
        train_rlvr(config, problems, task=TASK, callbacks=[SigtermAtStep(1)])
    checkpoint = Path(stopped.value.checkpoint or "")
    assert checkpoint.name == "checkpoint-2" and (checkpoint / VALUE_HEAD_FILE).is_file()
    kl_weight = json.loads((checkpoint / "kl_controller.json").read_text())["weight"]
    assert kl_weight == step_records(tmp_path / "rlvr")[-1]["kl_weight"]
    train_rlvr(config, problems, task=TASK, resume=True)
    assert [r["step"] for r in step_records(tmp_path / "rlvr")] == [1, 2, 3, 4]


def test_the_stability_guard_restores_the_last_good_checkpoint_and_samples_afresh_after_a_nan(
    tmp_path: Path,
) -> None:
    # Two passes over each rollout batch: steps 1, 3 and 5 would sample, 2 and 4 reuse.
    config = rlvr_config(
        tmp_path,
        "rlvr.max_steps=5",
        "rlvr.save_steps=2",
        "rlvr.num_iterations=2",
        "rlvr.steps_per_generation=1",
    )
    final = train_rlvr(config, TASK.sample(16, 0, "train"), task=TASK, callbacks=[NaNGradientsAtStep(3)])
    out = tmp_path / "rlvr"
    events = [json.loads(line) for line in (out / "stability.jsonl").read_text().splitlines()]
    assert len(events) == 1 and events[0]["step"] == 3 and "nan" in events[0]["reason"]
    assert events[0]["restored_from"].endswith("checkpoint-2") and events[0]["learning_rate_scale"] == 0.5
    saved = json.loads((out / "checkpoint-2" / "kl_controller.json").read_text())["weight"]
    assert events[0]["kl_weight"] == saved
    assert not (out / "checkpoint-3").exists(), "the diverged step must not be checkpointed"
    steps = {r["step"]: r for r in step_records(out)}
    assert all(math.isfinite(steps[s]["loss"]) and math.isfinite(steps[s]["grad_norm"]) for s in (4, 5))
    # The scheduler is back at checkpoint-2's position: step 4 re-runs step 3's rate, halved.
    assert steps[4]["learning_rate"] == pytest.approx(steps[3]["learning_rate"] * 0.5)
    weights = load_file(final / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    # The rollouts TRL buffered for step 4 led up to the blow-up: step 4 samples from the restored
    # weights instead of reusing them (and their old log-probs).
    assert [step for step, r in sorted(steps.items()) if "rewards/outcome/mean" in r] == [1, 3, 4]


def test_a_restore_puts_the_adaptive_kl_weight_back_to_the_checkpoints(tmp_path: Path) -> None:
    # No checkpoint after the start: the restore at step 3 goes back to step 0, and so must the KL
    # weight, which the controller had moved on steps 1 and 2.
    config = rlvr_config(tmp_path, "rlvr.max_steps=4", "rlvr.save_steps=10", "rlvr.kl_penalty_weight=0.05")
    train_rlvr(config, TASK.sample(16, 0, "train"), task=TASK, callbacks=[NaNGradientsAtStep(3)])
    out = tmp_path / "rlvr"
    event = json.loads((out / "stability.jsonl").read_text().splitlines()[0])
    assert event["restored_from"].endswith("checkpoint-0") and event["kl_weight"] == 0.05
    assert {r["step"]: r for r in step_records(out)}[2]["kl_weight"] != 0.05


def test_validation_keeps_the_best_model_and_stops_early(tmp_path: Path) -> None:
    # Greedy decoding answers all validation problems alike; with a tiny learning rate nothing beats
    # the start, so two checks without a new best stop the run at step 2 of 10.
    config = rlvr_config(
        tmp_path,
        "rlvr.max_steps=10",
        "rlvr.eval_steps=1",
        "rlvr.early_stopping_patience=2",
        "rlvr.learning_rate=1e-9",
    )
    result = train_rlvr(config, TASK.sample(16, 0, "train"), task=TASK, val_problems=TASK.sample(4, 0, "val"))
    out = tmp_path / "rlvr"
    assert result == out / "final" and not (out / "best").exists()
    saved = json.loads((result / "validation.json").read_text())
    assert saved["step"] == 0 and set(saved["metrics"]) == {"reward", "accuracy"}
    logged = records(out)
    assert max(r["step"] for r in logged) == 2
    assert "val_start/reward" in logged[0] and all("val/reward" in r for r in step_records(out))


def test_shaping_terms_join_the_outcome_reward_only_when_weighted() -> None:
    config = build_config(overrides=["rlvr.format_reward=0.1", "rlvr.length_penalty=0.5"])
    functions, weights = reward_functions(TASK, TASK.sample(2, 0, "train"), config.rlvr)
    assert [f.__name__ for f in functions] == ["outcome", "answer_format", "overlong"]
    assert weights == [1.0, 0.1, 0.5]
    assert len(reward_functions(TASK, [], build_config().rlvr)[0]) == 1
    penalty = overlong_penalty(max_length=10, buffer=4)
    assert penalty(completion_ids=[[0] * 6, [0] * 8, [0] * 10, [0] * 12]) == [0.0, -0.5, -1.0, -1.0]


def test_a_failing_user_reward_names_the_problem() -> None:
    class Broken(FirstCharacterTask):
        def reward(self, completion: str, problem: Problem) -> float:
            raise KeyError("label")

    problem = Problem(id="p-7", text="x", answer=None)
    with pytest.raises(TaskError, match=r"p-7.*KeyError"):
        outcome_reward(Broken(), [problem])(completions=["a"], problem_id=["p-7"])


def test_algorithm_presets_fill_only_what_the_user_left_unset() -> None:
    dapo = build_config(overrides=["rlvr.algorithm=dapo"]).rlvr
    assert (dapo.clip_epsilon_high, dapo.mask_truncated_completions, dapo.loss_type) == (0.28, True, "dapo")
    assert (dapo.kl_penalty_weight, dapo.length_penalty, dapo.dynamic_sampling) == (0.0, 0.5, True)
    assert dapo.steps_per_generation == 4, "DAPO makes several minibatch updates per rollout batch"
    assert (
        build_config(overrides=["rlvr.algorithm=dapo", "rlvr.clip_epsilon_high=0.3"]).rlvr.clip_epsilon_high
        == 0.3
    )
    assert build_config(overrides=["rlvr.algorithm=dr_grpo"]).rlvr.reward_norm_method == "group"
    assert build_config(overrides=["rlvr.use_ppo=true"]).rlvr.algorithm == "ppo"


def test_cli_trains_rlvr_from_a_stage_folder_and_rejects_a_bad_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [f"output_dir={tmp_path}", "model.name_or_path=tiny", "data.train_size=8", "rlvr.eval_steps=0"]
    small = [
        "rlvr.max_steps=1",
        "rlvr.batch_size=4",
        "rlvr.num_generations=2",
        "rlvr.max_completion_length=4",
    ]
    with pytest.raises(SystemExit) as first:
        main(["train", "rlvr", *common, *small, "--out", str(tmp_path / "first")])
    assert first.value.code == 0 and (tmp_path / "first" / "final" / "config.json").is_file()
    with pytest.raises(SystemExit) as second:
        main(
            [
                "train",
                "rlvr",
                *common,
                *small,
                "--model",
                str(tmp_path / "first"),
                "--out",
                str(tmp_path / "2"),
            ]
        )
    assert second.value.code == 0
    assert f"model {tmp_path / 'first' / 'final'}" in capsys.readouterr().err.replace("\n", "")
    with pytest.raises(SystemExit) as bad:
        main(["train", "rlvr", *common, "rlvr.batch_size=3", "--model", str(tmp_path / "first")])
    assert bad.value.code == 2
    assert "multiple of num_generations" in capsys.readouterr().err


def test_the_guard_restores_on_a_kl_spike_only_when_the_next_step_spikes_too(tmp_path: Path) -> None:
    guard = StabilityGuard(trainer=None, out_dir=tmp_path, spike_factor=5.0, max_kl=0.1)
    guard._restore = lambda: "checkpoint-x"  # type: ignore[method-assign]  # the restore itself: test above
    state, control = TrainerState(), TrainerControl()

    def log_step(step: int, kl: float) -> None:
        state.global_step = step
        guard.on_log(TrainingArguments(str(tmp_path)), state, control, logs={"kl": kl, "reward": 0.5})

    for step, kl in enumerate([0.05, 0.06, 0.05, 3.0, 0.05, 0.06], start=1):
        log_step(step, kl)
    assert guard.restores == 0, "one heavy-tailed batch is not a divergence"

    log_step(7, 3.0)
    log_step(8, 2.5)
    assert guard.restores == 1
    event = json.loads((tmp_path / "stability.jsonl").read_text().splitlines()[0])
    assert event["step"] == 8 and event["reason"].startswith("kl spike")


def clip_metrics(out: Path) -> dict[str, float]:
    """The largest clip fraction logged over a run, per metric."""
    steps = step_records(out)
    keys = ("clip_ratio/region_mean", "value_clip_ratio")
    return {k: max(r[k] for r in steps) for k in keys if any(k in r for r in steps)}


@pytest.mark.parametrize("algorithm", ["grpo", "dapo", "ppo"])
def test_the_clips_act_only_when_a_rollout_batch_is_reused(algorithm: str, tmp_path: Path) -> None:
    # With one pass the policy that is trained is the one that sampled: every ratio is exactly 1 and
    # nothing can be clipped. With mu = 4 passes at a large learning rate, the second pass already
    # sees a moved policy (and, for PPO, moved values), and the clips cut in.
    problems = TASK.sample(16, 0, "train")
    fractions = {}
    for mu in (1, 4):
        config = rlvr_config(
            tmp_path / f"mu{mu}",
            f"rlvr.algorithm={algorithm}",
            "rlvr.mask_truncated_completions=false",
            "rlvr.dynamic_sampling=false",
            "rlvr.steps_per_generation=1",
            f"rlvr.num_iterations={mu}",
            "rlvr.max_steps=4",
            "rlvr.learning_rate=3e-2",
        )
        train_rlvr(config, problems, task=TASK)
        fractions[mu] = clip_metrics(tmp_path / f"mu{mu}" / "rlvr")
    assert all(value == 0.0 for value in fractions[1].values()), fractions[1]
    assert fractions[4]["clip_ratio/region_mean"] > 0, fractions[4]
    if algorithm == "ppo":
        assert fractions[4]["value_clip_ratio"] > 0, fractions[4]


def test_ppo_defaults_to_four_epochs_of_four_minibatches_and_no_discount() -> None:
    ppo = build_config(overrides=["rlvr.algorithm=ppo"]).rlvr
    assert (ppo.num_iterations, ppo.steps_per_generation, ppo.gamma, ppo.lam) == (4, 4, 1.0, 0.95)
    assert ppo.entropy_coef == 0.01 and ppo.dynamic_sampling is False
    # Older configs' keys (use_ppo and the like) still load and mean what they say.
    spec = build_config(overrides=["rlvr.use_ppo=true", "rlvr.gamma=0.99", "rlvr.epochs=3"]).rlvr
    assert (spec.algorithm, spec.gamma, spec.epochs) == ("ppo", 0.99, 3)
    with pytest.raises(ConfigError, match="dynamic_sampling is for the GRPO family"):
        build_config(overrides=["rlvr.algorithm=ppo", "rlvr.dynamic_sampling=true"])


def test_the_grpo_family_has_no_entropy_bonus_unless_asked() -> None:
    for algorithm in ("grpo", "dr_grpo", "dapo"):
        assert build_config(overrides=[f"rlvr.algorithm={algorithm}"]).rlvr.entropy_coef == 0.0
    assert build_config(overrides=["rlvr.entropy_coef=0.02"]).rlvr.entropy_coef == 0.02


def test_training_switches_off_cudnn_attention_whose_backward_returned_nan_gradients(tmp_path: Path) -> None:
    # On an H200 the cuDNN SDPA backend's backward gave non-finite gradients on ordinary batches
    # (BENCHMARKS.md); every stage must train with it off. Here it is a flag: no GPU is needed.
    torch.backends.cuda.enable_cudnn_sdp(True)
    train_rlvr(rlvr_config(tmp_path, "rlvr.max_steps=1"), TASK.sample(8, 0, "train"), task=TASK)
    assert not torch.backends.cuda.cudnn_sdp_enabled()


def test_dapo_warns_when_its_overlong_penalty_would_punish_right_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The random model writes all 6 tokens; with the penalty from token 2 on, every right answer pays.
    config = rlvr_config(
        tmp_path,
        "rlvr.algorithm=dapo",
        "rlvr.mask_truncated_completions=false",
        "rlvr.max_steps=1",
        "rlvr.overlong_buffer=4",
    )
    with caplog.at_level(logging.WARNING, logger="srl_rlvr.train.group_trainer"):
        train_rlvr(config, TASK.sample(8, 0, "train"), task=TASK)
    assert "overlong penalty starts at 2 tokens but right answers have a median of 6" in caplog.text


def test_a_checkpoint_is_written_when_the_save_interval_in_minutes_has_passed(tmp_path: Path) -> None:
    # save_steps alone (50) would write none in a 3-step run; a kill -9 would lose it all. With a
    # wall-clock interval shorter than any step, every step checkpoints.
    config = rlvr_config(tmp_path, "rlvr.max_steps=3", "rlvr.save_steps=50", "rlvr.save_minutes=1e-9")
    train_rlvr(config, TASK.sample(8, 0, "train"), task=TASK)
    out = tmp_path / "rlvr"
    assert {p.name for p in out.glob("checkpoint-*")} >= {"checkpoint-1", "checkpoint-2", "checkpoint-3"}
    config = rlvr_config(tmp_path / "off", "rlvr.max_steps=3", "rlvr.save_steps=50", "rlvr.save_minutes=0")
    train_rlvr(config, TASK.sample(8, 0, "train"), task=TASK)
    written = {p.name for p in (tmp_path / "off" / "rlvr").glob("checkpoint-*")}
    assert not written & {"checkpoint-1", "checkpoint-2"}, "steps only: nothing between start and end"


def test_dapo_weighs_a_right_answer_at_the_length_limit_above_a_short_wrong_one() -> None:
    # DAPO scores +1/-1 with an overlong penalty down to -1: right at the limit (0) sits halfway
    # between right (1) and wrong (-1). Our outcome is 1/0, so the penalty's full weight is 0.5.
    cfg = build_config(overrides=["rlvr.algorithm=dapo", "rlvr.max_completion_length=64"]).rlvr
    problems = TASK.sample(1, 0, "train")
    functions, weights = reward_functions(TASK, problems, cfg)

    def total(completion: str, tokens: int) -> float:
        columns = {
            "completions": [completion],
            "problem_id": [problems[0].id],
            "completion_ids": [[0] * tokens],
        }
        return sum(w * f(**columns)[0] for f, w in zip(functions, weights, strict=True))

    right_at_limit, right_short, wrong_short = total("a", 64), total("a", 8), total("\u00e9", 8)
    assert (right_short, right_at_limit, wrong_short) == (1.0, 0.5, 0.0)


class SplitRecordingPPO(PPOTrainer):
    """PPO keeping the rows of every minibatch it trains on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.minibatches: list[frozenset[tuple[int, ...]]] = []

    def _compute_loss(self, model, inputs):  # type: ignore[no-untyped-def]
        rows = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1).tolist()
        self.minibatches.append(frozenset(map(tuple, rows)))
        return super()._compute_loss(model, inputs)


def test_ppo_draws_a_new_minibatch_split_every_epoch(tmp_path: Path) -> None:
    # One rollout batch of 16, two minibatches of 8, two epochs: the second epoch's minibatches are a
    # fresh split of the same 16 rows, not the first epoch's again.
    trainer = recording_trainer(
        tmp_path,
        "rlvr.algorithm=ppo",
        "rlvr.steps_per_generation=2",
        "rlvr.num_iterations=2",
        "rlvr.max_steps=4",
        trainer_class=SplitRecordingPPO,
    )
    trainer.train()
    first, second = trainer.minibatches[:2], trainer.minibatches[2:4]
    assert first[0] | first[1] == second[0] | second[1], "both epochs pass over the same rollouts"
    assert set(first) != set(second)


def test_options_an_algorithm_never_reads_are_refused_in_config_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for algorithm, option in (
        ("dpo", "rlvr.format_reward=0.1"),
        ("dpo", "rlvr.length_penalty=0.5"),
        ("dpo", "rlvr.micro_batch_size=2"),
        ("dpo", "rlvr.mask_truncated_completions=true"),
        ("ppo", "rlvr.reward_norm_method=group"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["config", "check", f"rlvr.algorithm={algorithm}", option])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        name = option.split(".")[1].split("=")[0]
        assert f"{name} would do nothing under algorithm {algorithm}" in err, err
    # a value that does nothing anyway (the default, written out) is no mistake
    assert build_config(overrides=["rlvr.algorithm=dpo", "rlvr.mask_truncated_completions=false"])
