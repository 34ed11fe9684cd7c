"""`srl-rlvr experiment`: arms x seeds in their own processes, a paired interval and a decision."""

import json
from pathlib import Path

import pytest

from srl_rlvr.cli import main
from srl_rlvr.errors import ConfigError
from srl_rlvr.experiment.arms import parse_arm
from srl_rlvr.experiment.decision import ArmComparison, MetricDelta, decide
from srl_rlvr.experiment.runner import run_experiment
from srl_rlvr.tracking.runs import mlflow_client, recorded_run_id, tracking_uri

# The smallest pipeline that trains: one RLVR step of the random tiny model, scored on 6 problems.
TINY = [
    "model.name_or_path=tiny",
    "data.train_size=4",
    "data.test_size=6",
    "rlvr.max_steps=1",
    "rlvr.batch_size=2",
    "rlvr.num_generations=2",
    "rlvr.max_completion_length=4",
    "rlvr.eval_steps=0",
    "eval.max_new_tokens=4",
    "eval.bootstrap_samples=100",
    "pipeline.stages=[rlvr]",
    "pipeline.gate=false",
]


def test_two_arms_three_seeds_give_a_report_with_an_interval_and_a_decision_and_a_rerun_does_nothing(
    tmp_path: Path,
) -> None:
    # the baseline trains nothing (the base model itself); the other arm is one step of RLVR
    arms = [parse_arm("base pipeline.stages=[]"), parse_arm("rlvr rlvr.learning_rate=1e-3")]
    seen: list[tuple[str, str]] = []

    def on_job(kind: str, name: str) -> None:
        seen.append((kind, name))

    result = run_experiment(None, TINY, arms, [0, 1, 2], tmp_path, on_job=on_job)

    jobs = {f"{a}-seed{s}" for a in ("base", "rlvr") for s in (0, 1, 2)}
    assert set(result.ran) == jobs and result.skipped == []
    assert {name for kind, name in seen if kind == "done"} == jobs
    (comparison,) = result.comparisons
    reward = comparison.delta("reward")
    assert reward.low <= reward.delta <= reward.high
    assert comparison.decision in ("adopt", "keep", "reject") and comparison.reasons
    assert comparison.seeds == [0, 1, 2] and comparison.cost_seconds > 0
    # every job answered the same held-out problems
    problems = {tuple(r["problems"]) for rows in result.results.values() for r in rows}
    assert len(problems) == 1 and len(next(iter(problems))) == 6
    report = (tmp_path / "experiment.md").read_text()
    assert f"rlvr vs base: **{comparison.decision}**" in report and "95% CI" in report
    assert (tmp_path / "experiment.png").stat().st_size > 0
    numbers = json.loads((tmp_path / "experiment.json").read_text())
    assert numbers["comparisons"][0]["decision"] == comparison.decision
    # MLflow: the experiment is the parent run of one child run per arm x seed
    client = mlflow_client(tracking_uri())
    parent = recorded_run_id(tmp_path)
    children = [recorded_run_id(tmp_path / "jobs" / job) for job in sorted(jobs)]
    assert {client.get_run(c).data.tags["mlflow.parentRunId"] for c in children} == {parent}
    assert client.get_run(parent).data.tags["srl_rlvr.decision.rlvr"] == comparison.decision

    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("jobs/*/result.json")}
    rerun = run_experiment(None, TINY, arms, [0, 1, 2], tmp_path)

    assert rerun.ran == [] and set(rerun.skipped) == jobs
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("jobs/*/result.json")} == before
    assert rerun.comparisons[0].delta("reward") == reward


def comparison(delta: float, low: float, high: float, cost: float) -> ArmComparison:
    return ArmComparison(
        "new",
        "base",
        [0, 1, 2],
        [MetricDelta("accuracy", 0.5, 0.5 + delta, delta, low, high)],
        cost,
        10.0,
        "",
    )


@pytest.mark.parametrize(
    ("delta", "low", "high", "cost", "decision"),
    [
        (0.10, 0.02, 0.18, 11.0, "adopt"),  # better, within the 20 % cost margin
        (0.10, 0.02, 0.18, 15.0, "keep"),  # better, but half as costly again
        (0.05, -0.01, 0.11, 10.0, "keep"),  # the interval includes zero
        (-0.10, -0.18, -0.02, 5.0, "reject"),  # worse, however cheap
    ],
)
def test_an_arm_is_adopted_only_when_its_interval_excludes_zero_upwards_and_its_cost_is_within_the_margin(
    delta: float, low: float, high: float, cost: float, decision: str
) -> None:
    assert decide(comparison(delta, low, high, cost), "accuracy", cost_margin=0.2)[0] == decision


def test_one_arm_is_no_experiment_and_says_so_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["experiment", "model.name_or_path=tiny", "--arm", "only"])
    assert exited.value.code == 2
    assert "an experiment needs at least two arms" in capsys.readouterr().err


def test_an_arm_is_a_name_then_overrides() -> None:
    arm = parse_arm("sft_rlvr pipeline.stages=[generate,sft,rlvr] sft.max_steps=5")
    assert arm.name == "sft_rlvr" and arm.overrides == (
        "pipeline.stages=[generate,sft,rlvr]",
        "sft.max_steps=5",
    )
    with pytest.raises(ConfigError, match="start with the arm's name"):
        parse_arm("srl.learning_rate=1e-5")
