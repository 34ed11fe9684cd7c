"""The encoder pipeline skips and resumes as the causal one does: a rerun of a finished run does
nothing, an interrupted one goes on from its last finished stage, and a changed setting reruns the
stages that read it and everything after them. Tiny BERTs built in-process, nothing downloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from srl_rlvr.config import build_config
from srl_rlvr.pipeline.encoders import run_encoder_pipeline
from srl_rlvr.pipeline.runner import read_state
from srl_rlvr.tracking import registry


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model's matrices are too small to split between threads
    yield
    torch.set_num_threads(threads)


def embedding_config(folder: Path, **encoder):
    return build_config(
        {
            "model": {"type": "embedding", "name_or_path": "tiny", "device": "cpu"},
            "task": {"name": "retrieval"},
            "output_dir": str(folder),
            "data": {"test_size": 20},
            "eval": {"bootstrap_samples": 100},
            "encoder": {
                "steps": 4,
                "batch_size": 8,
                "learning_rate": 1e-3,
                "max_length": 48,
                "hard_negatives": 0,
                **encoder,
            },
            "registry": {"model_name": "resume-embedding"},
        }
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run; each test works on its own copy of the folder (outputs are named relative to it)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return folder, run_encoder_pipeline(embedding_config(folder))
    finally:
        torch.set_num_threads(threads)


def copy_of(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished[0], tmp_path / "run"))


def test_a_rerun_of_a_finished_encoder_run_does_nothing(finished, tmp_path):
    folder, first = copy_of(finished, tmp_path), finished[1]
    model = folder / "train" / "model" / "model.safetensors"
    trained_at = model.stat().st_mtime_ns
    versions = len(registry.versions("resume-embedding"))

    again = run_encoder_pipeline(embedding_config(folder))

    assert first.ran == ["generate", "train", "evaluate", "register"]
    assert again.ran == [] and again.skipped == first.ran
    assert model.stat().st_mtime_ns == trained_at  # not trained again
    assert len(registry.versions("resume-embedding")) == versions  # not registered again
    assert (again.registered, again.report) == (first.registered, first.report)


def test_an_interrupted_run_goes_on_from_its_last_finished_stage(finished, tmp_path):
    folder, first = copy_of(finished, tmp_path), finished[1]
    records = read_state(folder)
    trained_id = records["train"]["output_id"]
    # what a kill during evaluation leaves: evaluate still running, register never started
    records["evaluate"] = {
        "fingerprint": records["evaluate"]["fingerprint"],
        "status": "running",
        "output": None,
    }
    del records["register"]
    (folder / "pipeline.json").write_text(json.dumps({"stages": records}))

    resumed = run_encoder_pipeline(embedding_config(folder))

    assert resumed.skipped == ["generate", "train"] and resumed.ran == ["evaluate", "register"]
    assert read_state(folder)["train"]["output_id"] == trained_id
    assert resumed.registered == first.registered  # registered under the train stage's run: found, not added


def test_a_changed_training_setting_retrains_but_keeps_the_data(finished, tmp_path):
    folder = copy_of(finished, tmp_path)
    changed = run_encoder_pipeline(embedding_config(folder, learning_rate=5e-4))
    assert changed.skipped == ["generate"] and changed.ran == ["train", "evaluate", "register"]
