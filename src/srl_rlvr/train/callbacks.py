"""Trainer callbacks every stage shares: metrics.jsonl, SIGTERM checkpoints, progress.

They plug into any transformers/TRL Trainer, so SRL, SFT and RLVR get the same behaviour from
the same code rather than parallel copies.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from srl_rlvr.distributed import any_rank, is_main
from srl_rlvr.errors import UserError
from srl_rlvr.progress import ProgressLines

log = logging.getLogger(__name__)


class CheckpointError(UserError):
    """No checkpoint of a stage can be read back."""


class MetricsLogger(TrainerCallback):
    """Appends every log record to `metrics.jsonl` (one JSON object a line, with the step)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        record = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, int | float)}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class SigtermCheckpoint(TrainerCallback):
    """On SIGTERM (spot reclaim, scheduler preemption), save a checkpoint at the end of the step and stop.

    The run then resumes from that checkpoint with `--resume`. `interrupted` tells the caller. With
    several processes, every rank stops at the first step end where any of them got the signal (a
    checkpoint may be a collective that all must enter together).
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self._requested = True

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if any_rank(self._requested):
            control.should_save = True
            control.should_training_stop = True
            self.interrupted = True

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


class TimedCheckpoint(TrainerCallback):
    """Checkpoint when `minutes` have passed since the last checkpoint (or the start), as well as every
    `save_steps`: a stage of few slow steps would otherwise have nothing to resume from. With several
    processes the main one's clock decides for all."""

    def __init__(self, minutes: float, clock: Any = time.monotonic) -> None:
        self.seconds, self.clock = minutes * 60, clock
        self.last = 0.0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.last = self.clock()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.seconds and any_rank(is_main() and self.clock() - self.last >= self.seconds):
            control.should_save = True

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.last = self.clock()


class ProgressLog(TrainerCallback):
    """Training's progress lines (`progress.ProgressLines`: step/total, steps/s, time left, the last
    loss), for logs and cron mail where no bar can draw. The libraries' own bars are off
    (`run_settings`), so without this a long stage in a log file is silent."""

    def __init__(
        self, stage: str, every: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stage, self.every, self.clock = stage, every, clock
        self.lines: ProgressLines | None = None
        self.loss: float | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.lines = ProgressLines(
            self.stage, state.max_steps, "steps", state.global_step, self.every, self.clock
        )

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        self.loss = (logs or {}).get("loss", self.loss)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero and self.lines is not None:
            self.lines.update(state.global_step, f"loss {self.loss:.4g}" if self.loss is not None else "")


def last_checkpoint(out_dir: str | Path) -> str | None:
    """The newest readable `checkpoint-N` folder under `out_dir`, or None. An unreadable one (a kill or
    a full disk cut a file short) is passed over with a warning naming the file, so a resume starts
    from the one before instead of failing deep inside the trainer."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return None
    found = [d for d in out_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if d.is_dir()]
    steps = {d: int(d.name.rpartition("-")[2]) for d in found if d.name.rpartition("-")[2].isdigit()}
    newer: list[str] = []
    for folder in sorted(steps, key=steps.__getitem__, reverse=True):
        problem = checkpoint_problem(folder)
        if problem is None:
            if newer:
                log.warning("%s; resuming from %s instead", "; ".join(newer), folder.name)
            return str(folder)
        newer.append(f"checkpoint {folder} is unreadable ({problem})")
    if newer:
        raise CheckpointError(
            f"{newer[0]}, and no earlier checkpoint is readable; delete {out_dir} to start over"
        )
    return None


def checkpoint_problem(folder: Path) -> str | None:
    """What makes a checkpoint folder unusable, naming the file, or None. Cheap: JSON is parsed,
    safetensors headers and torch zip directories read, no weights loaded."""
    import zipfile

    from safetensors import safe_open

    if not (folder / "trainer_state.json").is_file():
        return "no trainer_state.json"
    for path in sorted(folder.iterdir()):
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".safetensors":
                with safe_open(str(path), "pt") as f:
                    list(f.keys())
            elif path.suffix in (".pt", ".pth", ".bin"):
                with zipfile.ZipFile(path):
                    pass
        except Exception as e:  # any reader's error means the same: this file cannot be loaded
            return f"{path.name}: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
    return None
