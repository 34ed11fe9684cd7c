"""One unattended cycle of `srl-rlvr manage serve` on CPU, timed: monitor -> queued -> retrain ->
canary and promotion -> alert.

Two models are registered from the embedded checkpoint, put in production and served for roles a
and b. Role a's users start multiplying by 0 (a rule the model never saw: it fails them); role b's
traffic is what the model handles. Then `manage serve` runs as its own process with a shortened
schedule (monitor every minute, a pass every `--tick` seconds) and nobody touches anything: this
script only keeps a's traffic flowing (the canary needs requests) and watches the state database
and a webhook receiver on 127.0.0.1, noting when each step of the cycle is first seen.

    nice -n 5 python benchmarks/manage_cycle.py --out runs/bench-manage-cycle

Writes benchmarks/results/manage-cycle-<date>.json (override with --results).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import yaml

from srl_rlvr.data.manage_status import read_status
from srl_rlvr.modeling import EMBEDDED_DIR
from srl_rlvr.serve.auth import env_key_id
from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.run import serve_in_thread
from srl_rlvr.tasks.arithmetic import ArithmeticTask
from srl_rlvr.tracking.registry import promote, register, resolve

KEY = "sk-bench-manage"
A, B = "cycle-a", "cycle-b"
ONE_STEP = {"min_steps": 1, "max_steps": 1}
TIMES_ZERO = [f"Start with {n}. Multiply by 0." for n in random.Random(3).sample(range(1, 100), 99)]


def webhook() -> tuple[str, list[tuple[float, str]]]:
    """A Slack-style receiver: its URL and (time received, text) of each alert."""
    received: list[tuple[float, str]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((time.monotonic(), body["text"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/hooks/ops", received


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage_config(out: Path, server: str, hook: str, tick_s: float, metrics_port: int) -> dict[str, Any]:
    """The e2e test's setup, on the wall clock: monitor every minute, a pass every `tick_s`."""
    return {
        "output_dir": str(out / "runs"),
        "task": {"name": "arithmetic", "options": ONE_STEP},
        "data": {"test_size": 8},
        "pipeline": {"stages": ["generate", "sft", "evaluate", "register"]},
        "sft": {"learning_rate": 3e-4, "batch_size": 8, "epochs": 4, "max_length": 96},
        "eval": {"max_new_tokens": 32, "batch_size": 64},
        "feedback": {
            "store": f"sqlite:///{out / 'records.db'}",
            "server": server,
            "server_key_env": "MANAGE_KEY",
            "window_hours": 48,
            "min_requests": 10,
            "fresh_examples": 64,
            "max_regression": 0.25,
            "criteria": {"min_new_examples": 10},
            "canary_percent": 50,
            "canary_requests": 3,
        },
        "manage": {
            "db": f"sqlite:///{out / 'manage.db'}",
            "only_listed": True,
            "models": {A: {"overrides": ["feedback.role=a"]}, B: {"overrides": ["feedback.role=b"]}},
            "monitor_cron": "* * * * *",
            "tick_seconds": tick_s,
            "webhook_url": hook,
            "metrics_port": metrics_port,
        },
    }


