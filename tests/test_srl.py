import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rl_helpers import NaNGradientsAtStep, SigtermAtStep
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, TrainerCallback

from srl_rlvr.config import Config, LoraConfig, SRLConfig, build_config
from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.tasks import load_task
from srl_rlvr.train import reward_pool
from srl_rlvr.train.adaptive_kl import AdaptiveKLController
from srl_rlvr.train.dynamic_sampling import informative_groups
from srl_rlvr.train.group_trainer import group_advantages
from srl_rlvr.train.runner import TrainingInterrupted
from srl_rlvr.train.similarity import similarities, step_similarity
from srl_rlvr.train.srl import (
    build_srl_dataset,
    line_end_tokens,
    make_srl_reward,
    parse_action,
    train_srl,
)

HERE = Path(__file__).parent

FOUR_STEPS = Trajectory(
    problem="Start with 2. Add 3. Multiply by 4. Subtract 5.",
    steps=[
        Step(action="2+3=5"),
        Step(action="5*4=20"),
        Step(action="20-5=15", reward=2.0),
        Step(action="Answer: 15"),
    ],
    expected_outcome="15",
)


def test_a_four_step_trajectory_expands_to_four_prompts_with_growing_context() -> None:
    dataset = build_srl_dataset([FOUR_STEPS], load_task("arithmetic"))
    assert len(dataset) == 4
    for k, row in enumerate(dataset):
        context = [step.action for step in FOUR_STEPS.steps[:k]]
        hidden = [step.action for step in FOUR_STEPS.steps[k:]]
        assert all(action in row["prompt"] for action in context)
        assert not any(action in row["prompt"] for action in hidden)
        assert row["expert_action"] == FOUR_STEPS.steps[k].action
        assert FOUR_STEPS.problem in row["prompt"]
    assert dataset["weight"] == [1.0, 1.0, 2.0, 1.0]


def test_the_exact_expert_action_scores_one_and_beats_any_corruption() -> None:
    reward = make_srl_reward(SRLConfig())
    expert = "5*4=20"
    corruptions = ["5*4=21", "5+4=9", "5*4", "20", "5*4=20=20", "4*5=20"]
    completions = [f"<think>multiply</think>{c}" for c in [expert, *corruptions]]
    scores = reward(completions=completions, expert_action=[expert] * len(completions))
    assert scores[0] == 1.0
    assert all(score < 1.0 for score in scores[1:])
    assert step_similarity("abcd", "abce") == pytest.approx(2 * 3 / 8)


def test_long_steps_are_scored_in_worker_processes_with_the_same_rewards() -> None:
    """Steps of a few hundred characters cost milliseconds of difflib each: a large batch goes to a
    pool of worker processes, and must give exactly the in-process scores, in order."""
    rng = random.Random(0)
    words = ["add", "seven", "to", "the", "total", "then", "carry", "one", "we", "get"]
    steps = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(24)]
    pairs = [(steps[i], steps[(i * 7 + 3) % 24]) for i in range(24)]
    in_process = [step_similarity(a, b) for a, b in pairs]
    assert sum(len(a) * len(b) for a, b in pairs) > 1000  # above the threshold given below
    sent = reward_pool.batches["rank"]
    assert similarities(pairs, min_work=1000) == in_process
    assert reward_pool.batches["rank"] == sent + 1 or reward_pool.worker_count() < 2  # the pool did the work
    cfg = SRLConfig(require_think=False)
    completions = [a for a, _ in pairs] + ["<think>unclosed"]
    experts = [b for _, b in pairs] + [steps[0]]
    assert make_srl_reward(cfg)(completions=completions, expert_action=experts) == [
        *in_process,
        cfg.format_penalty,
    ]


def test_the_reward_pool_works_from_a_script_without_a_file() -> None:
    """multiprocessing re-runs the parent's main script in each worker it starts; from `python -` (or
    a notebook) there is no script, and the pool broke. Its workers must import only the reward."""
    code = (
        "from srl_rlvr.train.similarity import similarities, step_similarity\n"
        "pairs = [('add seven ' * 30 + str(i), 'add eight ' * 30) for i in range(16)]\n"
        "assert similarities(pairs, min_work=1000) == [step_similarity(a, b) for a, b in pairs]\n"
        "print('same scores')\n"
    )
    done = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "same scores"


