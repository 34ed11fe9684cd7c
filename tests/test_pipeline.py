"""`srl-rlvr run`: one run directory, stages skipped when unchanged, resumed after SIGTERM."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from rl_helpers import SigtermAtStep
from typer.testing import CliRunner

from srl_rlvr.cli import app, main
from srl_rlvr.config import Config, build_config
from srl_rlvr.errors import ConfigError, DataError
from srl_rlvr.pipeline import PipelineResult, read_state, run_pipeline
from srl_rlvr.pipeline.stages import StageEvent, upstream_stages
from srl_rlvr.train.runner import TrainingInterrupted

TINY = [
    "model.name_or_path=tiny",  # the library's default, said aloud: the CLI without a config uses `embedded`
    "data.train_size=8",
    "data.test_size=8",
    "srl.max_steps=2",
    "srl.batch_size=4",
    "srl.num_generations=2",
    "srl.max_completion_length=8",
    "srl.require_think=false",
    "srl.learning_rate=1e-3",
    "rlvr.max_steps=2",
    "rlvr.batch_size=4",
    "rlvr.num_generations=2",
    "rlvr.max_completion_length=8",
    "rlvr.eval_steps=0",
    "eval.max_new_tokens=8",
    "eval.batch_size=8",
    "eval.bootstrap_samples=100",
    # these tests pin how stages skip, resume and register; the stage gate has its own tests below
    "pipeline.stages=[generate,srl,rlvr,evaluate,register]",
    "pipeline.gate=false",
]
ALL = ["generate", "srl", "rlvr", "evaluate", "register"]


def tiny_config(run_dir: Path, *overrides: str) -> Config:
    return build_config(overrides=[*TINY, f"output_dir={run_dir}", *overrides])


def run(config: Config, **kwargs: object) -> tuple[PipelineResult, list[StageEvent]]:
    events: list[StageEvent] = []
    return run_pipeline(config, on_event=events.append, **kwargs), events  # type: ignore[arg-type]


def kinds(events: list[StageEvent], kind: str) -> list[str]:
    return [e.stage for e in events if e.kind == kind]


def loss_steps(stage_dir: Path) -> list[int]:
    rows = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if "loss" in r]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PipelineResult, list[StageEvent]]:
    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    result, events = run(tiny_config(run_dir))
    return run_dir, result, events


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    """A moved copy: pipeline.json stores outputs relative to the run directory, so it still works."""
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_a_full_run_writes_every_stage_output_and_marks_them_done(finished_run) -> None:
    run_dir, result, events = finished_run

    assert result.ran == ALL and result.skipped == []
    assert (run_dir / "data" / "trajectories.jsonl").is_file() and (run_dir / "config.yaml").is_file()
    assert (run_dir / "srl" / "final" / "config.json").is_file()
    assert (run_dir / "rlvr" / "final" / "config.json").is_file()
    assert {"report.md", "report.json"} <= {p.name for p in (run_dir / "report").iterdir()}
    records = read_state(run_dir)
    assert [s for s, r in records.items() if r["status"] == "done"] == ALL
    assert records["srl"]["output"] == "srl/final" and records["generate"]["output"] == "data"
    assert result.evaluation is not None and list(result.evaluation.results) == ["tiny", "srl", "rlvr"]
    srl_steps = [(e.step, e.total) for e in events if e.kind == "step" and e.stage == "srl"]
    assert srl_steps[0] == (0, 2) and srl_steps[-1] == (2, 2)
    # generate counts trajectories, evaluate the problems of all three models (8 each) in one bar
    generated = [(e.step, e.total) for e in events if e.kind == "step" and e.stage == "generate"]
    assert generated[-1] == (8, 8)
    evaluated = [(e.step, e.total) for e in events if e.kind == "step" and e.stage == "evaluate"]
    assert evaluated == [(8, 24), (16, 24), (24, 24)]


def test_an_unchanged_rerun_skips_every_stage_and_keeps_the_records(finished_run) -> None:
    run_dir, _, _ = finished_run
    before = read_state(run_dir)

    started = time.monotonic()
    result, events = run(tiny_config(run_dir))

    assert time.monotonic() - started < 30  # nothing retrained (generous: CI machines are loaded)
    assert kinds(events, "skip") == ALL and kinds(events, "start") == [] and result.ran == []
    assert read_state(run_dir) == before
    assert result.evaluation is not None and list(result.evaluation.results) == ["tiny", "srl", "rlvr"]


def test_a_changed_srl_learning_rate_reruns_srl_and_everything_after_it(finished_run, tmp_path: Path) -> None:
    run_dir = copy_of(finished_run[0], tmp_path)
    before = read_state(run_dir)

    result, events = run(tiny_config(run_dir, "srl.learning_rate=5e-4"))

    assert kinds(events, "skip") == ["generate"] and result.ran == ["srl", "rlvr", "evaluate", "register"]
    assert {e.message for e in events if e.kind == "start"} == {"inputs changed"}
    after = read_state(run_dir)
    assert after["generate"] == before["generate"]
    assert all(after[s]["output_id"] != before[s]["output_id"] for s in ("srl", "rlvr"))
    assert loss_steps(run_dir / "srl") == [1, 2]  # cleared, not appended to the old run's log


def test_sigterm_during_srl_then_a_rerun_resumes_srl_and_finishes(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "run", "srl.max_steps=3")

    with pytest.raises(TrainingInterrupted) as stopped:
        run(config, extra_callbacks=[SigtermAtStep(1)])

    assert stopped.value.checkpoint is not None and stopped.value.checkpoint.endswith("checkpoint-2")
    assert read_state(config.output_dir)["srl"]["status"] == "running"
    assert not (tmp_path / "run" / "srl" / "final").exists()
    result, events = run(config)
    assert kinds(events, "skip") == ["generate"] and result.ran == ["srl", "rlvr", "evaluate", "register"]
    assert next(e.message for e in events if e.kind == "start").startswith("resuming from step 2 (")
    assert next((e.step, e.total) for e in events if e.kind == "step") == (2, 3)
    assert loss_steps(tmp_path / "run" / "srl") == [1, 2, 3]
    assert all(r["status"] == "done" for r in read_state(config.output_dir).values())


def test_only_rlvr_without_an_srl_output_names_the_stage_to_run_first(tmp_path: Path) -> None:
    with pytest.raises(DataError) as missing:
        run_pipeline(tiny_config(tmp_path), only="rlvr")
    assert "needs the srl stage's output" in str(missing.value) and "\n" not in str(missing.value)
    with pytest.raises(ConfigError) as unlisted:
        run_pipeline(tiny_config(tmp_path), from_stage="sft")
    assert str(unlisted.value).startswith("--from sft: not one of pipeline.stages")


def test_only_reruns_just_that_stage_from_the_outputs_already_there(finished_run, tmp_path: Path) -> None:
    run_dir = copy_of(finished_run[0], tmp_path)
    before = read_state(run_dir)

    result, events = run(tiny_config(run_dir), only="rlvr")

    assert result.ran == ["rlvr"] and kinds(events, "skip") == [] and result.evaluation is None
    after = read_state(run_dir)
    assert after["srl"] == before["srl"] and after["rlvr"]["output_id"] != before["rlvr"]["output_id"]


def test_sft_when_listed_feeds_srl_which_feeds_rlvr() -> None:
    stages = ["generate", "sft", "srl", "rlvr", "evaluate"]
    assert upstream_stages("srl", stages) == ["generate", "sft"]
    assert upstream_stages("rlvr", stages) == ["srl"]
    assert upstream_stages("rlvr", ["generate", "sft", "rlvr"]) == ["sft"]
    assert upstream_stages("evaluate", stages) == ["sft", "srl", "rlvr"]
    with pytest.raises(ConfigError, match="order they run"):
        build_config(overrides=["pipeline.stages=[srl,generate]"])


def test_cli_run_shows_skipped_stages_and_prints_the_comparison_table(finished_run, tmp_path: Path) -> None:
    run_dir = copy_of(finished_run[0], tmp_path)

    result = CliRunner().invoke(app, ["run", *TINY, f"output_dir={run_dir}", "--from", "evaluate"])

    assert result.exit_code == 0, result.output
    assert "skip srl: inputs unchanged" in result.output and "evaluate: forced" in result.output
    assert "tiny -> srl -> rlvr" in result.output and "Δ reward" in result.output
    assert f"report: {run_dir / 'report' / 'report.md'}" in result.output.replace("\n", "")


def test_cli_run_reports_a_missing_upstream_stage_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", *TINY, f"output_dir={tmp_path}", "--only", "evaluate"])

    assert exit_.value.code == 2
    assert "error: --only evaluate needs the srl stage's output" in capsys.readouterr().err


def test_the_store_holds_every_stage_run_and_the_registered_lineage(finished_run) -> None:
    from mlflow import MlflowClient

    from srl_rlvr.tracking.registry import lineage, resolve
    from srl_rlvr.tracking.runs import recorded_run_id

    run_dir, _, _ = finished_run
    client = MlflowClient()
    registered = json.loads((run_dir / "register" / "registered.json").read_text())
    srl_ref, rlvr_ref = (v["reference"] for v in registered["versions"])

    rlvr, srl, base = lineage(rlvr_ref)
    assert (rlvr.reference, srl.reference, base) == (rlvr_ref, srl_ref, "tiny")
    dataset_hash = json.loads((run_dir / "data" / "manifest.json").read_text())["hash"]
    assert srl.dataset == f"dataset:{dataset_hash}" and rlvr.dataset.startswith("task:arithmetic")
    assert {"reward", "accuracy", "latency_p50_ms"} <= set(rlvr.metrics)
    assert resolve("registry:arithmetic@staging").stage == "rlvr"  # the last model a run registers

    srl_run = client.get_run(recorded_run_id(run_dir / "srl"))
    assert srl_run.data.params["srl.learning_rate"] == "0.001" and srl_run.info.status == "FINISHED"
    assert srl_run.data.tags["mlflow.parentRunId"] == recorded_run_id(run_dir)
    assert srl_run.data.tags["srl_rlvr.dataset"] == f"dataset:{dataset_hash}"
    assert "code.version" in srl_run.data.tags
    assert [m.step for m in client.get_metric_history(srl_run.info.run_id, "loss")] == [1, 2]
    assert srl.run_id == srl_run.info.run_id  # the version links to the run that trained it
    evaluation = client.get_run(recorded_run_id(run_dir / "report"))
    assert {"tiny.reward", "srl.reward", "rlvr.reward"} <= set(evaluation.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(evaluation.info.run_id)}
    assert {"report.md", "report.json", "plots", "config.yaml"} <= artifacts


def test_register_finds_each_stage_by_path_even_when_the_base_took_its_label(tmp_path: Path) -> None:
    """A base model that is an earlier run's `srl` folder is labelled `srl`; this run's SRL is `srl-2`."""
    from srl_rlvr.evaluate.evaluation import EvalResult
    from srl_rlvr.evaluate.run import EvalRun
    from srl_rlvr.pipeline.stages import _result_of

    def result(label: str, model: Path, reward: float) -> EvalResult:
        return EvalResult(label, str(model), "arithmetic", {"reward": reward}, {"p50": 1.0}, 1.0, 8)

    base, trained = tmp_path / "prev" / "srl" / "final", tmp_path / "new" / "srl" / "final"
    evaluation = EvalRun(
        {"srl": result("srl", base, 0.2), "srl-2": result("srl-2", trained, 0.7)}, {}, tmp_path
    )
    assert _result_of(evaluation, tmp_path / "new" / "srl", "srl").metrics["reward"] == 0.7


def test_the_register_stage_uses_the_configs_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    run(tiny_config(tmp_path / "run", f"registry.tracking_uri={store}", "registry.model_name=team-model"))
    assert [m.name for m in MlflowClient(store).search_registered_models()] == ["team-model"]
    assert not (tmp_path / "mlflow.db").exists()


def test_a_user_task_named_module_class_runs_the_whole_pipeline_register_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow refuses '/' and ':' in model names; the name comes from the task's own `name`, cleaned.
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    _, events = run(
        tiny_config(tmp_path / "run", "task.name=user_task:ShoutTask", f"registry.tracking_uri={store}")
    )
    assert kinds(events, "finish") == ALL
    registered = json.loads((tmp_path / "run" / "register" / "registered.json").read_text())
    assert [r["reference"] for r in registered["versions"]] == [
        "registry:shout-it-v1-beta/1",
        "registry:shout-it-v1-beta/2",
    ]
    assert [m.name for m in MlflowClient(store).search_registered_models()] == ["shout-it-v1-beta"]


def test_a_registered_model_name_mlflow_refuses_fails_when_the_config_loads() -> None:
    with pytest.raises(ConfigError, match="cannot be empty or contain '/' or ':'"):
        build_config(overrides=["registry.model_name=team:model"])


def test_a_registry_base_model_loads_from_the_configs_store_when_run_from_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from srl_rlvr.config import ModelConfig
    from srl_rlvr.modeling import materialize
    from srl_rlvr.tracking.registry import register

    store = f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)  # the default store would be ./mlflow.db: it must stay untouched
    base = materialize(ModelConfig(name_or_path="tiny"), tmp_path / "tiny-base").name_or_path
    reference = register("team-base", base, stage="rlvr", parent="tiny", uri=store).reference
    config = tiny_config(
        tmp_path / "run",
        f"model.name_or_path={reference}",
        f"registry.tracking_uri={store}",
        "pipeline.stages=[rlvr,evaluate,register]",
    )
    _, events = run(config)
    assert kinds(events, "finish") == ["rlvr", "evaluate", "register"]
    registered = json.loads((tmp_path / "run" / "register" / "registered.json").read_text())
    assert registered["versions"][0]["parent"] == reference  # lineage names the reference, not a path
    assert not (tmp_path / "mlflow.db").exists()


def test_a_stage_left_running_by_a_kill_is_rerun_and_says_so(finished_run, tmp_path: Path) -> None:
    # What a kill -9 in evaluate leaves behind: its record still "running", with unchanged inputs.
    run_dir = copy_of(finished_run[0], tmp_path)
    state_file = run_dir / "pipeline.json"
    state = json.loads(state_file.read_text())
    state["stages"]["evaluate"]["status"] = "running"
    state_file.write_text(json.dumps(state))
    result, events = run(tiny_config(run_dir))
    assert result.ran == ["evaluate", "register"]
    assert (
        next(e.message for e in events if e.kind == "start")
        == "rerunning: its last run stopped before it finished"
    )


def test_eval_of_a_runs_model_uses_the_runs_config_and_writes_beside_it(
    finished_run, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Without --config, `eval` of runs/x/rlvr/final takes runs/x/config.yaml (its task options and
    # test set), so it reproduces the pipeline's own number, and writes runs/x/eval-rlvr-final/.
    run_dir = copy_of(finished_run[0], tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--model", str(run_dir / "rlvr" / "final")])
    assert exited.value.code == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"config: {run_dir / 'config.yaml'} (the model's run)" in said and "n=8" in said
    # progress while it generates: no terminal here, so a line on the progress log, not a bar
    assert any(r.getMessage().startswith("evaluate rlvr: 8/8 problems") for r in caplog.records)
    ours = json.loads((run_dir / "eval-rlvr-final" / "report.json").read_text())
    pipeline = json.loads((run_dir / "report" / "report.json").read_text())
    assert ours["n"] == pipeline["n"] == 8
    assert ours["results"]["rlvr"]["metrics"] == pipeline["results"]["rlvr"]["metrics"]
    assert not (run_dir / "rlvr" / "final" / "eval").exists()


def test_a_stage_whose_output_was_rewritten_after_it_ran_is_rerun(finished_run, tmp_path: Path) -> None:
    # `train srl` into the run's own srl/final (what the CLI once did by default) must not leave
    # `run` saying "inputs unchanged" over a model it did not train.
    run_dir = copy_of(finished_run[0], tmp_path)
    weights = run_dir / "srl" / "final" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    weights.write_bytes(weights.read_bytes())  # same bytes, rewritten ...
    os.utime(weights, ns=(before + 10**9, before + 10**9))  # ... a second later, whatever the clock's grain
    result, events = run(tiny_config(run_dir))
    assert result.ran == ["srl", "rlvr", "evaluate", "register"] and result.skipped == ["generate"]
    start = next(e for e in events if e.kind == "start" and e.stage == "srl")
    assert "changed after it ran" in start.message


def test_train_beside_a_pipeline_run_leaves_the_runs_own_stage_folder_alone(
    finished_run, tmp_path: Path
) -> None:
    from srl_rlvr.cli import default_train_out

    run_dir = copy_of(finished_run[0], tmp_path)
    assert default_train_out(tiny_config(run_dir), "srl") == run_dir / "train-srl"
    assert default_train_out(tiny_config(tmp_path / "fresh"), "srl") == tmp_path / "fresh" / "srl"
