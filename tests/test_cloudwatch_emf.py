"""The metrics the CloudWatch alarms watch reach CloudWatch: the server writes each answered request's
latency, and `srl-rlvr monitor` the latest window's accuracy and drift, as embedded-metric-format
lines whose namespace, metric and dimensions are the ones `alarm_specs` gives the tier's alarms, so
renaming either side breaks these tests. The last test puts the lines' values into moto's CloudWatch
as the agent would, and reads them back under the alarm's own metric."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import openai
import pytest
from aws_server import use_moto
from typer.testing import CliRunner

from srl_rlvr.cli import app
from srl_rlvr.cloud.cloudwatch import alarm_specs
from srl_rlvr.config import Config, build_config
from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.run import serve_in_thread

KEY = "sk-test-emf"
TIER = "silver"
PROBLEMS = ["Start with 3. Add 4.", "Start with 10. Subtract 2. Add 5.", "Start with 6. Multiply by 3."]


@dataclass
class Served:
    emf: Path  # the server's EMF lines
    records: str  # its record store's URL
    tmp: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The tiny model behind an arithmetic role, asked each problem once; the server has stopped (its
    records flushed) when the tests read what it wrote."""
    tmp = tmp_path_factory.mktemp("emf")
    records = f"sqlite:///{tmp / 'records.db'}"
    config = build_serve_config(
        {
            "port": 0,
            "device": "cpu",
            "cpu_threads": 1,
            "models": {"tiny": {"path": "tiny"}},
            "roles": {"arith": {"primary": "tiny", "task": "arithmetic"}},
            "auth": {"api_keys_env": None, "keys_file": str(_keys(tmp))},
            "limits": {"default_max_tokens": 4},
            "audit_log": str(tmp / "audit.jsonl"),
            "records": {"url": records},
            "cloudwatch": {"to": str(tmp / "serve-emf.jsonl"), "tier": TIER},
        }
    )
    with serve_in_thread(config, KEY) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        for problem in PROBLEMS:
            client.chat.completions.create(model="arith", messages=[{"role": "user", "content": problem}])
    yield Served(tmp / "serve-emf.jsonl", records, tmp)


def _keys(tmp: Path) -> Path:
    path = tmp / "keys.txt"
    path.write_text(f"ops: {KEY}\n")
    return path


def _alarm(config: Config, metric: str) -> dict[str, Any]:
    """The tier's alarm on `metric`, as deploy_monitoring and Terraform create it."""
    (spec,) = [
        s
        for s in alarm_specs(config)
        if s["MetricName"] == metric and {"Name": "tier", "Value": TIER} in s["Dimensions"]
    ]
    return spec


def _watched_value(line: dict[str, Any], alarm: dict[str, Any]) -> float:
    """The value an EMF line gives the alarm's metric: the namespace, the metric name and a dimension
    set exactly the alarm's dimensions (CloudWatch matches all of them, no more), with their values."""
    names = sorted(d["Name"] for d in alarm["Dimensions"])
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == alarm["Namespace"]
    assert alarm["MetricName"] in [m["Name"] for m in directive["Metrics"]]
    assert names in directive["Dimensions"], f"no dimension set {names} in {directive['Dimensions']}"
    assert {d["Name"]: line[d["Name"]] for d in alarm["Dimensions"]} == {
        d["Name"]: d["Value"] for d in alarm["Dimensions"]
    }
    return line[alarm["MetricName"]]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_answered_request_writes_its_latency_under_the_tiers_latency_alarm(served: Served) -> None:
    lines = _lines(served.emf)
    alarm = _alarm(build_config(), "latency_ms")

    assert len(lines) == len(PROBLEMS)
    for line in lines:
        assert _watched_value(line, alarm) > 0
        assert ["role", "tier"] in line["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
        assert line["role"] == "arith" and line["served_by"] == "tiny"
        assert line["status"] in ("ok", "refused")  # answered; the random model's format may fail the check


def _monitor_config(served: Served, emf: Path) -> Path:
    config = build_config(
        {
            "output_dir": str(served.tmp / "runs"),
            "data": {"train_size": 50},
            "registry": {"tracking": False},
            "feedback": {
                "store": served.records,
                "role": "arith",
                "min_requests": len(PROBLEMS),
                "expected_outcome_rate": 0.9,
                "report_dir": str(served.tmp / "monitor"),
                "cloudwatch": {"to": str(emf), "tier": TIER},
            },
        }
    )
    path = served.tmp / "monitor.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json", by_alias=True)))
    return path


