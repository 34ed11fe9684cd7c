"""The training callback that sends each logged step to the stage's MLflow run. Apart from `runs.py`
because it needs transformers, which the registry commands should not wait ~7 s to import."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

if TYPE_CHECKING:
    from srl_rlvr.tracking.runs import TrackedRun

log = logging.getLogger(__name__)


class MLflowMetrics(TrainerCallback):
    """Each logged training step's numbers, live, so the MLflow UI shows a run while it trains."""

    def __init__(self, run: TrackedRun) -> None:
        self.run = run

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs:
            try:
                self.run.log_metrics(logs, step=state.global_step)
            except Exception as e:  # a tracking server hiccup must not kill hours of training
                log.warning("could not log step %d to MLflow: %s", state.global_step, e)
