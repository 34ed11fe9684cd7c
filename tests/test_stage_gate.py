"""Every training stage earns its place: the task's verifier on the validation split decides."""

import json
from pathlib import Path

import pytest

from srl_rlvr.config import build_config
from srl_rlvr.pipeline import run_pipeline
from srl_rlvr.pipeline.gate import gate_stage, read_gate
from srl_rlvr.tasks import load_task

SMALL = [
    "model.name_or_path=embedded",  # it solves some problems, so a worse model shows
    "task.options={min_steps: 2, max_steps: 3}",
    "data.train_size=16",
    "data.val_size=32",
    "data.test_size=8",
    "sft.batch_size=8",
    "sft.max_steps=4",
    "sft.learning_rate=0.5",  # deliberately harmful
    "rlvr.max_steps=1",
    "rlvr.batch_size=4",
    "rlvr.num_generations=2",
    "rlvr.max_completion_length=16",
    "rlvr.learning_rate=1e-9",  # one step that changes nothing worth keeping
    "rlvr.eval_steps=0",
    "eval.max_new_tokens=40",
    "eval.batch_size=32",
    "eval.bootstrap_samples=100",
    "pipeline.stages=[generate,sft,rlvr,evaluate,register]",
]


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("gate") / "run"
    store = f"sqlite:///{run_dir.parent}/mlflow.db"
    run_pipeline(build_config(overrides=[*SMALL, f"output_dir={run_dir}", f"registry.tracking_uri={store}"]))
    return run_dir


def test_a_stage_that_makes_validation_worse_is_not_kept_and_the_next_starts_from_the_best(
    gated_run: Path,
) -> None:
    sft = read_gate(gated_run / "sft")
    assert sft is not None and not sft.kept
    assert sft.metric == "accuracy" and sft.n == 32
    assert sft.candidate_score < sft.incumbent_score and sft.delta < 0 and sft.low <= sft.delta <= sft.high
    assert sft.best == "embedded"
    rlvr = read_gate(gated_run / "rlvr")
    assert rlvr is not None and rlvr.incumbent == "embedded"  # RLVR started from the base, not from SFT
    assert rlvr.incumbent_score == sft.incumbent_score  # scored once, reused from SFT's gate


def test_the_report_shows_each_gate_and_only_kept_models_are_registered(gated_run: Path) -> None:
    report = (gated_run / "report" / "report.md").read_text()
    assert "## Stage gates (validation split)" in report
    assert "| sft | **no** | accuracy |" in report
    gates = json.loads((gated_run / "report" / "report.json").read_text())["gates"]
    assert [g["stage"] for g in gates] == ["sft", "rlvr"]
    registered = json.loads((gated_run / "register" / "registered.json").read_text())["versions"]
    kept = [g["stage"] for g in gates if g["kept"]]
    assert [v["stage"] for v in registered] == kept


def test_the_gate_keeps_a_model_that_beats_the_one_before_it(gated_run: Path, tmp_path: Path) -> None:
    """The same two models with their roles swapped: the base now beats the harmed incumbent."""
    config = build_config(overrides=[*SMALL, f"output_dir={gated_run}"])
    harmed = str(gated_run / "sft" / "final")
    gate = gate_stage(
        config, "sft", "embedded", harmed, load_task("arithmetic", {"min_steps": 2, "max_steps": 3}), tmp_path
    )
    assert gate.kept and gate.best == "embedded" and gate.delta > 0
    assert read_gate(tmp_path) == gate