def from_database(url: str, start: datetime) -> dict[str, Any]:
    """What the management layer recorded, in seconds after the service started. A pass stamps its
    rows with its own start (its injected clock), so a job's duration is its measured device-seconds,
    not finished - started."""
    from sqlalchemy import create_engine, select

    from srl_rlvr.data.manage_tables import ALERTS, JOBS, VERDICTS, utc

    def after(value: datetime | None) -> float | None:
        return None if value is None else round((utc(value) - start).total_seconds(), 1)

    engine = create_engine(url)
    with engine.connect() as connection:
        jobs = connection.execute(select(JOBS).where(JOBS.c.model == A)).mappings().all()
        verdict = connection.execute(select(VERDICTS).where(VERDICTS.c.model == A)).mappings().first()
        alerts = connection.execute(select(ALERTS)).mappings().all()
    engine.dispose()
    return {
        "a_last_verdict": None if verdict is None else after(verdict["time"]),
        "a_jobs": [
            {
                "key": j["key"],
                "state": j["state"],
                "outcome": j["outcome"],
                "pass_that_queued_it": after(j["created"]),
                "pass_that_ran_it": after(j["started"]),
                "device_seconds": j["device_seconds"],
                "cost_usd": j["cost_usd"],
            }
            for j in jobs
        ],
        "alerts": [{"kind": r["kind"], "model": r["model"], "at": after(r["time"])} for r in alerts],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-manage-cycle")
    parser.add_argument("--tick", type=float, default=20.0, help="manage.tick_seconds")
    parser.add_argument("--limit", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--results", default=f"benchmarks/results/manage-cycle-{date.today()}.json")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    os.environ.update(MLFLOW_TRACKING_URI=uri, SRL_RLVR_API_KEYS=KEY, MANAGE_KEY=KEY)
    for name in (A, B):
        version = register(name, EMBEDDED_DIR, stage="pretrain", parent="embedded", metrics={"reward": 1.0})
        promote(name, version.version, "production", uri=uri)
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
            "canary": {"min_requests": 4, "latency_margin": 1000},
            "limits": {"default_max_tokens": 32, "max_tokens": 32},
            "audit_log": str(out / "audit.jsonl"),
            "records": {"url": f"sqlite:///{out / 'records.db'}"},
            "manage_db": f"sqlite:///{out / 'manage.db'}",
        }
    )
    hook, received = webhook()
    metrics_port = free_port()
    with serve_in_thread(serve, KEY) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)

        def ask(role: str, text: str) -> None:
            client.chat.completions.create(model=role, messages=[{"role": "user", "content": text}])

        clock = time.monotonic()
        traffic = [("a", text) for text in TIMES_ZERO[:40]]
        traffic += [("b", p.text) for p in ArithmeticTask(**ONE_STEP).sample(16, seed=3, split="train")]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda rt: ask(*rt), traffic))
        traffic_s = time.monotonic() - clock

        config_file = out / "manage.yaml"
        config_file.write_text(yaml.safe_dump(manage_config(out, url, hook, args.tick, metrics_port)))
        done = threading.Event()
        more = itertools.cycle(TIMES_ZERO[40:])

        def flow() -> None:  # a's users keep asking: the canary needs their requests
            while not done.is_set():
                try:
                    ask("a", next(more))
                except openai.APIError:
                    time.sleep(0.5)
                time.sleep(0.2)

        sender = threading.Thread(target=flow, daemon=True)
        sender.start()
        log = (out / "manage-serve.log").open("w")
        started, wall_start = time.monotonic(), datetime.now(timezone.utc)
        service = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from srl_rlvr.cli import main; main()",
                "manage",
                "serve",
                str(config_file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        seen: dict[str, float] = {}
        view: dict[str, Any] = {}

        def note(event: str, when: bool) -> None:
            if when and event not in seen:
                seen[event] = round(time.monotonic() - started, 1)
                print(f"{seen[event]:7.1f} s  {event}", flush=True)

        try:
            while time.monotonic() - started < args.limit and service.poll() is None:
                view = read_status(f"sqlite:///{out / 'manage.db'}", datetime.now(timezone.utc))
                a = view["models"].get(A, {})
                note("monitor: verdict recorded", bool(a.get("monitor")))
                note("retrain queued", bool(a.get("queued") or a.get("running") or a.get("last_retrain")))
                note("retrain running", bool(a.get("running") or a.get("last_retrain") or a.get("failed")))
                note("retrain finished", bool(a.get("last_retrain") or a.get("failed")))
                note("drift alert delivered", any(f"input drift on {A}" in t for _, t in received))
                outcome = ("promoted to production", "not promoted", f"retrain of {A} failed")
                note("outcome alert delivered", any(o in t for _, t in received for o in outcome))
                if "retrain finished" in seen and "outcome alert delivered" in seen:
                    break
                time.sleep(1.0)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
                metrics = [
                    line
                    for line in response.read().decode().splitlines()
                    if line.startswith(
                        ("srl_rlvr_manage_jobs{", "srl_rlvr_manage_alerts_total", "srl_rlvr_manage_drift")
                    )
                ]
            request = urllib.request.Request(
                f"{url}/admin/manage", headers={"Authorization": f"Bearer {KEY}"}
            )
            with urllib.request.urlopen(request) as response:
                admin_view = json.loads(response.read())
        finally:
            service.send_signal(signal.SIGINT)
            try:
                service.wait(30)
            except subprocess.TimeoutExpired:
                service.kill()
            done.set()
            sender.join(timeout=60)
            log.close()
        roles = json.loads(
            urllib.request.urlopen(
                urllib.request.Request(f"{url}/admin/roles", headers={"Authorization": f"Bearer {KEY}"})
            ).read()
        )

    a, b = admin_view["models"].get(A, {}), admin_view["models"].get(B, {})
    recorded = from_database(f"sqlite:///{out / 'manage.db'}", wall_start)
    last = a.get("last_retrain") or {}
    job = next(iter(a.get("failed", [])), None)
    record = {
        "date": str(date.today()),
        "hardware": f"{platform.machine()} CPU, {os.cpu_count()} cores (shared, loaded)",
        "command": f"nice -n 5 python benchmarks/manage_cycle.py --out {args.out} --tick {args.tick:g}",
        "tick_seconds": args.tick,
        "monitor_cron": "* * * * *",
        "seed_traffic_s": round(traffic_s, 1),
        "seconds_from_service_start": seen,  # as this script's 1-second poll first saw each step
        "recorded_seconds_from_service_start": recorded,  # the state's own timestamps
        "a": {
            "monitor": a.get("monitor"),
            "last_retrain": last,
            "failed": a.get("failed"),
            "production_after": resolve(f"registry:{A}@production", uri).reference,
            "served_primary_after": roles["a"]["primary"],
        },
        "b": {
            "monitor": b.get("monitor"),
            "jobs": (b.get("queued") or []) + (b.get("running") or []) + (b.get("failed") or []),
            "production_after": resolve(f"registry:{B}@production", uri).reference,
        },
        "alerts": [{"received_s": round(t - started, 1), "text": text} for t, text in received],
        "metrics": metrics,
        "schedules": admin_view["schedules"],
        "failed_job": job,
    }
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(record, indent=1) + "\n")
    print()
    print(f"{'step':30} {'s after manage serve started':>30}")
    for event, seconds in seen.items():
        print(f"{event:30} {seconds:>30.1f}")
    print(f"a: {last.get('deployed')} {last.get('candidate')}; b: {(b.get('monitor') or {}).get('verdict')}")
    for job in recorded["a_jobs"]:
        print(f"a's job {job['key']}: {job['outcome']}, {job['device_seconds'] or 0:.1f} device-seconds")
    for alert in record["alerts"]:
        print(f"alert at {alert['received_s']:.1f} s: {alert['text']}")
    print(f"written: {results}")


if __name__ == "__main__":
    main()