def test_monitor_writes_accuracy_and_drift_under_the_tiers_alarms(served: Served) -> None:
    emf = served.tmp / "monitor-emf.jsonl"
    result = CliRunner().invoke(app, ["monitor", str(_monitor_config(served, emf))])
    assert result.exit_code in (0, 3), result.output
    found = json.loads((served.tmp / "monitor" / "monitor.json").read_text())
    latest = next(w for w in found["windows"] if w["model"] == "all")
    (line,) = _lines(emf)
    config = build_config()

    assert _watched_value(line, _alarm(config, "accuracy")) == latest["outcome_rate"]
    assert _watched_value(line, _alarm(config, "drift")) == max(
        found["drift"]["length_psi"], found["drift"]["token_psi"]
    )


def _metric_data(line: dict[str, Any]) -> list[dict[str, Any]]:
    """What CloudWatch makes of an EMF line: each metric under each of its dimension sets."""
    directive = line["_aws"]["CloudWatchMetrics"][0]
    return [
        {
            "MetricName": metric["Name"],
            "Value": float(line[metric["Name"]]),
            "Dimensions": [{"Name": name, "Value": line[name]} for name in names],
            "Timestamp": datetime.fromtimestamp(line["_aws"]["Timestamp"] / 1000, timezone.utc),
        }
        for metric in directive["Metrics"]
        for names in directive["Dimensions"]
    ]


def test_the_lines_values_give_the_latency_alarms_metric_data_in_cloudwatch(
    served: Served, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3 = pytest.importorskip("boto3", reason="the aws extra (boto3) is not installed")
    use_moto(monkeypatch, moto_endpoint)
    cloudwatch = boto3.client("cloudwatch")
    alarm = _alarm(build_config(), "latency_ms")
    for line in _lines(served.emf):
        namespace = line["_aws"]["CloudWatchMetrics"][0]["Namespace"]
        # CloudWatch keeps each dimension set as its own metric, and an alarm reads the one whose
        # dimensions equal its own; moto's statistics match any superset, so only that one goes in.
        watched = [d for d in _metric_data(line) if d["Dimensions"] == alarm["Dimensions"]]
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=watched)
    cloudwatch.put_metric_alarm(**alarm)
    now = datetime.now(timezone.utc)
    stats = cloudwatch.get_metric_statistics(
        Namespace=alarm["Namespace"],
        MetricName=alarm["MetricName"],
        Dimensions=alarm["Dimensions"],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(minutes=5),
        Period=alarm["Period"],
        Statistics=["SampleCount", "Maximum"],
    )
    points = stats["Datapoints"]
    assert sum(p["SampleCount"] for p in points) == len(PROBLEMS)
    assert max(p["Maximum"] for p in points) == max(line["latency_ms"] for line in _lines(served.emf))
    (described,) = cloudwatch.describe_alarms(AlarmNames=[alarm["AlarmName"]])["MetricAlarms"]
    assert (described["Namespace"], described["MetricName"]) == (alarm["Namespace"], alarm["MetricName"])


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"tier": "platinum"}, "serve.cloudwatch.tier: Input should be 'gold', 'silver' or 'bronze'"),
        ({"tier": "gold", "to": "/no/such/folder/emf.jsonl"}, "the folder of /no/such/folder/emf.jsonl"),
    ],
)
def test_a_wrong_cloudwatch_setting_is_one_line_naming_it(setting: dict[str, str], message: str) -> None:
    from srl_rlvr.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as error:
        build_serve_config({"models": {"tiny": {"path": "tiny"}}, "cloudwatch": setting})
    assert "\n" not in str(error.value)
