import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from srl_rlvr.cli import app
from srl_rlvr.config import EvalConfig
from srl_rlvr.errors import TaskError
from srl_rlvr.evaluate.evaluation import EvalResult, ProblemRecord, compare, evaluate_model
from srl_rlvr.evaluate.report import comparison_table, write_report
from srl_rlvr.evaluate.slices import slice_results, weak_slices
from srl_rlvr.evaluate.stats import bootstrap_ci, paired_delta_ci
from srl_rlvr.modeling import byte_tokenizer, tiny_model
from srl_rlvr.rollout import stop_length
from srl_rlvr.tasks import load_task

FAST = EvalConfig(bootstrap_samples=500, slice_min_size=5, max_new_tokens=16)


def hand_made_result(label: str, reward_of: dict[int, float], n: int = 60) -> EvalResult:
    """n problems cycling through 2-4 steps and two ops; `reward_of[num_steps]` is every reward there."""
    records = []
    for i in range(n):
        steps, op = 2 + i % 3, ("add", "mul")[i % 2]
        reward = reward_of[steps]
        records.append(
            ProblemRecord(
                id=f"p{i}",
                text=f"Start with {i}. ({steps} steps of {op})",
                answer=i,
                metadata={"num_steps": steps, "ops": op, "start": i, "chain": [[op, 2]] * steps},
                completion=f"Answer: {i if reward else -1}",
                reward=reward,
                num_tokens=5,
            )
        )
    mean = float(np.mean([r.reward for r in records]))
    return EvalResult(
        label=label,
        model=f"runs/x/{label}",
        task="arithmetic",
        metrics={"reward": mean, "accuracy": mean},
        latency_ms={"p50": 10.0, "p95": 12.0, "p99": 13.0},
        tokens_per_second=100.0,
        max_new_tokens=16,
        records=records,
    )


def test_bootstrap_ci_covers_the_true_mean_and_shrinks_with_more_data() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.3, 1.0, 100), rng.normal(0.3, 1.0, 2500)

    low_small, high_small = bootstrap_ci(small, samples=2000, seed=0)
    low_large, high_large = bootstrap_ci(large, samples=2000, seed=0)

    assert low_small < 0.3 < high_small and low_large < 0.3 < high_large
    # the width falls like 1/sqrt(n): 25x the data, about a fifth of the width
    assert 3.5 < (high_small - low_small) / (high_large - low_large) < 7


def test_paired_delta_ci_excludes_zero_only_when_one_model_is_better() -> None:
    rng = np.random.default_rng(0)
    base = (rng.random(200) < 0.4).astype(float)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:40]] = 1.0  # fixes 40 problems, breaks none

    delta, low, high = paired_delta_ci(base, better, samples=1000, seed=0)
    assert delta == pytest.approx(0.2)
    assert 0 < low < 0.2 < high

    assert paired_delta_ci(base, base, samples=1000, seed=0) == (0.0, 0.0, 0.0)


def test_slices_flag_the_planted_weak_slice_and_not_the_fair_ones() -> None:
    result = hand_made_result("base", {2: 1.0, 3: 1.0, 4: 0.0})  # four-step problems all wrong

    slices = slice_results(result, FAST)

    assert {s.key for s in slices} == {"num_steps", "ops", "completion_length"}  # not start, not chain
    assert [s.name for s in weak_slices(slices)] == ["num_steps=4"]
    weak = weak_slices(slices)[0]
    assert (weak.n, weak.mean, weak.ci_high) == (20, 0.0, 0.0)
    assert len(weak.failures) == FAST.max_failure_examples
    assert all(f["reward"] == 0.0 and "4 steps" in f["text"] for f in weak.failures)
    fair = next(s for s in slices if s.name == "ops=add")
    assert not fair.weak and fair.mean == pytest.approx(result.metrics["reward"])


