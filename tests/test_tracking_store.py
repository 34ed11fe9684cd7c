"""The MLflow store as the user meets it: a store another process holds locked is one line naming it,
not an internal error."""

import sqlite3
from pathlib import Path

import pytest

from srl_rlvr.config import build_config
from srl_rlvr.tracking.runs import TrackingError, tracked_run


def test_a_locked_mlflow_store_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = tmp_path / "mlflow.db"
    # SQLite waits this long for the lock, not its default 5 s
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}?timeout=0.1")
    other = sqlite3.connect(database)
    other.execute("BEGIN EXCLUSIVE")  # another run (or a backup) is writing the store
    try:
        locked = r"MLflow store sqlite:///.*mlflow\.db.*database is locked"
        with (
            pytest.raises(TrackingError, match=locked) as e,
            tracked_run(build_config(), "srl", tmp_path / "run"),
        ):
            pass
    finally:
        other.rollback()
        other.close()
    assert "\n" not in str(e.value)
