"""JSONL reading and writing with errors a user can act on.

A malformed row is reported as `file:line: what is wrong`; every bad row is reported at once and
nothing is skipped silently, so a user fixes the file in one pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from srl_rlvr.data.trajectory import Trajectory
from srl_rlvr.errors import DataError

M = TypeVar("M", bound=BaseModel)
MAX_REPORTED_ERRORS = 20


def iter_json_rows(path: str | Path) -> Iterator[tuple[int, Any | Exception]]:
    """Yield (line number, parsed value or the JSON error) for each non-blank line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: not UTF-8 text (byte {e.start + 1}); is this a JSONL file?"
                ) from None
            if not line.strip():
                continue
            try:  # without its newline, so an error's column is where it is on the line
                value = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                value = e
            except RecursionError:
                value = json.JSONDecodeError("nested too deeply to read", line, 0)
            except ValueError as e:  # an integer of more digits than Python converts
                value = json.JSONDecodeError(str(e).split(";")[0], line, 0)
            yield lineno, value


def _explain(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"


def read_models(path: str | Path, model: type[M]) -> list[M]:
    """Read every row of a JSONL file as `model`; raise one DataError listing all bad rows."""
    rows: list[M] = []
    errors: list[str] = []
    for lineno, value in iter_json_rows(path):
        if isinstance(value, Exception):
            errors.append(f"{path}:{lineno}: invalid JSON: {value.msg} (column {value.colno})")
            continue
        try:
            rows.append(model.model_validate(value))
        except ValidationError as e:
            errors.append(f"{path}:{lineno}: {_explain(e)}")
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        if len(errors) > len(shown):
            shown.append(f"... and {len(errors) - len(shown)} more bad rows in {path}")
        raise DataError("\n".join(shown))
    return rows


def read_trajectories(path: str | Path) -> list[Trajectory]:
    return read_models(path, Trajectory)


def to_json_line(row: BaseModel | dict[str, Any]) -> str:
    """Canonical one-line JSON (sorted keys) so equal content always hashes equal."""
    data = row.model_dump(mode="json", exclude_none=True) if isinstance(row, BaseModel) else row
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def append_jsonl(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Append rows and flush each, so a crash loses at most the row being written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(to_json_line(row) + "\n")
            f.flush()
            count += 1
    return count


def write_jsonl(path: str | Path, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write rows to `path` atomically (temp file then rename): a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    count = append_jsonl(tmp, rows)
    tmp.replace(path)
    return count
