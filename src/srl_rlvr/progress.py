"""How long work shows that it is moving: one rich bar on a terminal, a plain line every few items in
a log. Training steps, generated trajectories and evaluated problems all use these two.

The lines go to the `srl_rlvr.progress` logger at INFO, which the CLI turns on where no bar can draw
(stderr is a file or a pipe: cron, nohup, CI); on a terminal the bar alone shows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

PROGRESS_LOG = "srl_rlvr.progress"
LINES_PER_JOB = 20  # a line every twentieth of the work: enough to see it move, few enough to read


class ProgressLines:
    """Log `what: done/total unit (pct), rate, time left` each time `done` crosses another twentieth
    of `total` (or `every` items), and once at the end. The rate counts only the items done since
    this object was made, so a resumed job's rate and ETA are its own."""

    def __init__(
        self,
        what: str,
        total: int,
        unit: str,
        done: int = 0,
        every: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.total, self.unit, self.clock = what, total, unit, clock
        self.every = every or max(1, round(total / LINES_PER_JOB))
        self.first, self.start = done, clock()
        self.next_line = (done // self.every + 1) * self.every
        self.shown = -1

    def update(self, done: int, note: str = "") -> None:
        if done < min(self.next_line, self.total) or done == self.shown:
            return
        self.shown = done
        self.next_line = (done // self.every + 1) * self.every
        rate = (done - self.first) / max(self.clock() - self.start, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        logging.getLogger(PROGRESS_LOG).info(
            "%s: %d/%d %s (%.0f%%), %.3g %s/s, %s left%s",
            self.what,
            done,
            self.total,
            self.unit,
            100 * done / max(self.total, 1),
            rate,
            self.unit,
            duration(left),
            f", {note}" if note else "",
        )


def duration(seconds: float) -> str:
    """`12m05s` or `1h02m`; `?` before any item is done."""
    if seconds == float("inf"):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def progress_bar(console: Any = None, transient: bool = False) -> Any:
    """The one bar every command draws: what, bar, done/total, items per second, elapsed, time left,
    and a note (`add_task(..., unit="steps", note="")`; both fields are required). Off where `console`
    (default: stdout) is no terminal: a bar there is one stale line at the end, and the log has
    `ProgressLines` instead."""
    from rich import get_console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        """Items per second in the task's own unit (rich's speed column counts bytes)."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            unit = task.fields.get("unit", "steps")
            return Text(f"{speed:.3g} {unit}/s" if speed else f"- {unit}/s", style="progress.data.speed")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        transient=transient,
        disable=not (console or get_console()).is_terminal,
    )
