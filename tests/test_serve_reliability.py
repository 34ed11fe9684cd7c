"""Health, failover, canary and hot-swap: the real server on 127.0.0.1 with tiny models, failures made
through its chaos route (POST /admin/fail), and the real `openai` client, which must never see an error."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
import typer
from serve_helpers import make_adapter
from typer.testing import CliRunner

from srl_rlvr.cli.serve import add_commands
from srl_rlvr.serve.config import CanaryConfig, HealthConfig, build_serve_config
from srl_rlvr.serve.health import HealthMonitor, ModelStats
from srl_rlvr.serve.roles import canary_verdict
from srl_rlvr.serve.run import serve_in_thread

KEY = "sk-test-ops"
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("serve-ops")
    keys = tmp / "keys"
    keys.write_text(f"ops: {KEY}\n")
    config = build_serve_config(
        {
            "port": 0,
            "device": "cpu",
            "models": {"main": {"path": "tiny"}, "spare": {"path": "tiny"}},
            "roles": {
                "support": {"primary": "main", "backups": ["spare"]},
                "triage": {"primary": "main", "backups": ["spare"], "routing": "bandit"},
            },
            "auth": {
                "api_keys_env": None,
                "keys_file": str(keys),
                "requests_per_second": 1000,
                "burst": 1000,
                "admin_keys": ["ops"],
            },
            "health": {"probe_interval_s": 0.1, "consecutive_failures": 2, "min_requests": 3},
            "canary": {"min_requests": 4},
            "limits": {"max_tokens": 8},
            "audit_log": str(tmp / "audit.jsonl"),
            "records": {"url": f"sqlite:///{tmp / 'records.db'}"},
            "chaos": True,
        }
    )
    with serve_in_thread(config, KEY) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)


def admin(server: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        server + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def served_by(client: openai.OpenAI, model: str = "support") -> str:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=HELLO, max_tokens=2)
    return raw.headers["x-served-by"]


def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_failover_when_the_primary_fails_is_invisible_to_the_client(
    client: openai.OpenAI, server: str
) -> None:
    assert served_by(client) == "main"
    admin(server, "/admin/fail", {"model": "main", "fail": True})
    try:
        assert [served_by(client) for _ in range(6)] == ["spare"] * 6  # no error reaches the client
        assert admin(server, "/admin/roles")["support"]["health"]["main"] == "failed"
    finally:
        admin(server, "/admin/fail", {"model": "main", "fail": False})
    # the next successful probe brings the primary back
    wait_for(lambda: admin(server, "/admin/roles")["support"]["health"]["main"] == "healthy")
    assert served_by(client) == "main"


def test_a_canary_that_errs_is_rolled_back_without_failed_requests(
    client: openai.OpenAI, server: str, tmp_path: Path
) -> None:
    candidate = make_adapter(tmp_path / "candidate", seed=3)
    state = admin(server, "/admin/shift", {"role": "support", "to": candidate, "percent": 50})
    assert state["canary"] == {"model": candidate, "percent": 50}
    admin(server, "/admin/fail", {"model": candidate, "fail": True})
    try:
        for _ in range(40):
            assert served_by(client) in ("main", "spare")
            if admin(server, "/admin/roles")["support"]["canary"] is None:
                break
        rolled_back = admin(server, "/admin/roles")["support"]
        assert rolled_back["canary"] is None and rolled_back["primary"] == "main"
        assert rolled_back["last_rollback"]["model"] == candidate
        assert rolled_back["last_rollback"]["reason"] == "failed its health checks"
    finally:
        admin(server, "/admin/fail", {"model": candidate, "fail": False})


def test_shifting_to_100_percent_promotes_the_canary(client: openai.OpenAI, server: str) -> None:
    try:
        admin(server, "/admin/shift", {"role": "support", "to": "spare", "percent": 10})
        promoted = admin(server, "/admin/shift", {"role": "support", "to": "spare", "percent": 100})
        assert (promoted["primary"], promoted["backups"], promoted["canary"]) == ("spare", ["main"], None)
        assert served_by(client) == "spare"
    finally:
        admin(server, "/admin/shift", {"role": "support", "to": "main", "percent": 100})


def test_serve_shift_command_steps_the_canary_through_a_running_server(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SRL_RLVR_API_KEYS", f"{KEY},sk-another")  # what the server reads; first key used
    app = typer.Typer()
    add_commands(app)
    shift = ["serve", "shift", "support", "--to", "spare", "--url", server, "--hold", "0.1"]
    result = CliRunner().invoke(app, [*shift, "--percent", "10,25"])
    assert result.exit_code == 0, result.output
    assert "spare 25%" in result.output
    withdrawn = CliRunner().invoke(app, [*shift, "--percent", "0"])
    assert withdrawn.exit_code == 0 and admin(server, "/admin/roles")["support"]["canary"] is None


def test_hot_swapping_an_adapter_under_load_loses_no_request(
    client: openai.OpenAI, server: str, tmp_path: Path
) -> None:
    first, second = make_adapter(tmp_path / "v1", seed=4), make_adapter(tmp_path / "v2", seed=5)
    client.post(
        "/load_lora_adapter",
        body={"lora_name": "live", "lora_path": first, "base_model_name": "main"},
        cast_to=str,
    )

    def ask(i: int) -> str:
        reply = client.completions.create(
            model="live" if i % 2 else "support", prompt=f"request {i}", max_tokens=4
        )
        return reply.choices[0].finish_reason

    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(ask, range(60))
        for folder in (second, first, second):  # swap the weights back and forth while requests fly
            client.post("/load_lora_adapter", body={"lora_name": "live", "lora_path": folder}, cast_to=str)
        assert all(finish in ("stop", "length") for finish in answers)
    client.post("/unload_lora_adapter", body={"lora_name": "live"}, cast_to=str)


def test_a_bandit_role_routes_every_request_and_learns_from_it(client: openai.OpenAI, server: str) -> None:
    before = sum(admin(server, "/admin/roles")["triage"]["bandit_pulls"].values())
    assert all(served_by(client, "triage") in ("main", "spare") for _ in range(5))
    assert sum(admin(server, "/admin/roles")["triage"]["bandit_pulls"].values()) == before + 5


def test_health_states_follow_error_rate_streaks_and_probes() -> None:
    now = [0.0]
    health = HealthMonitor(
        HealthConfig(window_s=10, min_requests=4, consecutive_failures=3, degraded_p95_ms=500),
        clock=lambda: now[0],
    )
    for ok in (True, True, True, False):
        health.record("m", ok, 20.0)
    assert health.state("m") == "degraded"  # 25% errors
    now[0] += 11  # the window moves past them
    assert health.state("m") == "healthy"
    for _ in range(3):
        health.record("m", False, 20.0)
    assert health.state("m") == "failed"  # three in a row
    health.probed("m", ok=True)
    assert health.state("m") == "healthy"  # a good probe gives a failed model a fresh start
    health.probed("m", ok=False)
    assert health.state("m") == "failed"
    assert health.order(["m", "n"]) == ["n", "m"]


def test_canary_verdict_waits_for_evidence_then_compares_with_the_primary() -> None:
    config = CanaryConfig(min_requests=10, error_rate_margin=0.05, latency_margin=0.5, latency_slack_ms=0)
    primary = ModelStats(requests=100, errors=1, p95_ms=100.0)
    assert canary_verdict(ModelStats(5, 5, None), primary, config) is None  # too few to judge
    assert canary_verdict(ModelStats(20, 1, 120.0), primary, config) is None
    assert canary_verdict(ModelStats(20, 4, 120.0), primary, config).startswith("error rate 20.0%")
    assert canary_verdict(ModelStats(20, 0, 200.0), primary, config).startswith("p95 latency 200 ms")
