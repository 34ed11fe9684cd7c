"""`manage tick` runs discovery every model_selection.update_frequency_days on its injected clock:
offline from a Hub snapshot, findings where `discover` writes them, a webhook alert once per new
candidate, and the proposed cost-benefit runs in `manage status`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from srl_rlvr.cli import main
from srl_rlvr.config import build_config

SNAPSHOT = Path(__file__).parent / "data" / "hub_models.json"  # a /api/models answer, in the Hub's shape
T0 = datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)  # the snapshot's day: its recency holds
NEW = ["acme-labs/reasoner-7b", "tiny-lab/mini-1.1b"]  # pass 3 of 5 and the catalog lacks them


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as code:
        main(args)
    out = capsys.readouterr().out
    assert code.value.code == 0, out
    return out


def test_manage_tick_runs_discovery_when_due_once_and_again_after_update_frequency_days(
    tmp_path: Path, webhook: tuple[str, list[dict[str, str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    hook, received = webhook
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "candidates:\n  - id: Qwen/Qwen3-4B-Instruct\n    context_window: 32768\n    hardware: [L4]\n"
        "    latency_ms: {p50: 40, p95: 90}\n    cost_per_1m_tokens: 0.2\n"
    )
    config = build_config(
        {
            "output_dir": str(tmp_path / "runs"),
            "feedback": {"store": f"sqlite:///{tmp_path / 'records.db'}"},
            "model_selection": {"update_frequency_days": 7, "discovery": {"catalog": str(catalog)}},
            "manage": {
                "only_listed": True,  # no production model to monitor: discovery alone
                "discovery": True,
                "discovery_snapshot": str(SNAPSHOT),
                "webhook_url": hook,
            },
        }
    )
    file = tmp_path / "manage.yaml"
    file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    tick = ["manage", "tick", str(file), "--now"]
    findings = tmp_path / "runs" / "discover" / "discovered.yaml"

    first = run([*tick, T0.isoformat()], capsys)
    assert f"discovery: 2 new: {', '.join(NEW)}" in first
    assert yaml.safe_load(findings.read_text())["new"] == NEW
    assert len(received) == 2 and all(
        "not in the catalog; proposed: srl-rlvr costbenefit" in r["text"] for r in received
    )
    assert NEW[0] in received[0]["text"]

    findings.unlink()
    later_that_day = run([*tick, (T0 + timedelta(hours=20)).isoformat()], capsys)
    assert "discovery" not in later_that_day and not findings.exists()

    a_week_on = run([*tick, (T0 + timedelta(days=7)).isoformat()], capsys)
    assert "discovery: 2 new" in a_week_on and findings.exists()
    assert len(received) == 2  # each candidate is announced once, not every week

    shown = json.loads(
        run(["manage", "status", str(file), "--json", "--now", (T0 + timedelta(days=7)).isoformat()], capsys)
    )
    assert shown["discovery"]["new"] == NEW
    assert shown["discovery"]["time"] == (T0 + timedelta(days=7)).isoformat()
    assert [p.split(" --new ")[1].split()[0] for p in shown["discovery"]["proposed_costbenefit"]] == NEW
    assert shown["schedules"]["discover"]["next_run"] == (T0 + timedelta(days=14)).isoformat()