def test_a_format_failure_scores_below_any_wellformed_completion() -> None:
    cfg = SRLConfig()
    reward = make_srl_reward(cfg)
    broken = ["5*4=20", "<think>no close 5*4=20", "</think>5*4=20", "<think>empty action</think>   "]
    wellformed = ["<think></think>completely unrelated", "<think>x</think>?"]
    scores = reward(completions=broken + wellformed, expert_action=["5*4=20"] * 6)
    assert all(s == cfg.format_penalty == -1.0 for s in scores[:4])
    assert min(scores[4:]) >= 0.0
    assert parse_action("<think>a</think><think>b</think> act", cfg) == "act"


def test_bare_completions_are_actions_when_think_is_optional() -> None:
    cfg = SRLConfig(require_think=False)
    assert parse_action("5*4=20", cfg) == "5*4=20"
    assert parse_action("<think>unclosed 5*4=20", cfg) is None


def test_continue_style_prompts_are_the_solution_so_far_and_the_action_is_the_next_line() -> None:
    cfg = SRLConfig(prompt_style="continue", require_think=False)
    dataset = build_srl_dataset([FOUR_STEPS], load_task("arithmetic"), cfg)
    assert dataset[2]["prompt"].endswith(f"{FOUR_STEPS.problem}\n2+3=5\n5*4=20\n")
    assert "Next step" not in dataset[2]["prompt"]
    assert parse_action("20-5=15\nAnswer: 15", cfg) == "20-5=15"
    assert parse_action("\n  \n", cfg) is None


def test_continue_style_stopping_before_the_last_step_is_a_format_failure() -> None:
    # A right line that ends the answer (no newline: the end-of-turn token came first) teaches a chat
    # model to stop after one step, so it scores as broken format; on the last step stopping is right.
    cfg = SRLConfig(prompt_style="continue", require_think=False)
    reward = make_srl_reward(cfg)
    expert = ["2+3=5", "2+3=5", "Answer: 5", "Answer: 5"]
    completions = ["2+3=5\n", "2+3=5", "Answer: 5", "Answer: 5\n"]
    rewards = reward(completions=completions, expert_action=expert, step=[1, 1, 2, 2], num_steps=[2, 2, 2, 2])
    assert rewards == [1.0, cfg.format_penalty, 1.0, 1.0]


def test_kl_controller_raises_the_weight_above_target_and_lowers_it_below() -> None:
    controller = AdaptiveKLController(weight=0.1, target=0.05)
    assert controller.update(0.5) > 0.1
    high = controller.weight
    assert controller.update(0.0) < high
    assert controller.update(float("nan")) == controller.weight


def test_advantages_are_normalised_within_each_group() -> None:
    rewards = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.0, 1.0, 0.0, 1.0])
    advantages = group_advantages(rewards, group_size=4, method="z_score")
    assert advantages[:4].abs().sum() == 0
    assert advantages[4:].tolist() == pytest.approx([-0.866, 0.866, -0.866, 0.866], abs=1e-3)
    centred = group_advantages(rewards, group_size=4, method="group")
    assert centred[4:].tolist() == pytest.approx([-0.5, 0.5, -0.5, 0.5])


def test_dynamic_sampling_keeps_groups_whose_reward_spread_beats_its_own_threshold() -> None:
    # Equal rewards, a near-tie (rollouts a character apart: std 0.002) and a real difference.
    rewards = torch.tensor([0.5] * 4 + [0.900, 0.900, 0.904, 0.900] + [0.0, 1.0, 0.0, 1.0])
    assert informative_groups(rewards, 4, min_std=0.01).tolist() == [False, False, True]
    # The threshold is on the population std (the SRL paper's formula), so 0.5 passes just below it.
    assert informative_groups(rewards, 4, min_std=0.499).tolist() == [False, False, True]
    assert informative_groups(rewards, 4, min_std=0.5).tolist() == [False, False, False]


