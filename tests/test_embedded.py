import json
from pathlib import Path

from srl_rlvr.config import build_config
from srl_rlvr.evaluate.evaluation import evaluate_task
from srl_rlvr.modeling import EMBEDDED_DIR, load_model
from srl_rlvr.rollout import generate_texts
from srl_rlvr.tasks import load_task
from srl_rlvr.train.srl import train_srl


def test_the_embedded_model_is_small_knows_the_steps_and_gives_up_early_on_long_chains() -> None:
    size = sum(f.stat().st_size for f in EMBEDDED_DIR.iterdir())
    assert size <= 20 * 2**20
    model, tokenizer = load_model(build_config({"model": {"name_or_path": "embedded"}}).model)
    one_step = load_task("arithmetic", {"min_steps": 1, "max_steps": 1})
    long = load_task("arithmetic", {"min_steps": 3, "max_steps": 4})
    problems = long.sample(40, 0, "test")

    on_one_step = evaluate_task(model, tokenizer, one_step, one_step.sample(40, 0, "test"), max_new_tokens=32)
    prompts = [long.prompt(p) for p in problems]
    completions = generate_texts(model, tokenizer, prompts, 64, batch_size=40).completions

    assert on_one_step["parse_rate"] == 1.0 and on_one_step["accuracy"] >= 0.9
    wrong = [(p, c) for p, c in zip(problems, completions, strict=True) if long.reward(c, p) == 0]
    assert len(wrong) >= 12, "room to improve on 3-4-step problems"
    gave_up = [p for p, c in wrong if long.parse(c) in _intermediate_values(long, p)]
    assert len(gave_up) >= len(wrong) / 2, "most failures answer a value the chain had not finished with"


def _intermediate_values(task, problem) -> set[int]:  # type: ignore[no-untyped-def]
    return {int(step.action.rsplit("=", 1)[1]) for step in task.solve(problem).steps[:-2]}


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
