"""Shared by the tasks whose problems come from a data file: row base, reading, answer extraction.

Model completions may carry reasoning before the answer, so answers are the *last* JSON object.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from srl_rlvr.data.jsonl import iter_json_rows, read_models
from srl_rlvr.errors import DataError
from srl_rlvr.tasks.base import Split, split_of

_DECODER = json.JSONDecoder()


class TaskRow(BaseModel):
    """What every task data row has: an id, which fixes the row's split and names it in results."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)


R = TypeVar("R", bound=TaskRow)


def last_json_object(text: str) -> dict[str, Any] | None:
    """The last top-level JSON object in free text, so reasoning (even with braces) may precede it."""
    found, i = None, text.find("{")
    while i != -1:
        try:
            value, end = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        if isinstance(value, dict):
            found = value
        i = text.find("{", end)
    return found


def length_bucket(text: str) -> str:
    """A coarse size to slice metrics by: short (<= 12 words), medium (<= 30) or long."""
    words = len(text.split())
    return "short" if words <= 12 else "medium" if words <= 30 else "long"


def read_task_rows(path: str | Path, model: type[R]) -> list[R]:
    """Rows of a task data file; duplicate ids are an error because splits and results key on the id."""
    rows = read_models(path, model)
    if not rows:
        raise DataError(f"{path}: no rows; a task data file needs at least one JSON object per line")
    # read_models raised on any bad line, so the non-blank lines map one-to-one onto the rows.
    lines = [lineno for lineno, _ in iter_json_rows(path)]
    first_line: dict[str, int] = {}
    for lineno, row in zip(lines, rows, strict=True):
        if row.id in first_line:
            raise DataError(f"{path}:{lineno}: id {row.id!r} already used on line {first_line[row.id]}")
        first_line[row.id] = lineno
    return rows


def sample_rows(rows: Sequence[R], task_name: str, n: int, seed: int, split: Split) -> list[R]:
    """Up to `n` rows of `split` in a seed-fixed order: how every data-file task samples."""
    chosen = [row for row in rows if split_of(row.id) == split]
    random.Random(f"{task_name}-{seed}-{split}").shuffle(chosen)
    return chosen[:n]
