"""The production walk-through's clients (examples/arithmetic_traffic.py) against the real server: each
question is answered, recorded, and counted with the task's own check, and the id it prints is one
/v1/feedback can rate."""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path

import pytest

from srl_rlvr.data.records import RecordStore
from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.run import serve_in_thread

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KEY = "sk-test-traffic"


def test_the_walk_throughs_clients_are_answered_recorded_and_rateable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("SRL_RLVR_API_KEYS", KEY)
    sys.modules.pop("arithmetic_traffic", None)
    import arithmetic_traffic

    database = tmp_path / "records.db"
    config = build_serve_config(
        {
            "port": 0,
            "device": "cpu",
            "cpu_threads": 1,
            "models": {"arith": {"path": "embedded"}},
            "roles": {"arithmetic": {"primary": "arith", "task": "arithmetic"}},
            "limits": {"max_tokens": 96, "default_max_tokens": 96},
            "audit_log": str(tmp_path / "audit.jsonl"),
            "records": {"url": f"sqlite:///{database}"},
        }
    )
    with serve_in_thread(config, KEY) as url:
        arithmetic_traffic.main(["--url", f"{url}/v1", "--n", "3", "--steps", "1-2"])
        found = re.search(r"(\d+) answered, (\d+) correct; last id (\S+)", capsys.readouterr().out)
        assert found is not None
        answered, correct, last = found.groups()
        request = urllib.request.Request(
            f"{url}/v1/feedback",
            data=json.dumps({"request_id": last, "rating": -1}).encode(),
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 200
    records = RecordStore(f"sqlite:///{database}").records()
    assert int(answered) == len(records) == 3
    assert int(correct) == sum(r.outcome == 1.0 for r in records)
    assert [(f.request_id, f.rating) for f in RecordStore(f"sqlite:///{database}").feedback()] == [(last, -1)]
