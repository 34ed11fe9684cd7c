"""kill -9 at every pipeline stage, then the same command: it finishes, nothing is duplicated, no MLflow
run is left RUNNING, and the final table equals an uninterrupted run's.

Each run is a real process (`pipeline_process.py`) that SIGKILLs itself at a fixed point of one stage
(its k-th progress event, or its second registry write), so where it dies does not depend on timing.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from srl_rlvr.pipeline import read_state

HERE = Path(__file__).parent
# The embedded model, so the table has accuracies to compare (a random model scores 0 everywhere).
SMALL = [
    "model.name_or_path=embedded",
    "srl.prompt_style=continue",
    "data.train_size=8",
    "data.test_size=32",
    "srl.max_steps=2",
    "srl.save_steps=1",
    "srl.batch_size=4",
    "srl.num_generations=2",
    "srl.max_completion_length=8",
    "srl.require_think=false",
    "srl.learning_rate=1e-3",
    "srl.eval_steps=0",
    "rlvr.max_steps=2",
    "rlvr.save_steps=1",
    "rlvr.batch_size=4",
    "rlvr.num_generations=2",
    "rlvr.max_completion_length=48",
    "rlvr.eval_steps=0",
    "eval.max_new_tokens=48",
    "eval.batch_size=32",
    "eval.bootstrap_samples=100",
    "pipeline.stages=[generate,srl,rlvr,evaluate,register]",
    "pipeline.gate=false",
]
# stage -> the progress event (1-based) at which the process kills itself
KILL_POINTS = {"generate": 3, "srl": 2, "rlvr": 2, "evaluate": 2, "register": 2}


def pipeline(run_dir: Path, kill_stage: str = "", kill_at: int = 0) -> int:
    overrides = [
        *SMALL,
        f"output_dir={run_dir}",
        f"registry.tracking_uri=sqlite:///{run_dir.parent}/mlflow.db",
    ]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the run's own store
    process = subprocess.run(
        [sys.executable, str(HERE / "pipeline_process.py"), json.dumps(overrides), kill_stage, str(kill_at)],
        capture_output=True,
        text=True,
        cwd=run_dir.parent,
        env=env,
        timeout=900,
    )
    assert process.returncode in (0, -signal.SIGKILL), process.stderr[-3000:]
    return process.returncode


def table(run_dir: Path) -> dict[str, float]:
    report = json.loads((run_dir / "report" / "report.json").read_text())
    return {label: result["metrics"]["reward"] for label, result in report["results"].items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_dir.parent.mkdir(exist_ok=True)
    assert pipeline(run_dir) == 0
    scores = table(run_dir)
    assert 0 < scores["embedded"] < 1, scores  # a table worth comparing
    return scores


def test_kill_9_in_every_stage_in_turn_then_the_same_command_finishes_with_the_same_table(
    tmp_path: Path, uninterrupted: dict[str, float]
) -> None:
    # One run directory, killed once in each stage in turn: each rerun must get past the stage it was
    # killed in (resume or restart it) before it dies in the next one.
    run_dir = tmp_path / "run"
    for stage, at in KILL_POINTS.items():
        assert pipeline(run_dir, stage, at) == -signal.SIGKILL, f"not killed in {stage}"
        assert read_state(run_dir)[stage]["status"] == "running", f"the kill must land inside {stage}"

    assert pipeline(run_dir) == 0
    assert table(run_dir) == uninterrupted
    rows = (run_dir / "data" / "trajectories.jsonl").read_text().splitlines()
    assert len(rows) == 8 and len({json.loads(r)["problem"] for r in rows}) == 8
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    versions = client.search_model_versions("name='arithmetic'")
    assert sorted(v.tags["stage"] for v in versions) == ["rlvr", "srl"], "a model was registered twice"
