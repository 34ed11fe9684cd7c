"""What `retrain` needs from outside is checked before it spends anything, one key variable serves the
server and the loop, and a canary without traffic is withdrawn with that reason. (A candidate that fails
validation getting no alias is pinned in test_feedback_loop.py, which trains one anyway.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from srl_rlvr.config import Config, build_config
from srl_rlvr.data.records import Record, RecordStore
from srl_rlvr.errors import ConfigError, UserError
from srl_rlvr.feedback.retrain import _canary, check_prerequisites, retrain
from srl_rlvr.modeling import EMBEDDED_DIR
from srl_rlvr.serve.auth import env_key_id
from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.run import serve_in_thread
from srl_rlvr.tasks.arithmetic import ArithmeticTask
from srl_rlvr.tracking.registry import promote, register, resolve

KEY = "sk-test-loop"
NAME = "retrain-prerequisites"
TASK = ArithmeticTask(min_steps=1, max_steps=2)


def loop_config(tmp: Path, **feedback: object) -> Config:
    return build_config(
        {
            "output_dir": str(tmp / "runs"),
            "task": {"name": "arithmetic", "options": {"min_steps": 1, "max_steps": 2}},
            "pipeline": {"stages": ["generate", "sft", "evaluate", "register"]},
            # the session's MLflow store (conftest), under a name of this file's own
            "registry": {"model_name": NAME, "tracking": False},
            "feedback": {"store": f"sqlite:///{tmp / 'records.db'}", "fresh_examples": 4, **feedback},
        }
    )


def production(tmp_path: Path) -> int:
    """A new production version and a store holding some of its failures; returns the version."""
    version = register(NAME, EMBEDDED_DIR, stage="pretrain", parent="embedded", metrics={"reward": 0.5})
    promote(NAME, version.version, "production")
    url = f"sqlite:///{tmp_path / 'records.db'}"
    store = RecordStore(url)
    for i, problem in enumerate(TASK.sample(4, seed=1, split="train")):
        store.add(Record(f"r{i}", "k", "arithmetic", "prod", problem.text, "Answer: -1", 5.0, 0.0, "answer"))
    store.flush()
    return version.version


def test_a_missing_key_or_unreachable_server_is_refused_before_any_data_or_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = production(tmp_path)
    monkeypatch.delenv("SRL_RLVR_API_KEYS", raising=False)
    config = loop_config(tmp_path, server="http://127.0.0.1:9", role="arithmetic")
    assert config.feedback.server_key_env == "SRL_RLVR_API_KEYS"  # the variable the server reads
    with pytest.raises(ConfigError, match=r"set \$SRL_RLVR_API_KEYS to an admin key"):
        retrain(config)
    monkeypatch.setenv("SRL_RLVR_API_KEYS", f"{KEY},sk-other")
    with pytest.raises(UserError, match=re.escape("cannot reach the server http://127.0.0.1:9")):
        retrain(config)
    assert not (tmp_path / "runs").exists()  # nothing generated, trained or registered
    assert resolve(f"registry:{NAME}@production").version == version


def test_a_role_the_server_lacks_is_refused_and_a_canary_without_traffic_is_withdrawn(tmp_path: Path) -> None:
    production(tmp_path)
    serve = build_serve_config(
        {
            "port": 0,
            "device": "cpu",
            "models": {"prod": {"path": str(EMBEDDED_DIR)}},
            "roles": {"arithmetic": {"primary": "prod", "task": "arithmetic"}},
            "audit_log": str(tmp_path / "audit.jsonl"),
            "records": {"url": f"sqlite:///{tmp_path / 'records.db'}"},
            "auth": {"admin_keys": [env_key_id(KEY)]},  # retrain reads roles and shifts traffic: admin
        }
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SRL_RLVR_API_KEYS", KEY)
        with serve_in_thread(serve, KEY) as url:
            with pytest.raises(ConfigError, match=re.escape(f"the server {url} has no role")):
                check_prerequisites(loop_config(tmp_path, server=url, role="arithmetc"))
            # the whole-canary limit stays far away: the idle limit ends it, whatever the machine's speed
            config = loop_config(
                tmp_path, server=url, role="arithmetic", canary_idle_s=0.001, canary_timeout_s=30
            )
            outcome = _canary(config, str(EMBEDDED_DIR))
    assert outcome.startswith("withdrawn: no traffic to role arithmetic"), outcome
