"""Every trained model has an MLflow run, and its registry version names that run: a model trained by
`srl-rlvr train` and registered by hand, a student registered by `distill`, and a candidate registered
by `retrain` all go through the pipeline's tracked stage runner. Each test asks the store for the
version's run and finds the training stage's run, with the loss it logged step by step."""

from __future__ import annotations

from pathlib import Path

import pytest

from srl_rlvr.cli import main
from srl_rlvr.config import build_config
from srl_rlvr.data.records import Record, RecordStore
from srl_rlvr.data.versioning import save_dataset
from srl_rlvr.distill.run import distill_once
from srl_rlvr.feedback.retrain import retrain
from srl_rlvr.modeling import EMBEDDED_DIR
from srl_rlvr.tasks.arithmetic import ArithmeticTask
from srl_rlvr.tracking.registry import Version, promote, register, versions
from srl_rlvr.tracking.runs import mlflow_client, recorded_run_id, tracking_uri

TASK = ArithmeticTask(min_steps=1, max_steps=2)
TASK_CONFIG = {"name": "arithmetic", "options": {"min_steps": 1, "max_steps": 2}}
SHORT_SFT = {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "logging_steps": 1}
SHORT_EVAL = {"max_new_tokens": 32, "batch_size": 8}


@pytest.fixture
def store() -> str:
    """The session's MLflow store (conftest); each test registers under a name of its own."""
    return tracking_uri()


def assert_trained_by(version: Version, stage: str, uri: str) -> None:
    assert version.run_id, f"{version.reference} names no run"
    client = mlflow_client(uri)
    run = client.get_run(version.run_id)
    assert run.data.tags["srl_rlvr.stage"] == stage
    assert [m.step for m in client.get_metric_history(version.run_id, "loss")], "the run logged no loss"


def production(name: str) -> str:
    """The embedded model as `name`'s production version: what distill and retrain start from."""
    version = register(name, EMBEDDED_DIR, stage="pretrain", parent="embedded", metrics={"reward": 0.5})
    promote(name, version.version, "production")
    return version.reference


def test_a_model_trained_by_train_and_registered_by_hand_names_its_training_run(
    tmp_path: Path, store: str
) -> None:
    data = tmp_path / "data"
    save_dataset([TASK.solve(p) for p in TASK.sample(8, 0, "train")], data, source="solver")
    overrides = [
        f"output_dir={tmp_path}",
        "model.name_or_path=tiny",
        *(f"sft.{k}={v}" for k, v in SHORT_SFT.items()),
    ]
    for command in (
        ["train", "sft", *overrides, "--data", str(data), "--out", str(tmp_path / "sft")],
        [
            "registry",
            "register",
            str(tmp_path / "sft" / "final"),
            "--name",
            "run-ids-train",
            "--parent",
            "tiny",
        ],
    ):
        with pytest.raises(SystemExit) as done:
            main(command)
        assert done.value.code == 0
    [version] = versions("run-ids-train")
    assert version.run_id == recorded_run_id(tmp_path / "sft")
    assert_trained_by(version, "sft", store)


def test_a_distilled_student_names_its_training_run_under_the_distillations(
    tmp_path: Path, store: str
) -> None:
    teacher = production("run-ids-teacher")
    config = build_config(
        {
            "output_dir": str(tmp_path / "runs"),
            "task": TASK_CONFIG,
            "data": {"test_size": 8},
            "sft": SHORT_SFT,
            "eval": SHORT_EVAL,
            "registry": {"tracking_uri": store},
            "distill": {
                "model_name": "run-ids-student",
                "num_prompts": 8,
                "teacher_max_tokens": 32,
                "min_quality_ratio": 0.0,
            },
        }
    )
    result = distill_once(config, teacher, "embedded-student", None)
    [version] = versions("run-ids-student")
    assert version.reference == result.registered
    assert_trained_by(version, "sft", store)
    parent = mlflow_client(store).get_run(version.run_id).data.tags["mlflow.parentRunId"]
    assert parent == recorded_run_id(result.run_dir)  # the distillation's own run


def test_a_retrained_candidate_names_its_training_run(tmp_path: Path, store: str) -> None:
    name = "run-ids-retrain"
    production(name)
    records = RecordStore(f"sqlite:///{tmp_path / 'records.db'}")
    for i, problem in enumerate(TASK.sample(4, seed=1, split="train")):
        records.add(
            Record(f"r{i}", "k", "arithmetic", "prod", problem.text, "Answer: -1", 5.0, 0.0, "answer")
        )
    records.flush()
    config = build_config(
        {
            "output_dir": str(tmp_path / "runs"),
            "task": TASK_CONFIG,
            "data": {"test_size": 8},
            "pipeline": {"stages": ["generate", "sft", "evaluate", "register"]},
            "sft": SHORT_SFT,
            "eval": SHORT_EVAL,
            "registry": {"model_name": name, "tracking_uri": store},
            "feedback": {"store": f"sqlite:///{tmp_path / 'records.db'}", "fresh_examples": 4},
        }
    )
    result = retrain(config)
    candidate = next(v for v in versions(name) if v.reference == result.candidate)
    assert_trained_by(candidate, "sft", store)
