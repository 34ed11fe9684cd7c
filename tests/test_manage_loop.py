"""The management layer end to end on CPU, driven by `manage tick` with a clock passed in (no sleeping,
no wall clock deciding anything). Two production models are served; one gets drifted traffic it
fails (multiplying by 0, which the embedded model never saw: it answers 13*0=55) and is retrained,
canaried on the running server and promoted; the other is left alone,
and its deliberately broken distillation job fails, alerts a webhook on 127.0.0.1 and leaves its
production as it was. A process killed holding a job and a restart between passes lose no queued
job and run none twice."""

from __future__ import annotations

import itertools
import json
import random
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import openai
import pytest

from srl_rlvr.config import Config, build_config
from srl_rlvr.data.manage_status import status
from srl_rlvr.manage import jobs as queue
from srl_rlvr.manage.state import open_state
from srl_rlvr.manage.tick import state_url, tick
from srl_rlvr.modeling import EMBEDDED_DIR
from srl_rlvr.serve.auth import env_key_id
from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.run import serve_in_thread
from srl_rlvr.tasks.arithmetic import ArithmeticTask
from srl_rlvr.tracking.registry import promote, register, resolve
from srl_rlvr.tracking.runs import mlflow_client, tracking_uri

KEY = "sk-test-manage"
A, B = "manage-loop-a", "manage-loop-b"  # names of this file's own in the session's MLflow store
ONE_STEP = {"min_steps": 1, "max_steps": 1}  # what both models are asked, and answer right
# the drift: A's users start multiplying by 0; a rule a few optimiser steps learn, so the replay of
# untrained cases can show the fix
TIMES_ZERO = [f"Start with {n}. Multiply by 0." for n in random.Random(3).sample(range(1, 100), 99)]
LEASE_S = 600


