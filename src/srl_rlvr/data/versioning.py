"""Content-addressed dataset versions.

A dataset version is named by the SHA-256 of its canonical JSONL content, so the same rows always
give the same id and a pipeline stage can tell whether its input changed. The manifest beside the
rows says how many there are, where they came from and when; per-row provenance stays in the rows.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from srl_rlvr.data.jsonl import read_trajectories, to_json_line, write_jsonl
from srl_rlvr.data.trajectory import Trajectory

ROWS_FILE = "trajectories.jsonl"
MANIFEST_FILE = "manifest.json"


def content_hash(rows: Sequence[Trajectory]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(to_json_line(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _provenance_summary(rows: Sequence[Trajectory]) -> dict[str, dict[str, int]]:
    """For each provenance field with few distinct values (teacher, source...), how many rows have each."""
    summary: dict[str, Counter[str]] = {}
    for row in rows:
        for key, value in row.provenance.items():
            if isinstance(value, str | int | bool):
                summary.setdefault(key, Counter())[str(value)] += 1
    return {k: dict(c.most_common()) for k, c in summary.items() if len(c) <= 20}


def save_dataset(
    rows: Sequence[Trajectory], out_dir: str | Path, source: str, **extra: Any
) -> dict[str, Any]:
    """Write `rows` and their manifest into `out_dir`; return the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / ROWS_FILE, rows)
    manifest = {
        "hash": content_hash(rows),
        "count": len(rows),
        "source": source,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provenance_fields": sorted({k for row in rows for k in row.provenance}),
        "provenance_summary": _provenance_summary(rows),
        **extra,
    }
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_dataset(path: str | Path) -> tuple[list[Trajectory], dict[str, Any]]:
    """Load a dataset folder (rows + manifest) or a bare JSONL file (manifest computed on the fly)."""
    path = Path(path)
    rows_path = path / ROWS_FILE if path.is_dir() else path
    rows = read_trajectories(rows_path)
    manifest_path = rows_path.parent / MANIFEST_FILE
    if path.is_dir() and manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
    else:
        manifest = {"hash": content_hash(rows), "count": len(rows), "source": str(rows_path)}
    return rows, manifest
