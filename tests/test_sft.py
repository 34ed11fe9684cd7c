import json
import logging
import math
import re
from pathlib import Path

import pytest

from srl_rlvr.cli import main
from srl_rlvr.config import build_config
from srl_rlvr.data.trajectory import Trajectory
from srl_rlvr.tasks import load_task
from srl_rlvr.train.sft import build_sft_dataset, train_sft


def test_sft_rows_pair_the_task_prompt_with_the_whole_solution(
    arithmetic_trajectories: list[Trajectory],
) -> None:
    task = load_task("arithmetic")
    dataset = build_sft_dataset(arithmetic_trajectories, task)
    first = arithmetic_trajectories[0]
    assert dataset[0]["prompt"].endswith(first.problem + "\n")
    assert dataset[0]["completion"] == "\n".join(s.action for s in first.steps)


def test_sft_lowers_the_loss_on_its_own_data_and_logs_its_progress(
    tmp_path: Path, arithmetic_trajectories: list[Trajectory], caplog: pytest.LogCaptureFixture
) -> None:
    config = build_config(
        overrides=["sft.max_steps=12", "sft.batch_size=8", "sft.logging_steps=1", "sft.learning_rate=3e-3"]
    )
    with caplog.at_level(logging.INFO, logger="srl_rlvr.progress"):
        train_sft(config, arithmetic_trajectories, tmp_path / "sft")
    # a line every twentieth of the stage (here every step) with the rate and the time left, for logs
    progress = [r.getMessage() for r in caplog.records if r.name == "srl_rlvr.progress"]
    assert len(progress) == 12 and progress[-1].startswith("sft: 12/12 steps (100%), ")
    assert re.fullmatch(
        r"sft: 6/12 steps \(50%\), [\d.e+]+ steps/s, \d+m\d\ds left, loss [\d.]+", progress[5]
    )
    losses = [
        json.loads(line)["loss"]
        for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert len(losses) == 12 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_cli_trains_srl_from_a_generated_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = tmp_path / "data", tmp_path / "srl"
    with pytest.raises(SystemExit):
        main(["generate", "--n", "4", "--out", str(data)])
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "train",
                "srl",
                "--data",
                str(data),
                "--out",
                str(out),
                "srl.max_steps=1",
                "srl.batch_size=4",
                "srl.num_generations=2",
                "srl.max_completion_length=8",
                "srl.require_think=false",
            ]
        )
    assert exit_.value.code == 0
    assert (out / "final" / "config.json").is_file()
    assert "trained model" in capsys.readouterr().out
