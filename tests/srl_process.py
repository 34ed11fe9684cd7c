"""SRL on the tiny model as its own process, which stops itself (SIGSTOP) right after saving
checkpoint-STOP_AT, so that its parent can kill it there with SIGKILL (test_srl.py).

    python srl_process.py OUT '<config as JSON>' STOP_AT
"""

import json
import os
import signal
import sys

from transformers import TrainerCallback

from srl_rlvr.config import build_config
from srl_rlvr.tasks import load_task
from srl_rlvr.train.srl import train_srl


class StopAfterSaving(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGSTOP)


def main() -> None:
    out, config, stop_at = sys.argv[1], build_config(json.loads(sys.argv[2])), int(sys.argv[3])
    task = load_task("arithmetic")
    trajectories = [task.solve(p) for p in task.sample(8, seed=0, split="train")]
    train_srl(config, trajectories, out, callbacks=[StopAfterSaving(stop_at)])


if __name__ == "__main__":
    main()
