"""Versioned test sets, and the check that keeps training data out of them.

A test set is problems (`{id, text, answer, metadata}` a line) in `<root>/<name>/<version>/`, where
the version is the start of the rows' SHA-256, as trajectory datasets are named by content
(`versioning.py`): the same rows are the same version, and `<root>/<name>/latest` names the newest.

Leakage: a test problem whose text is in the training data, exactly (after case and whitespace are
normalised) or nearly (MinHash estimate of the Jaccard similarity of character 5-grams at or above a
threshold; Broder 1997, with datasketch's LSH index to find candidates without comparing all pairs),
scores memory, not skill, so it is removed. Character shingles, not word ones, because a paraphrase
of a few tokens in a short problem leaves most word n-grams different but most character n-grams
the same.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from srl_rlvr.errors import DataError

ROWS_FILE = "problems.jsonl"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "latest"
TEACHER_FOLDER = (
    ".teacher"  # inside <root>/<name>/: the problems the teacher wrote for the set, kept for reruns
)
SHINGLE = 5  # characters
NUM_PERM = 128  # MinHash permutations: the Jaccard estimate's standard error is about 1/sqrt(128) ~ 0.09


@dataclass
class HeldOutProblem:
    id: str
    text: str
    answer: Any
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Leak:
    """A test row removed because training data holds it."""

    id: str
    kind: str  # exact or near
    similarity: float
    training_text: str


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def _minhash(text: str) -> Any:
    from datasketch import MinHash

    text = normalise(text)
    shingles = {text[i : i + SHINGLE] for i in range(max(len(text) - SHINGLE + 1, 1))}
    minhash = MinHash(num_perm=NUM_PERM, seed=1)
    minhash.update_batch([s.encode() for s in shingles])
    return minhash


def find_leaks(rows: Sequence[HeldOutProblem], training: Sequence[str], threshold: float) -> list[Leak]:
    """The rows whose text training data holds exactly, or with similarity >= `threshold`."""
    from datasketch import MinHashLSH

    exact = {normalise(t): t for t in training}
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    hashes = {}
    for i, text in enumerate(dict.fromkeys(training)):
        hashes[i] = (_minhash(text), text)
        lsh.insert(i, hashes[i][0])
    leaks = []
    for row in rows:
        if normalise(row.text) in exact:
            leaks.append(Leak(row.id, "exact", 1.0, exact[normalise(row.text)]))
            continue
        minhash = _minhash(row.text)
        found = [(minhash.jaccard(hashes[k][0]), hashes[k][1]) for k in lsh.query(minhash)]
        best = max(found, default=None)
        if best is not None and best[0] >= threshold:
            leaks.append(Leak(row.id, "near", round(best[0], 3), best[1]))
    return leaks


def content_version(rows: Sequence[HeldOutProblem]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update((json.dumps(asdict(row), sort_keys=True, default=str) + "\n").encode())
    return digest.hexdigest()[:12]


def save_testset(root: str | Path, name: str, rows: Sequence[HeldOutProblem], **manifest: Any) -> Path:
    """Write the rows as a new version of `name` (or find the same version there) and make it latest."""
    if not rows:
        raise DataError(f"test set {name}: no problems left to save")
    version = content_version(rows)
    folder = Path(root) / name / version
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ROWS_FILE).open("w") as f:
        for row in rows:
            f.write(json.dumps(asdict(row), default=str) + "\n")
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record = {"name": name, "version": version, "count": len(rows), "created": created, **manifest}
    (folder / MANIFEST_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
    (Path(root) / name / LATEST_FILE).write_text(version + "\n")
    return folder


def testset_folder(root: str | Path, reference: str) -> Path:
    """`NAME` (its latest version) or `NAME@VERSION` as its folder under `root`."""
    name, _, version = reference.partition("@")
    base = Path(root) / name
    if not version:
        latest = base / LATEST_FILE
        if not latest.is_file():
            raise DataError(f"no test set '{name}' in {root}; build one with `srl-rlvr testdata build`")
        version = latest.read_text().strip()
    folder = base / version
    if not (folder / ROWS_FILE).is_file():
        known = (
            sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
            if base.is_dir()
            else []
        )
        raise DataError(
            f"no version {version} of test set '{name}' in {root}; it has: {', '.join(known) or 'none'}"
        )
    return folder


def teacher_folder(root: str | Path, name: str) -> Path:
    """Where the teacher's problems for test set `name` are kept, so a rebuild asks for none it has."""
    return Path(root) / name / TEACHER_FOLDER


def load_testset(root: str | Path, reference: str) -> tuple[list[HeldOutProblem], dict[str, Any]]:
    folder = testset_folder(root, reference)
    rows = [
        HeldOutProblem(**json.loads(line))
        for line in (folder / ROWS_FILE).read_text().splitlines()
        if line.strip()
    ]
    return rows, json.loads((folder / MANIFEST_FILE).read_text())


def read_problem_file(path: str | Path) -> list[HeldOutProblem]:
    """A JSONL of `{text, answer, id?, metadata?}` rows; a row without an id is named by its text's hash."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"problem file not found: {path}")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: not JSON ({e.msg})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("text"), str) or "answer" not in raw:
            raise DataError(f"{path}:{lineno}: a problem row needs 'text' (a string) and 'answer'")
        row_id = str(raw.get("id") or hashlib.sha256(raw["text"].encode()).hexdigest()[:12])
        rows.append(HeldOutProblem(row_id, raw["text"], raw["answer"], dict(raw.get("metadata") or {})))
    return rows
