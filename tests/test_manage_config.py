"""Bad management config is one clear line each (a bad cron expression, a model the registry lacks),
and a webhook that cannot be reached costs one logged line per alert, never the pass: budget alerts
still count, once per threshold per month."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from srl_rlvr.cli import main
from srl_rlvr.config import Config, build_config
from srl_rlvr.errors import ConfigError
from srl_rlvr.manage import jobs as queue
from srl_rlvr.manage.alerts import sent
from srl_rlvr.manage.state import open_state
from srl_rlvr.manage.tick import state_url, tick
from srl_rlvr.tracking.runs import mlflow_client, tracking_uri

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)
NAME = "manage-config"


def manage_config(tmp: Path, **manage: object) -> Config:
    return build_config(
        {
            "output_dir": str(tmp / "runs"),
            "feedback": {"store": f"sqlite:///{tmp / 'records.db'}"},
            "manage": {"only_listed": True, **manage},
        }
    )


@pytest.fixture(scope="module")
def registry() -> str:
    """The session's MLflow store (conftest: its migrations run once), with a model of this file's own
    that has no production version; other tests' models are there too."""
    uri = tracking_uri()
    client = mlflow_client(uri)
    if not client.search_registered_models(f"name='{NAME}'"):
        client.create_registered_model(NAME)
    return uri


def test_a_bad_cron_expression_is_one_line_naming_the_key() -> None:
    with pytest.raises(ConfigError) as raised:
        build_config({"manage": {"distill_cron": "0 3 * *"}})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("manage.distill_cron: bad cron expression '0 3 * *'")


def test_a_model_the_registry_lacks_is_one_line_and_exit_2(
    registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "manage.yaml"
    config = manage_config(tmp_path, models={"arithmetc": {"monthly_budget_usd": 10}})
    file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    with pytest.raises(SystemExit) as code:
        main(["manage", "tick", str(file)])
    assert code.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "manage.models.arithmetc: no model 'arithmetc' in the registry" in lines[0]
    assert NAME in lines[0]  # the registered names, to pick from


def test_an_unreachable_webhook_is_one_logged_line_and_the_pass_goes_on(
    registry: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    config = manage_config(
        tmp_path,
        models={NAME: {"monthly_budget_usd": 1.0}},
        budget_thresholds=[0.5, 1.0],
        webhook_url="http://127.0.0.1:9/hooks/ops",  # the discard port: nothing listens
        webhook_timeout_s=2,
    )
    engine = open_state(state_url(config))

    def spent(usd: float, key: str, when: datetime) -> None:
        queue.enqueue(engine, "retrain", NAME, key, "cpu", when)
        job = queue.claim(engine, "cpu", "test", when, lease_s=60)
        assert job is not None and queue.finish(
            engine, job, succeeded=True, outcome="ok", now=when, cost_usd=usd
        )

    spent(0.6, "retrain:1", T0)
    with caplog.at_level(logging.WARNING, logger="srl_rlvr.manage"):
        first = tick(config, T0)
    assert first.alerts == [f"budget: {NAME} spent $0.60 on training in 2026-12: 50% of its $1.00 budget"]
    unreachable = [r.getMessage() for r in caplog.records if "webhook" in r.getMessage()]
    assert len(unreachable) == 1 and "http://127.0.0.1:9/hooks/ops unreachable" in unreachable[0]
    assert [a["delivered"] for a in sent(engine)] == [0]  # kept, marked undelivered

    assert tick(config, T0 + timedelta(minutes=1)).alerts == []  # once a month per threshold
    spent(0.5, "retrain:2", T0 + timedelta(minutes=2))
    assert [a.split(":")[0] for a in tick(config, T0 + timedelta(minutes=3)).alerts] == ["budget"]
    assert tick(config, T0 + timedelta(days=30)).alerts == []  # January: nothing spent yet
    assert [a["key"] for a in sent(engine)] == [f"budget:{NAME}:2026-12:0.5", f"budget:{NAME}:2026-12:1"]

    # `manage status` shows the month's spend from the same state
    file = tmp_path / "manage.yaml"
    file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    with pytest.raises(SystemExit) as code:
        main(["manage", "status", str(file), "--json", "--now", "2026-12-31T23:00:00"])
    assert code.value.code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["models"][NAME]["spend_usd_this_month"] == pytest.approx(1.1)
    assert shown["schedules"]["monitor"]["next_run"] is not None
