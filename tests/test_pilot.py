"""`pipeline.pilot`: a short gated run of each candidate recipe picks the one the full run trains."""

import json
from pathlib import Path

import pytest

from srl_rlvr.config import build_config
from srl_rlvr.errors import ConfigError
from srl_rlvr.pipeline import read_state, run_pipeline
from srl_rlvr.pipeline.stages import StageEvent

SMALL = [
    "model.name_or_path=embedded",
    "task.options={min_steps: 2, max_steps: 3}",
    "data.train_size=64",
    "data.val_size=8",
    "sft.batch_size=8",
    "sft.max_steps=8",  # the pilot trains 4 of them, enough to beat the base on validation
    "sft.learning_rate=3e-4",
    "rlvr.max_steps=2",
    "rlvr.batch_size=4",
    "rlvr.num_generations=2",
    "rlvr.max_completion_length=16",
    "rlvr.learning_rate=1e-9",  # changes nothing: never kept
    "rlvr.eval_steps=0",
    "eval.max_new_tokens=40",
    "eval.batch_size=32",
    "eval.bootstrap_samples=100",
    "pipeline.stages=[generate,sft,rlvr]",
    "pipeline.pilot=true",
    "pipeline.pilot_recipes=[[rlvr],[sft]]",  # the better recipe is not the first listed
    "pipeline.pilot_fraction=0.5",
]


@pytest.fixture(scope="module")
def piloted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StageEvent]]:
    run_dir = tmp_path_factory.mktemp("pilot") / "run"
    events: list[StageEvent] = []
    config = build_config(overrides=[*SMALL, f"output_dir={run_dir}"])
    run_pipeline(config, on_event=events.append)
    return run_dir, events


def test_the_pilot_picks_the_recipe_whose_model_validates_best_and_the_run_trains_only_it(
    piloted: tuple[Path, list[StageEvent]],
) -> None:
    run_dir, events = piloted
    pilot = json.loads((run_dir / "pilot.json").read_text())
    scores = {"-".join(c["stages"]): c for c in pilot["candidates"]}
    assert scores["sft"]["kept"] == ["sft"] and scores["rlvr"]["kept"] == []
    assert scores["sft"]["score"] > scores["rlvr"]["score"]
    assert pilot["stages"] == ["sft"]
    assert pilot["reason"].startswith("sft reached validation accuracy")
    checkpoints = (run_dir / "pilot" / "sft" / "sft").glob("checkpoint-*")
    assert max(int(c.name.removeprefix("checkpoint-")) for c in checkpoints) == 4  # half of sft.max_steps
    assert set(read_state(run_dir)) == {"generate", "sft"}  # the full run trained the winner alone
    finished = [e.message for e in events if e.kind == "finish" and e.stage == "pilot"]
    assert finished == [pilot["reason"]]


def test_a_rerun_reuses_the_pilot_and_trains_nothing(piloted: tuple[Path, list[StageEvent]]) -> None:
    run_dir, _ = piloted
    config = build_config(overrides=[*SMALL, f"output_dir={run_dir}"])
    result = run_pipeline(config)
    assert result.ran == [] and result.skipped == ["generate", "sft"]


def test_recipes_must_list_training_stages_in_order() -> None:
    with pytest.raises(ConfigError, match="pilot_recipes"):
        build_config(overrides=["pipeline.pilot_recipes=[[rlvr, sft]]"])
