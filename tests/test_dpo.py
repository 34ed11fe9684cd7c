import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
from rl_helpers import FirstCharacterTask

from srl_rlvr.config import Config, build_config
from srl_rlvr.errors import DataError
from srl_rlvr.tasks import Problem, Task
from srl_rlvr.train.dpo import PreferencePair, build_preference_pairs
from srl_rlvr.train.rlvr import train_rlvr


class UnsolvableTask(FirstCharacterTask):
    name = "unsolvable"

    def reward(self, completion: str, problem: Problem) -> float:
        return 0.0


@pytest.fixture
def tiny_dpo_config() -> Config:
    return build_config(
        overrides=[
            "rlvr.algorithm=dpo",
            "rlvr.max_steps=3",
            "rlvr.batch_size=4",
            "rlvr.num_generations=4",
            "rlvr.max_completion_length=8",
            "rlvr.temperature=1.0",
            "rlvr.learning_rate=1e-3",
            "rlvr.dpo_correct_threshold=1.0",
            "rlvr.eval_steps=0",
        ]
    )


def test_pairs_always_join_a_correct_and_a_wrong_sample_of_the_same_prompt() -> None:
    rng = random.Random(0)
    threshold = 0.5
    for _ in range(300):
        k, n, max_pairs = rng.randint(1, 6), rng.randint(1, 5), rng.randint(1, 4)
        prompts = [f"prompt {i}" for i in range(n)]
        completions = [f"prompt {i} sample {j}" for i in range(n) for j in range(k)]
        # Rewards on a coarse grid so many land exactly on the threshold (which counts as correct).
        rewards = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in completions]
        pairs = build_preference_pairs(prompts, completions, rewards, k, threshold, max_pairs)

        reward_of = dict(zip(completions, rewards, strict=True))
        for pair in pairs:
            assert pair.chosen.startswith(pair.prompt + " ") and pair.rejected.startswith(pair.prompt + " ")
            assert reward_of[pair.chosen] == pair.chosen_reward >= threshold > pair.rejected_reward
            assert reward_of[pair.rejected] == pair.rejected_reward
        per_prompt = Counter(p.prompt for p in pairs)
        for i, prompt in enumerate(prompts):
            group = rewards[i * k : (i + 1) * k]
            correct = sum(r >= threshold for r in group)
            assert per_prompt[prompt] == min(correct, k - correct, max_pairs) <= max_pairs
        used = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        assert len(used) == len(set(used)), "a completion was used in two pairs"


def test_the_best_correct_sample_meets_the_worst_wrong_one_first() -> None:
    pairs = build_preference_pairs(
        ["p"],
        ["ok", "best", "bad", "worst"],
        [0.8, 1.0, 0.4, 0.0],
        k=4,
        threshold=0.5,
        max_pairs_per_prompt=1,
    )
    assert pairs == [PreferencePair("p", "best", "worst", 1.0, 0.0)]


def test_a_prompt_whose_samples_are_all_correct_or_all_wrong_gives_no_pair() -> None:
    completions = ["a1", "a2", "a3", "b1", "b2", "b3"]
    all_correct_then_all_wrong = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    pairs = build_preference_pairs(
        ["a", "b"], completions, all_correct_then_all_wrong, k=3, threshold=1.0, max_pairs_per_prompt=3
    )
    assert pairs == []


def test_a_few_dpo_steps_on_the_tiny_model_train_on_verified_pairs(
    tiny_dpo_config: Config, tmp_path: Path
) -> None:
    task = FirstCharacterTask()
    assert isinstance(task, Task)
    out = tmp_path / "dpo"
    problems = task.sample(8, seed=0, split="train")
    final = train_rlvr(tiny_dpo_config, problems, out, task=task)

    assert (final / "config.json").is_file() and (final / "tokenizer.json").is_file()
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert pairs, "a random model solves this task about half the time: some prompt must pair"
    for pair in pairs:
        assert (
            task.reward(pair["chosen"], problems[0]) == pair["chosen_reward"] >= 1.0 > pair["rejected_reward"]
        )
        assert task.reward(pair["rejected"], problems[0]) == pair["rejected_reward"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    # Before the first update the policy is the reference, so the DPO loss is -log sigmoid(0) = log 2:
    # TRL's reference really is the start model.
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)


def test_a_resumed_run_trains_on_the_saved_pairs_instead_of_resampling(
    tiny_dpo_config: Config, tmp_path: Path
) -> None:
    out = tmp_path / "dpo"
    saved = {"prompt": "p\n", "chosen": "b", "rejected": "a", "chosen_reward": 1.0, "rejected_reward": 0.0}
    out.mkdir()
    (out / "pairs.jsonl").write_text(json.dumps(saved) + "\n")
    config = tiny_dpo_config.model_copy(deep=True)
    config.rlvr.max_steps = 1
    # Sampling from this task would raise (no pairs), so reaching `final` proves the file was reused.
    final = train_rlvr(
        config, UnsolvableTask().sample(4, 0, "train"), out, task=UnsolvableTask(), resume=True
    )
    assert (final / "config.json").is_file()
    assert json.loads((out / "pairs.jsonl").read_text()) == saved


def test_no_preference_pairs_is_a_one_line_data_error(tiny_dpo_config: Config, tmp_path: Path) -> None:
    task = UnsolvableTask()
    with pytest.raises(DataError) as error:
        train_rlvr(tiny_dpo_config, task.sample(8, seed=0, split="train"), tmp_path / "dpo", task=task)
    message = str(error.value)
    assert "\n" not in message
    assert "0 of 8 prompts" in message and "sample accuracy 0.00" in message
    assert "rlvr.dpo_correct_threshold" in message
    assert not (tmp_path / "dpo" / "pairs.jsonl").exists()
