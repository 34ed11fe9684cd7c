"""What deploy/ ships for running the management layer: the Prometheus alert rules and the Grafana
dashboard name only metrics the server and `manage` export, and the systemd unit and compose example
start the commands that exist. (promtool is not installed here: its parse of the rules is replaced by
YAML parsing and the metric check below.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from srl_rlvr.manage.metrics import METRICS
from srl_rlvr.serve.metrics import ServeMetrics

DEPLOY = Path(__file__).parent.parent / "deploy"
NAME = re.compile(r"\bsrl_rlvr_[a-z0-9_]+")


def exported() -> set[str]:
    """Every sample name a scrape can show: the server's (counters end in _total, histograms in
    _bucket, _sum, _count) and the management layer's."""
    names = set(METRICS)
    for family in ServeMetrics().registry.collect():
        kind = family.type
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(kind, [""])
        names |= {family.name + s for s in suffixes}
    return names


def test_alert_rules_parse_and_use_only_exported_metrics() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    seen = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["alert"] and rule["annotations"]["summary"]
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["expr"]
            used = set(NAME.findall(rule["expr"]))
            assert used, rule["expr"]
            assert used <= exported(), f"{rule['alert']}: {sorted(used - exported())} not exported"
            seen.append(rule["alert"])
    # the events the management layer promises to alert on, each with a rule
    assert {"ManageJobFailed", "ManageRetrainRolledBack", "ManageDriftFound", "ManageBudgetExceeded"} <= set(
        seen
    )


def test_the_dashboard_shows_traffic_latency_outcome_drift_retrains_and_spend_from_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "srl-rlvr.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in NAME.findall(e)}
    assert used <= exported(), sorted(used - exported())
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("traffic", "latency", "outcome", "drift", "retrain", "spend"):
        assert topic in titles, topic
    assert {"srl_rlvr_manage_spend_usd", "srl_rlvr_request_latency_seconds_bucket"} <= used


def test_the_service_files_start_commands_that_exist() -> None:
    from typer.testing import CliRunner

    from srl_rlvr.cli import app

    unit = (DEPLOY / "systemd" / "srl-rlvr-manage.service").read_text()
    start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert " manage serve " in start
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {"server", "manage", "mlflow"} <= set(compose["services"])
    assert compose["services"]["manage"]["command"].startswith("srl-rlvr manage serve ")
    for command in (["manage", "serve", "--help"], ["serve", "--help"]):
        assert CliRunner().invoke(app, command).exit_code == 0