def test_a_few_srl_steps_on_the_tiny_model_give_finite_loss(
    tiny_srl_config: Config, tmp_path: Path, arithmetic_trajectories: list[Trajectory]
) -> None:
    final = train_srl(tiny_srl_config, arithmetic_trajectories, tmp_path / "srl")
    assert (final / "config.json").is_file() and (final / "tokenizer.json").is_file()
    records = [json.loads(line) for line in (tmp_path / "srl" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for record in steps:
        assert all(torch.isfinite(torch.tensor(record[k])) for k in ("loss", "reward", "kl", "kl_weight"))
        assert 0.0 <= record["filtered_group_frac"] <= 1.0 and "format_failure_rate" in record
    assert any(r["filtered_group_frac"] < 1.0 for r in steps), "no group carried signal: nothing was trained"


@pytest.fixture
def four_step_config(tiny_srl_config: Config) -> Config:
    config = tiny_srl_config.model_copy(deep=True)
    config.srl.max_steps = 4
    return config


def test_a_nan_update_in_srl_is_undone_from_the_last_good_checkpoint(
    four_step_config: Config, tmp_path: Path, arithmetic_trajectories: list[Trajectory]
) -> None:
    out = tmp_path / "srl"
    final = train_srl(four_step_config, arithmetic_trajectories, out, callbacks=[NaNGradientsAtStep(2)])

    events = [json.loads(line) for line in (out / "stability.jsonl").read_text().splitlines()]
    assert len(events) == 1 and events[0]["step"] == 2 and "nan" in events[0]["reason"]
    weights = load_file(final / "model.safetensors")
    assert all(bool(torch.isfinite(w).all()) for w in weights.values())


def test_sigterm_saves_a_checkpoint_and_resume_continues_the_step_count(
    four_step_config: Config, tmp_path: Path, arithmetic_trajectories: list[Trajectory]
) -> None:
    out = tmp_path / "srl"
    config = four_step_config
    with pytest.raises(TrainingInterrupted) as stopped:
        train_srl(config, arithmetic_trajectories, out, callbacks=[SigtermAtStep(1)])
    assert stopped.value.checkpoint is not None and stopped.value.checkpoint.endswith("checkpoint-2")
    assert not (out / "final").exists()
    train_srl(config, arithmetic_trajectories, out, resume=True)
    steps = [
        json.loads(line)["step"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert steps == [1, 2, 3, 4]
    assert (out / "final" / "config.json").is_file()


def test_a_sigterm_in_the_last_step_never_trains_a_step_beyond_max_steps(
    tiny_srl_config: Config, tmp_path: Path, arithmetic_trajectories: list[Trajectory]
) -> None:
    # The last step ends mid-epoch: the trainer, resumed there, trained one more step.
    config = tiny_srl_config.model_copy(deep=True)
    config.srl.max_steps = 2
    out = tmp_path / "srl"
    with pytest.raises(TrainingInterrupted) as stopped:
        train_srl(config, arithmetic_trajectories, out, callbacks=[SigtermAtStep(1)])
    assert stopped.value.checkpoint is not None and stopped.value.checkpoint.endswith("checkpoint-2")
    final = train_srl(config, arithmetic_trajectories, out, resume=True)
    steps = [json.loads(line).get("step") for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 2 and not (out / "checkpoint-3").exists()
    assert (final / "config.json").is_file()


def test_srl_killed_after_a_checkpoint_resumes_to_the_uninterrupted_runs_exact_weights(
    tiny_srl_config: Config, tmp_path: Path, arithmetic_trajectories: list[Trajectory]
) -> None:
    # A real kill -9 after checkpoint-1, then resume: step 2 must train as the uninterrupted run's did.
    # Dynamic sampling refills from its own prompt order, which a resumed run once started afresh
    # (the quickstart's SRL reward 0.823 against 0.734 at the step after the checkpoint).
    config = tiny_srl_config.model_copy(deep=True)
    config.srl.max_steps, config.srl.save_steps, config.srl.eval_steps = 2, 1, 0
    whole = train_srl(config, arithmetic_trajectories, tmp_path / "whole")
    out, log = tmp_path / "killed", tmp_path / "child.log"
    with log.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(HERE / "srl_process.py"), str(out), config.model_dump_json(), "1"],
            stdout=stderr,
            stderr=stderr,
        )
    _, status = os.waitpid(child.pid, os.WUNTRACED)  # it stops itself once checkpoint-1 is saved
    assert os.WIFSTOPPED(status), log.read_text()[-3000:]
    assert (out / "checkpoint-1").is_dir() and not (out / "checkpoint-2").exists()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    resumed = train_srl(config, arithmetic_trajectories, out, resume=True)

    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("dynamic_sampling/draws", 0) for r in logged if r["step"] == 2) > 1, "no refill"
    expected, got = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert [name for name in expected if not torch.equal(expected[name], got[name])] == []


def test_srl_with_lora_trains_adapters_against_the_frozen_base(
    tiny_srl_config: Config, tmp_path: Path, arithmetic_trajectories: list[Trajectory]
) -> None:
    config = tiny_srl_config.model_copy(deep=True)
    config.output_dir = str(tmp_path)
    config.model.lora = LoraConfig(r=4, alpha=8)
    config.srl.max_steps = 2
    final = train_srl(config, arithmetic_trajectories)
    assert final == tmp_path / "srl" / "final"
    assert (final / "adapter_config.json").is_file()
    records = [json.loads(line) for line in (tmp_path / "srl" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if "loss" in r)


class WreckWeightsAtStep(TrainerCallback):
    """Makes the update of `step` ruin the model (every MLP output weight set to 7), like a bad step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step + 1 == self.step:
            with torch.no_grad():
                for name, parameter in model.named_parameters():
                    if name.endswith("mlp.down_proj.weight"):
                        parameter.fill_(7.0)


def test_srl_keeps_the_best_validated_model_as_final_when_a_later_step_is_worse(tmp_path: Path) -> None:
    task = load_task("arithmetic", {"min_steps": 2, "max_steps": 3})
    trajectories = [task.solve(p) for p in task.sample(24, seed=0, split="train")]
    config = build_config(
        overrides=[
            "model.name_or_path=embedded",
            "task.options={min_steps: 2, max_steps: 3}",
            "srl.prompt_style=continue",
            "srl.require_think=false",
            "srl.max_steps=4",
            "srl.batch_size=8",
            "srl.num_generations=4",
            "srl.max_completion_length=16",
            "srl.learning_rate=1e-5",
            "srl.eval_steps=1",
            "srl.early_stopping_patience=0",
            "srl.val_fraction=0.25",
            "data.val_size=24",  # checkpoints are chosen by accuracy on whole answers to these
            "eval.max_new_tokens=32",
        ]
    )
    out = tmp_path / "srl"
    final = train_srl(config, trajectories, out, task=task, callbacks=[WreckWeightsAtStep(2)])

    logged = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    start = logged[0 if 0 in logged else 1]["val_start/mean_step_reward"]
    assert logged[2]["val/mean_step_reward"] < start - 0.2, "the wrecked step should validate far worse"
    record = json.loads((final / "validation.json").read_text())
    assert record["step"] in (0, 1) and record["primary"] == "accuracy"  # the verifier, not similarity
    weights = load_file(final / "model.safetensors")
    assert not any(bool((w == 7.0).all()) for name, w in weights.items() if "down_proj" in name)
    assert not (out / "best").exists(), "the best model's copy is folded into final/"


def test_continue_style_stops_on_every_token_that_ends_a_line() -> None:
    # A byte-level BPE that merged ".\n" (as real vocabularies do): a rollout writing "5." then "\n"
    # as one token must stop there too, not only on a bare "\n".
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    vocab[".Ċ"] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[(".", "Ċ")]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>")
    stops = line_end_tokens(tokenizer)
    assert tokenizer.encode("5.\n", add_special_tokens=False)[-1] in stops
    assert tokenizer.encode("\n", add_special_tokens=False)[0] in stops
    assert not any("\n" not in tokenizer.decode([i]) for i in stops)


def _mean_step_rewards(completion_of: dict[str, object], cfg: SRLConfig) -> dict[str, list[float]]:
    """The mean SRL reward at each step of every sentiment training row, for completions built from
    the row's gold label: the review's table, recomputed with the task's verifier in the loop."""
    task = load_task("sentiment")
    problems = task.sample(1000, seed=0, split="train")
    dataset = build_srl_dataset([task.solve(p) for p in problems], task, cfg)
    reward = make_srl_reward(cfg, task)
    table = {}
    for name, make in completion_of.items():
        labels = [json.loads(p)["answer"] for p in dataset["problem"]]
        scores = reward(completions=[make(label) for label in labels], **dataset.to_dict())  # type: ignore[operator]
        table[name] = [
            sum(s for s, k in zip(scores, dataset["step"], strict=True) if k == step)
            / dataset["step"].count(step)
            for step in (1, 2, 3)
        ]
    return table


def test_a_right_complete_answer_ranks_first_at_every_step_of_a_chat_models_answer() -> None:
    """Before the verifier judged answers, a right JSON answer at step 1 scored -1 (it ended the turn)
    or 0.21 (it went on), below the prose line `Sentiment: <label>` (0.27), which SRL models then
    wrote at test time, repeated to the token limit."""
    cfg = SRLConfig(prompt_style="continue", require_think=False)
    answer = '{{"sentiment": "{}", "confidence": 1.0}}'.format
    table = _mean_step_rewards(
        {
            "right answer, end of turn": lambda label: answer(label),
            "right answer, newline": lambda label: answer(label) + "\n",
            "Sentiment: <gold label>": lambda label: f"Sentiment: {label}\n",
            "wrong answer, end of turn": lambda label: answer(
                "neutral" if label != "neutral" else "positive"
            ),
        },
        cfg,
    )
    for step in range(3):
        right = table["right answer, end of turn"][step]
        assert right == pytest.approx(1.0)
        assert table["right answer, newline"][step] == pytest.approx(1.0)
        assert table["Sentiment: <gold label>"][step] < right
        assert table["wrong answer, end of turn"][step] == cfg.format_penalty
    assert table["Sentiment: <gold label>"][2] == cfg.format_penalty  # no answer at the answer step


def test_a_continue_rollout_opening_with_a_blank_line_is_an_empty_step_not_broken_format() -> None:
    cfg = SRLConfig(prompt_style="continue", require_think=False)
    reward = make_srl_reward(cfg, load_task("arithmetic"))
    dataset = build_srl_dataset([FOUR_STEPS], load_task("arithmetic"), cfg).to_dict()
    scores = reward(completions=["\n", "5*4=20\n", "\n", "Answer: 15"], **dataset)
    assert scores == [0.0, pytest.approx(step_similarity("5*4=20", "5*4=20")), 0.0, 1.0]


def test_an_early_answer_is_judged_by_the_verifier_and_the_last_step_mixes_in_similarity() -> None:
    cfg = SRLConfig(prompt_style="continue", require_think=False)
    reward = make_srl_reward(cfg, load_task("arithmetic"))
    dataset = build_srl_dataset([FOUR_STEPS], load_task("arithmetic"), cfg).to_dict()
    right_early = reward(completions=["Answer: 15\n", "Answer: 15", "Answer: 15", "Answer:15"], **dataset)
    assert right_early[:3] == [1.0, 1.0, 1.0]
    assert right_early[3] == pytest.approx(0.5 * step_similarity("Answer:15", "Answer: 15") + 0.5)
    wrong_early = reward(completions=["Answer: 5\n", "Answer: 20", "20-5=16\n", "Answer: 16"], **dataset)
    assert wrong_early[:2] == [cfg.format_penalty] * 2 and wrong_early[3] == cfg.format_penalty
    assert 0 < wrong_early[2] < 1  # a wrong intermediate line still scores its similarity


def test_step_check_mixes_the_tasks_own_check_of_a_steps_result_into_similarity() -> None:
    task = load_task("arithmetic")
    dataset = build_srl_dataset([FOUR_STEPS], task, SRLConfig(prompt_style="continue")).to_dict()
    completions = ["2+3=5\n", "4*5=20\n", "5*4=21\n", "Answer: 15"]
    plain = make_srl_reward(SRLConfig(prompt_style="continue"), task)(completions=completions, **dataset)
    checked = make_srl_reward(SRLConfig(prompt_style="continue", step_check=0.5), task)(
        completions=completions, **dataset
    )
    assert checked[0] == plain[0] == 1.0
    assert checked[1] == pytest.approx(0.5 * plain[1] + 0.5)  # another order, the right value
    assert checked[2] == pytest.approx(0.5 * plain[2])  # the expert's form, a wrong value
    assert checked[3] == plain[3]
    extraction = load_task("extraction")
    problem = extraction.sample(1, seed=0, split="train")[0]
    field, value = next(iter(json.loads(extraction.solve(problem).expected_outcome).items()))
    assert extraction.check_step(problem, 0, f"{field}: {json.dumps(value)}") == 1.0
    assert extraction.check_step(problem, 0, f'{field}: "not it"') == 0.0


def test_the_step_hint_names_the_step_to_write_in_the_papers_prompt_style() -> None:
    dataset = build_srl_dataset([FOUR_STEPS], load_task("arithmetic"), SRLConfig(step_hint=True))
    assert "step 3 of 4" in dataset[2]["prompt"] and "<think>" in dataset[2]["prompt"]
