"""Checkpoints read back on resume: an unreadable newest checkpoint (a kill or a full disk cut a file
short) is passed over for the one before, with a line naming the file; none readable is our one-line
error, never a traceback from inside the trainer."""

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from srl_rlvr.data.jsonl import read_trajectories
from srl_rlvr.errors import DataError
from srl_rlvr.train.callbacks import CheckpointError, last_checkpoint


def save_checkpoint(out_dir: Path, step: int) -> Path:
    """The files a Trainer checkpoint holds, in their real formats (weights, optimizer, state)."""
    folder = out_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file({"w": torch.full((64, 64), float(step))}, folder / "model.safetensors")
    torch.save({"state": {0: {"exp_avg": torch.zeros(64)}}}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.pt", "trainer_state.json"])
def test_a_corrupted_last_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, damaged: str, caplog: pytest.LogCaptureFixture
) -> None:
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step)
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-6")
    cut_short(tmp_path / "checkpoint-6" / damaged)
    with caplog.at_level(logging.WARNING):
        assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"checkpoint-6 is unreadable ({damaged}:" in line and line.endswith(
        "resuming from checkpoint-4 instead"
    )


def test_no_readable_checkpoint_is_one_line_naming_the_file(tmp_path: Path) -> None:
    cut_short(save_checkpoint(tmp_path, 3) / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"checkpoint-3 is unreadable \(model\.safetensors: ") as caught:
        last_checkpoint(tmp_path)
    assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)
    assert last_checkpoint(tmp_path / "none") is None


def test_data_nested_too_deeply_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"problem": "x", "steps": ' + "[" * 5000 + "]" * 5000 + "}\n")
    with pytest.raises(DataError, match=r"rows\.jsonl:1: invalid JSON: nested too deeply"):
        read_trajectories(path)