def admin_roles(url: str) -> dict[str, dict[str, object]]:
    request = urllib.request.Request(f"{url}/admin/roles", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def manage_config(tmp: Path, server: str, hook: str, jobs_per_tick: int) -> Config:
    return build_config(
        {
            "output_dir": str(tmp / "runs"),
            "task": {"name": "arithmetic", "options": ONE_STEP},
            "data": {"test_size": 8},
            "pipeline": {"stages": ["generate", "sft", "evaluate", "register"]},
            "sft": {"learning_rate": 3e-4, "batch_size": 8, "epochs": 4, "max_length": 96},
            "eval": {"max_new_tokens": 32, "batch_size": 64},
            "feedback": {
                "store": f"sqlite:///{tmp / 'records.db'}",
                "server": server,
                "server_key_env": "MANAGE_KEY",
                "window_hours": 48,
                "min_requests": 10,
                "fresh_examples": 64,  # the old skill too, so the fix costs it little
                "max_regression": 0.25,
                "criteria": {"min_new_examples": 10},
                "canary_percent": 50,
                "canary_requests": 3,
            },
            "manage": {
                "only_listed": True,
                "models": {
                    A: {"overrides": ["feedback.role=a"]},
                    B: {
                        "overrides": [
                            "feedback.role=b",
                            "distill.num_prompts=2",
                            "distill.students.gold=/nonexistent/student",  # the deliberate failure
                        ],
                        "distill_tiers": ["gold"],
                    },
                },
                "webhook_url": hook,
                "jobs_per_tick": jobs_per_tick,
                "lease_s": LEASE_S,
                "prices_usd_per_hour": {"cpu": 3600.0},  # a dollar a second: a visible cost
            },
        }
    )


def test_manage_retrains_the_failing_model_leaves_the_other_and_survives_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhook: tuple[str, list[dict[str, str]]]
) -> None:
    hook, received = webhook
    monkeypatch.setenv("MANAGE_KEY", KEY)
    monkeypatch.setenv("SRL_RLVR_API_KEYS", KEY)
    uri = tracking_uri()
    versions = {}
    for name, reward in ((A, 0.9), (B, 1.0)):
        versions[name] = register(
            name, EMBEDDED_DIR, stage="pretrain", parent="embedded", metrics={"reward": reward}
        )
        promote(name, versions[name].version, "production", uri=uri)
    serve = build_serve_config(
        {
            "port": 0,
            "device": "cpu",
            "models": {
                "prod-a": {"path": f"registry:{A}@production"},
                "prod-b": {"path": f"registry:{B}@production"},
            },
            "roles": {
                "a": {"primary": "prod-a", "task": "arithmetic"},
                "b": {"primary": "prod-b", "task": "arithmetic"},
            },
            "auth": {"requests_per_second": 1000, "burst": 1000, "admin_keys": [env_key_id(KEY)]},
            # judged on errors and scores only: latency on a loaded CI machine says nothing
            "canary": {"min_requests": 4, "latency_margin": 1000},
            "limits": {"default_max_tokens": 32, "max_tokens": 32},
            "audit_log": str(tmp_path / "audit.jsonl"),
            "records": {"url": f"sqlite:///{tmp_path / 'records.db'}"},
        }
    )
    with serve_in_thread(serve, KEY) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)

        def ask(role: str, text: str) -> None:
            client.chat.completions.create(model=role, messages=[{"role": "user", "content": text}])

        traffic = [("a", text) for text in TIMES_ZERO[:40]]
        traffic += [("b", p.text) for p in ArithmeticTask(**ONE_STEP).sample(16, seed=3, split="train")]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda rt: ask(*rt), traffic))

        # the passes' clock: the next noon (UTC) after the traffic, inside the 48-hour window, and far
        # from midnight and from the next quarter hour's monitor run for the passes below
        now = datetime.now(timezone.utc)
        t0 = now.replace(hour=12, minute=0, second=0, microsecond=0) + timedelta(days=now.hour >= 12)

        # pass 1, on a host that only queues: A's retrain is due, B is fine; B's distillation is queued
        first = tick(manage_config(tmp_path, url, hook, jobs_per_tick=0), t0)
        assert "retraining is due" in first.monitored[A], first.monitored
        assert "retraining is not due" in first.monitored[B], first.monitored
        assert [k.split(":")[0] for k in first.queued] == ["retrain", "distill"] and first.ran == []

        # a worker takes A's retrain and is killed before it finishes
        engine = open_state(state_url(manage_config(tmp_path, url, hook, 0)))
        killed = queue.claim(engine, "cpu", "killed-worker", t0 + timedelta(seconds=30), LEASE_S)
        assert killed is not None and killed.kind == "retrain"

        # pass 2, a new process: the lease is live, so the device is busy and nothing runs twice
        second = tick(manage_config(tmp_path, url, hook, jobs_per_tick=2), t0 + timedelta(minutes=1))
        assert second.ran == [] and second.queued == []

        # pass 3, after the lease ran out: the retrain runs again (its second start) through its
        # canary on the server while A's traffic flows, then B's distillation fails
        done = threading.Event()
        more = itertools.cycle(TIMES_ZERO[40:])

        def flow() -> None:
            while not done.is_set():
                ask("a", next(more))

        sender = threading.Thread(target=flow)
        sender.start()
        try:
            third = tick(
                manage_config(tmp_path, url, hook, jobs_per_tick=2), t0 + timedelta(seconds=30 + LEASE_S + 1)
            )
        finally:
            done.set()
            sender.join()
        assert [r.split(":")[0] for r in third.ran] == ["retrain", "distill"], third.ran
        assert third.ran[0].endswith(": promoted"), queue.jobs(engine)[0].result

        # pass 4: nothing left to do, nothing done again
        fourth = tick(
            manage_config(tmp_path, url, hook, jobs_per_tick=2), t0 + timedelta(seconds=30 + LEASE_S + 2)
        )
        assert fourth.ran == [] and fourth.queued == [] and fourth.alerts == []

        roles = admin_roles(url)

    retrained, distilled = queue.jobs(engine)
    assert (retrained.model, retrained.state, retrained.attempts, retrained.outcome) == (
        A,
        "succeeded",
        2,
        "promoted",
    )
    assert (distilled.model, distilled.state, distilled.attempts) == (B, "failed", 1)
    assert "/nonexistent/student" in (distilled.outcome or "")

    candidate = retrained.result["candidate"]
    assert resolve(f"registry:{A}@production", uri).reference == candidate
    assert roles["a"]["primary"] == candidate  # the server promoted its canary
    assert resolve(f"registry:{B}@production", uri).version == versions[B].version  # left alone
    assert roles["b"]["primary"] == "prod-b" and roles["b"]["canary"] is None

    # the cost of the retrain is on its job, its registry version and the MLflow run that trained it
    assert retrained.cost_usd and retrained.cost_usd == pytest.approx(retrained.device_seconds)
    version = resolve(candidate, uri)
    assert float(version.tags["training_cost_usd"]) == pytest.approx(retrained.cost_usd, rel=1e-3)
    assert (
        mlflow_client(uri).get_run(version.run_id).data.tags["training_cost_usd"]
        == version.tags["training_cost_usd"]
    )

    texts = [r["text"] for r in received]
    assert any(f"{A}: {candidate} promoted to production" in t for t in texts), texts
    assert any(f"distill of {B} failed" in t for t in texts), texts
    assert len(texts) == len(set(texts))  # each alert once

    shown = status(engine, t0)["models"]
    assert shown[A]["last_retrain"]["deployed"] == "promoted" and shown[A]["queued"] == []
    assert shown[B]["monitor"]["due"] is False and shown[B]["failed"][0]["kind"] == "distill"
