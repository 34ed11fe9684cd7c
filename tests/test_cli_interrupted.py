"""A command stopped by SIGTERM while it trains (`retrain` here, which has no handler of its own) says it
was interrupted and exits 143, never "internal error ... a bug in srl-rlvr"; production stays as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from srl_rlvr.data.records import Record, RecordStore
from srl_rlvr.modeling import EMBEDDED_DIR
from srl_rlvr.tasks.arithmetic import ArithmeticTask
from srl_rlvr.tracking.registry import promote, register, resolve

NAME = "cli-interrupted"


def test_sigterm_while_retrain_trains_is_an_interruption_not_a_bug(tmp_path: Path) -> None:
    version = register(NAME, EMBEDDED_DIR, stage="pretrain", parent="embedded", metrics={"reward": 0.5})
    promote(NAME, version.version, "production")
    store = RecordStore(f"sqlite:///{tmp_path / 'records.db'}")
    for i, problem in enumerate(ArithmeticTask(min_steps=1, max_steps=2).sample(4, seed=1, split="train")):
        store.add(Record(f"r{i}", "k", "arithmetic", "prod", problem.text, "Answer: -1", 5.0, 0.0, "answer"))
    store.flush()
    config = tmp_path / "loop.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "runs"),
                "task": {"name": "arithmetic", "options": {"min_steps": 1, "max_steps": 2}},
                "pipeline": {"stages": ["generate", "sft", "evaluate", "register"]},
                "registry": {"model_name": NAME, "tracking": False},
                # 2,000 tiny steps: the first progress line at step 100 leaves 1,900, far more than a
                # signal needs to land, however the two processes are scheduled
                "sft": {"max_steps": 2000, "batch_size": 2, "max_length": 64, "save_steps": 100000},
                "feedback": {"store": f"sqlite:///{tmp_path / 'records.db'}", "fresh_examples": 4},
            }
        )
    )
    command = [sys.executable, "-c", "from srl_rlvr.cli import main; main()", "retrain", str(config)]
    # the session's MLflow store (conftest) travels in the environment; one thread, as a test worker has
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) as process:
        assert process.stderr is not None
        seen = []
        for line in process.stderr:  # the first training progress line: the SIGTERM handler is in place
            seen.append(line)
            if "sft: " in line and " steps (" in line:
                break
        else:
            raise AssertionError("retrain ended before training began:\n" + "".join(seen))
        process.send_signal(signal.SIGTERM)
        rest = process.stderr.read()
    assert process.returncode == 143, "".join(seen) + rest
    assert "interrupted; checkpoint saved at" in rest
    assert "internal error" not in rest
    assert resolve(f"registry:{NAME}@production").version == version.version