def test_generated_token_count_stops_at_eos_and_skips_padding() -> None:
    eos, pad = 1, 0
    new_tokens = torch.tensor([[5, 6, eos, pad, pad], [5, 6, 7, 8, 9]])
    assert [stop_length(row, {eos}) for row in new_tokens.tolist()] == [3, 5]


def test_evaluate_model_on_tiny_reports_ordered_latency_percentiles_and_throughput() -> None:
    tokenizer = byte_tokenizer()
    model = tiny_model(tokenizer)
    task = load_task("arithmetic")
    problems = task.sample(5, seed=0, split="test")
    config = EvalConfig(max_new_tokens=6, batch_size=2, bootstrap_samples=200)

    result = evaluate_model(model, tokenizer, task, problems, config, label="tiny")

    assert result.n == 5 and [r.id for r in result.records] == [p.id for p in problems]
    assert set(result.metrics) == {"reward", "accuracy", "parse_rate"}
    assert 0 < result.latency_ms["p50"] <= result.latency_ms["p95"] <= result.latency_ms["p99"]
    assert result.tokens_per_second > 0
    assert all(1 <= r.num_tokens <= 6 for r in result.records)
    same = compare(result, result, config)
    assert same["reward"]["delta"] == 0.0 and not same["reward"]["significant"]


def write_stage(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def test_write_report_writes_markdown_json_and_readable_plots(tmp_path: Path) -> None:
    results = {
        "base": hand_made_result("base", {2: 1.0, 3: 1.0, 4: 0.0}),
        "srl": hand_made_result("srl", {2: 1.0, 3: 1.0, 4: 0.0}),
        "rlvr": hand_made_result("rlvr", {2: 1.0, 3: 1.0, 4: 1.0}),
    }
    step_rows = [{"step": s, "loss": 1 / s, "reward": 0.1 * s, "kl": 0.01 * s} for s in range(1, 6)]
    stages = {
        "srl": write_stage(tmp_path / "srl", [*step_rows, {"step": 5, "train_runtime": 3.0}]),
        "rlvr": write_stage(tmp_path / "rlvr", [*step_rows, {"step": 5, "val/reward": 0.4}]),
        "empty": write_stage(tmp_path / "empty", [{"step": 5, "train_runtime": 3.0}]),
    }
    unseen = {label: hand_made_result(label, {2: 0.0, 3: 0.0, 4: 0.0}, n=12) for label in results}

    report_md = write_report(tmp_path / "eval", results, stages, unseen, FAST)

    out = tmp_path / "eval"
    report = json.loads((out / "report.json").read_text())
    rlvr_vs_base = next(c for c in report["comparisons"] if (c["model"], c["baseline"]) == ("rlvr", "base"))
    assert rlvr_vs_base["reward"]["delta"] == pytest.approx(1 / 3)
    assert rlvr_vs_base["reward"]["significant"] and rlvr_vs_base["reward"]["improved"] == 20
    assert report["weak_slices"] == {"base": ["num_steps=4"], "srl": ["num_steps=4"], "rlvr": []}
    assert set(report["generalization"]["results"]) == {"base", "srl", "rlvr"}
    pngs = ["plots/curves_srl.png", "plots/curves_rlvr.png", "plots/metrics.png", "plots/slices.png"]
    assert report["plots"] == pngs  # the stage that logged no curves gets no empty chart
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / png).stat().st_size > 10_000
    text = report_md.read_text()
    assert "**num_steps=4**" in text and "expected: 8" in text  # a failure example: problem p8
    assert "| rlvr vs srl | +0.333" in text
    assert "](plots/curves_rlvr.png)" in text and "never seen in training" in text


def test_comparison_table_shows_each_model_with_its_delta_to_the_row_above() -> None:
    results = {
        "base": hand_made_result("base", {2: 1, 3: 0, 4: 0}),
        "srl": hand_made_result("srl", {2: 1, 3: 1, 4: 0}),
        "rlvr": hand_made_result("rlvr", {2: 1, 3: 1, 4: 1}),
    }

    table = comparison_table(results, FAST)

    assert [c.header for c in table.columns][:4] == ["model", "n", "reward", "accuracy"]
    delta = list(next(c for c in table.columns if str(c.header).startswith("Δ reward")).cells)
    assert delta[0] == ""
    assert delta[1].startswith("+0.333 [") and delta[2].startswith("+0.333 ["), (
        "each row against the one above"
    )


