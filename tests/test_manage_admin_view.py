"""GET /admin/manage on the real server: the management layer's state read from its database, per
model its last monitor verdict, queued job and next monitor run; admin keys only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from srl_rlvr.manage import jobs as queue
from srl_rlvr.manage.state import open_state, save_verdict, set_last_run
from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.run import serve_in_thread

ADMIN, OTHER = "sk-test-admin", "sk-test-other"
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def get(url: str, key: str | None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_admin_manage_shows_each_models_verdict_jobs_and_next_run_to_admin_keys_only(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'manage.db'}"
    engine = open_state(db)
    queue.enqueue(engine, "retrain", "support-bot", "retrain:support-bot:3:2026-12-07", "cpu", T0)
    save_verdict(
        engine,
        "support-bot",
        {
            "time": T0,
            "production": "registry:support-bot@3",
            "due": 1,
            "drift": 1,
            "signals": 2,
            "outcome_rate": 0.41,
            "verdict": "retraining is due: 2 signals",
        },
    )
    set_last_run(engine, "monitor", T0, T0 + timedelta(minutes=15))
    keys = tmp_path / "keys.txt"
    keys.write_text(f"admin: {ADMIN}\nother: {OTHER}\n")
    config = build_serve_config(
        {
            "port": 0,
            "device": "cpu",
            "models": {"tiny": {"path": "tiny"}},
            "auth": {"api_keys_env": None, "keys_file": str(keys), "admin_keys": ["admin"]},
            "audit_log": str(tmp_path / "audit.jsonl"),
            "records": None,
            "manage_db": db,
        }
    )
    with serve_in_thread(config, ADMIN) as url:
        code, view = get(f"{url}/admin/manage", ADMIN)
        assert code == 200, view
        bot = view["models"]["support-bot"]
        assert bot["monitor"]["verdict"] == "retraining is due: 2 signals" and bot["monitor"]["drift"] is True
        assert [(j["kind"], j["state"]) for j in bot["queued"]] == [("retrain", "queued")]
        assert bot["running"] == [] and bot["last_retrain"] is None
        assert bot["next_monitor"] == (T0 + timedelta(minutes=15)).isoformat()
        assert view["schedules"]["monitor"]["last_run"] == T0.isoformat()

        assert get(f"{url}/admin/manage", OTHER)[0] == 403
        assert get(f"{url}/admin/manage", None)[0] == 401
