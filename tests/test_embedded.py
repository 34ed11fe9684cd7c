import json
from pathlib import Path

from srl_rlvr.config import build_config
from srl_rlvr.evaluate.generation import evaluate_task
from srl_rlvr.modeling import EMBEDDED_DIR, load_model
from srl_rlvr.tasks import load_task
from srl_rlvr.train.srl import train_srl


def test_the_embedded_model_is_small_follows_the_format_and_leaves_room_on_long_chains() -> None:
    size = sum(f.stat().st_size for f in EMBEDDED_DIR.iterdir())
    assert size <= 20 * 2**20
    model, tokenizer = load_model(build_config({"model": {"name_or_path": "embedded"}}).model)
    short = load_task("arithmetic", {"min_steps": 2, "max_steps": 2})
    long = load_task("arithmetic", {"min_steps": 5, "max_steps": 6})
    on_short = evaluate_task(model, tokenizer, short, short.sample(40, 0, "test"), max_new_tokens=48)
    on_long = evaluate_task(model, tokenizer, long, long.sample(40, 0, "test"), max_new_tokens=96)
    assert on_short["parse_rate"] == 1.0 and on_short["accuracy"] >= 0.8
    assert on_long["parse_rate"] >= 0.9 and on_long["accuracy"] <= 0.2


def test_continue_style_srl_rollouts_stop_at_the_end_of_the_line(tmp_path: Path) -> None:
    task = load_task("arithmetic", {"min_steps": 3, "max_steps": 4})
    trajectories = [task.solve(p) for p in task.sample(8, seed=0, split="train")]
    config = build_config(
        {"model": {"name_or_path": "embedded"}, "task": {"options": {"min_steps": 3, "max_steps": 4}}},
        [
            "srl.prompt_style=continue",
            "srl.require_think=false",
            "srl.max_steps=1",
            "srl.batch_size=16",
            "srl.num_generations=4",
            "srl.max_completion_length=48",
        ],
    )
    train_srl(config, trajectories, tmp_path / "srl", task=task)
    record = json.loads((tmp_path / "srl" / "metrics.jsonl").read_text().splitlines()[0])
    # A whole solution is 30-60 tokens; one line (`-12*4=-48` and its newline) is at most 13.
    assert record["completions/clipped_ratio"] == 0.0
    assert record["completions/max_length"] <= 13
    assert record["reward"] > 0.5, "the embedded model's next lines should resemble the expert's"
