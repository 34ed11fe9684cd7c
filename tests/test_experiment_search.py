"""`srl-rlvr experiment --search`: an Optuna study whose trials are arms, in the experiment's report."""

import json
import sys
from pathlib import Path

import pytest
from test_experiment import TINY
from typer.testing import CliRunner

from srl_rlvr.cli import app, main
from srl_rlvr.errors import ConfigError
from srl_rlvr.experiment.arms import parse_arm
from srl_rlvr.experiment.runner import run_experiment
from srl_rlvr.experiment.search import Range, parse_range, trial_arm


def test_a_search_adds_one_arm_a_trial_reports_them_all_and_a_rerun_asks_only_for_missing_trials(
    tmp_path: Path,
) -> None:
    pytest.importorskip("optuna", reason="the experiment extra is not installed")
    from srl_rlvr.experiment.search import OptunaSearch

    # the search machinery is under test, not training: every job scores the base model
    settings = [*TINY, "pipeline.stages=[]"]
    base = [parse_arm("base")]
    ranges = [parse_range("rlvr.learning_rate=log:1e-4..1e-2")]

    result = run_experiment(None, settings, base, [0], tmp_path, search=OptunaSearch(ranges, 2, tmp_path))

    trials = [row["arm"] for row in result.search]
    assert len(set(trials)) == 2 and all(name.startswith("trial-") for name in trials)
    assert set(result.ran) == {"base-seed0", *(f"{t}-seed0" for t in trials)}
    for row in result.search:
        (override,) = row["overrides"]
        assert 1e-4 <= float(override.removeprefix("rlvr.learning_rate=")) <= 1e-2
        assert row["value"] == result.results[row["arm"]][0]["metrics"][result.primary]
    assert [c.arm for c in result.comparisons] == trials
    report = (tmp_path / "experiment.md").read_text()
    assert "## Search: 2 trials" in report and all(f"## {t} vs base" in report for t in trials)
    assert json.loads((tmp_path / "experiment.json").read_text())["search"] == result.search

    # the same search again runs nothing; one trial more runs that trial's jobs alone
    again = run_experiment(None, settings, base, [0], tmp_path, search=OptunaSearch(ranges, 2, tmp_path))
    assert again.ran == [] and again.search == result.search
    # the command line, one trial more: that trial's job runs, and no other
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("jobs/*/result.json")}
    command = ["experiment", *settings, "--arm", "base", "--search", "rlvr.learning_rate=log:1e-4..1e-2"]
    more = CliRunner().invoke(app, [*command, "--trials", "3", "--seeds", "1", "--out", str(tmp_path)])
    assert more.exit_code == 0, more.output
    assert {p: p.stat().st_mtime_ns for p in before} == before
    (new,) = set(tmp_path.glob("jobs/*/result.json")) - set(before)
    numbers = json.loads((tmp_path / "experiment.json").read_text())
    assert [row["arm"] for row in numbers["search"]][:2] == trials and len(numbers["comparisons"]) == 3
    assert new.parent.name == numbers["search"][2]["arm"] + "-seed0"


def test_without_optuna_a_search_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` meets when it is not installed
    with pytest.raises(SystemExit) as exited:
        main(["experiment", *TINY, "--search", "rlvr.learning_rate=1e-4..1e-2", "--out", str(tmp_path)])
    assert exited.value.code == 2
    assert "--search needs Optuna: pip install 'srl-rlvr[experiment]'" in capsys.readouterr().err


def test_a_range_is_a_scale_and_two_bounds_or_a_list_of_values() -> None:
    assert parse_range("rlvr.learning_rate=log:1e-6..1e-4") == Range("rlvr.learning_rate", "log", 1e-6, 1e-4)
    assert parse_range("rlvr.kl_penalty_weight=0..0.2") == Range("rlvr.kl_penalty_weight", "float", 0, 0.2)
    assert parse_range("rlvr.num_generations=int:2..8") == Range("rlvr.num_generations", "int", 2, 8)
    assert parse_range("rlvr.loss_type=[grpo, dr_grpo]").choices == ("grpo", "dr_grpo")
    for bad in ("rlvr.learning_rate", "x=log:0..1", "x=2..1", "x=sqrt:1..2", "x=a..b", "x=[]", "x=[[a,b]]"):
        with pytest.raises(ConfigError):
            parse_range(bad)
    assert parse_range("rlvr.num_generations=int:2..8").example() == "rlvr.num_generations=2"
    # the same point is the same arm, whatever order its keys come in
    assert trial_arm({"a": 1, "b": 2}) == trial_arm({"b": 2, "a": 1})


def test_a_range_over_a_key_the_config_lacks_fails_before_any_job_runs(tmp_path: Path) -> None:
    pytest.importorskip("optuna", reason="the experiment extra is not installed")
    from srl_rlvr.experiment.search import OptunaSearch

    search = OptunaSearch([parse_range("rlvr.learning_rat=0.1..0.2")], 1, tmp_path)
    with pytest.raises(ConfigError, match="learning_rate"):
        run_experiment(None, TINY, [parse_arm("base")], [0], tmp_path, search=search)
    assert not (tmp_path / "jobs").exists()