def test_eval_cli_on_tiny_prints_a_table_and_writes_the_report(tmp_path: Path) -> None:
    args = ["eval", "--model", "tiny", "--baseline", "tiny", "--n", "4", "--out", str(tmp_path)]
    overrides = ["eval.max_new_tokens=6", "eval.batch_size=4", "eval.bootstrap_samples=100"]

    result = CliRunner().invoke(app, [*args, *overrides])

    assert result.exit_code == 0, result.output
    assert "Δ reward" in result.output and "tiny-2" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["results"]) == ["tiny", "tiny-2"] and report["n"] == 4
    assert report["comparisons"][0]["reward"]["delta"] == 0.0  # the same seed builds the same model
    assert (tmp_path / "report.md").is_file()


def test_eval_cli_names_an_unknown_task(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["eval", "--model", "tiny", "--task", "arithmetc", "--out", str(tmp_path)]
    )

    assert isinstance(result.exception, TaskError) and "did you mean 'arithmetic'" in str(result.exception)


def test_the_slice_plot_stays_readable_with_many_values_and_shows_zero_slices(tmp_path: Path) -> None:
    import matplotlib.image

    from srl_rlvr.evaluate.plots import MAX_VALUES_PER_KEY, plot_slices
    from srl_rlvr.evaluate.slices import Slice

    def slices(mean: float) -> list[Slice]:
        many = [Slice("start", i, 5 + i, mean, 0.0, mean, False) for i in range(20)]
        return [*many, Slice("hard", True, 7, 0.0, 0.0, 0.0, True)]

    path = plot_slices(
        {"base": slices(0.0), "rlvr": slices(0.5)}, {"base": 0.1, "rlvr": 0.5}, tmp_path / "s.png"
    )
    height = matplotlib.image.imread(path).shape[0]
    assert height < 1100  # 21 rows of 2 models made 2,448 px before the cap
    assert MAX_VALUES_PER_KEY < 20


def test_eval_samples_reports_avg_at_k_and_pass_at_k_with_paired_intervals(tmp_path: Path) -> None:
    args = ["eval", "--model", "embedded", "--baseline", "tiny", "--n", "12"]
    overrides = [
        "eval.samples=4",
        "eval.max_new_tokens=64",
        "eval.batch_size=12",
        "eval.bootstrap_samples=200",
    ]

    def evaluate(out: Path) -> dict:
        result = CliRunner().invoke(app, [*args, "--out", str(out), *overrides])
        assert result.exit_code == 0, result.output
        return json.loads((out / "report.json").read_text())

    report = evaluate(tmp_path / "a")
    embedded, tiny = report["results"]["embedded"], report["results"]["tiny"]
    records = report["records"]["embedded"]
    assert all(len(r["sample_rewards"]) == 4 for r in records)
    assert 0 < embedded["metrics"]["avg@4"] <= embedded["metrics"]["pass@4"] <= 1
    assert tiny["metrics"]["avg@4"] == 0  # random weights solve nothing
    solved_by_some_sample = sum(max(r["sample_rewards"]) for r in records) / 12
    assert embedded["metrics"]["pass@4"] == solved_by_some_sample
    interval = report["comparisons"][0]["intervals"]["avg@4"]
    assert interval["delta"] == embedded["metrics"]["avg@4"] and interval["ci_low"] <= interval["delta"]
    assert "Δ avg@4" in (tmp_path / "a" / "report.md").read_text()
    again = evaluate(tmp_path / "b")["results"]["embedded"]["metrics"]  # eval.sample_seed: the same draws
    assert again["avg@4"] == embedded["metrics"]["avg@4"] and again["pass@4"] == embedded["metrics"]["pass@4"]
