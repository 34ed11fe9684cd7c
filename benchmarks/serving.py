"""Serving under load: 64 concurrent OpenAI clients for 60 s, an adapter hot-swap and a canary shift midway.

The server runs in its own process (`run_server`, uvicorn on 127.0.0.1) with a base model, an adapter
`live` on it and a role `assistant`. Half the workers ask the role (chat), half the adapter directly
(completions), through the real async `openai` client with retries off, so every error counts. At 30%
of the run `live` is hot-swapped to new weights (and back at 40%); at 50% a new adapter is canaried for
the role at 10%, raised to 50% at 60% and promoted at 75%. A failed request is any client exception.

    python benchmarks/serving.py --seconds 60 --model tiny
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import openai

from srl_rlvr.config import ModelConfig
from srl_rlvr.modeling import load_model
from srl_rlvr.serve.config import ServeConfig, build_serve_config
from srl_rlvr.serve.run import wait_ready

KEY = "sk-bench"


def make_adapter(base: str, folder: Path, seed: int) -> str:
    import torch
    from peft import LoraConfig, get_peft_model

    model, _ = load_model(ModelConfig(name_or_path=base, device="cpu"))
    torch.manual_seed(seed)
    lora = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(folder)
    return str(folder)


def _serve(config: ServeConfig) -> None:
    from srl_rlvr.serve.run import run_server

    run_server(config, log_level="warning")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


async def worker(
    client: openai.AsyncOpenAI,
    i: int,
    deadline: float,
    max_tokens: int,
    phase: list[str],
    log: list[dict[str, Any]],
) -> None:
    n = 0
    while time.monotonic() < deadline:
        began = time.perf_counter()
        record: dict[str, Any] = {"phase": phase[0], "kind": "role" if i % 2 == 0 else "adapter"}
        try:
            if i % 2 == 0:
                raw = await client.chat.completions.with_raw_response.create(
                    model="assistant",
                    messages=[{"role": "user", "content": f"Question {i}-{n}: what is 7 times 6?"}],
                    max_tokens=max_tokens,
                )
            else:
                raw = await client.completions.with_raw_response.create(
                    model="live", prompt=f"Start with {i}. Add {n}.\n", max_tokens=max_tokens
                )
            raw.parse()
            record["served_by"] = raw.headers.get("x-served-by")
            record["ok"] = True
        except Exception as e:  # every client-visible failure counts
            record["ok"] = False
            record["error"] = f"{type(e).__name__}: {e}"[:200]
        record["ms"] = 1000 * (time.perf_counter() - began)
        log.append(record)
        n += 1


async def events(
    client: openai.AsyncOpenAI, start: float, seconds: float, adapters: dict[str, str], phase: list[str]
) -> list[dict[str, Any]]:
    """The swap and the canary, each at a fraction of the run (`client` is rooted at the server, not
    /v1, for the admin routes); what each returned and when."""
    plan = [
        (0.30, "swap", "/v1/load_lora_adapter", {"lora_name": "live", "lora_path": adapters["live_v2"]}),
        (0.40, "swap back", "/v1/load_lora_adapter", {"lora_name": "live", "lora_path": adapters["live_v1"]}),
        (
            0.50,
            "canary 10%",
            "/admin/shift",
            {"role": "assistant", "to": adapters["candidate"], "percent": 10},
        ),
        (
            0.60,
            "canary 50%",
            "/admin/shift",
            {"role": "assistant", "to": adapters["candidate"], "percent": 50},
        ),
        (
            0.75,
            "promoted",
            "/admin/shift",
            {"role": "assistant", "to": adapters["candidate"], "percent": 100},
        ),
    ]
    done = []
    for fraction, name, path, body in plan:
        await asyncio.sleep(max(0.0, start + fraction * seconds - time.monotonic()))
        began = time.perf_counter()
        result = await client.post(path, body=body, cast_to=str if path.startswith("/v1") else object)
        phase[0] = name  # requests sent from now on see the change in effect
        done.append(
            {
                "at_s": time.monotonic() - start,
                "event": name,
                "seconds": time.perf_counter() - began,
                "result": result,
            }
        )
    return done


async def run_load(
    base_url: str, seconds: float, clients: int, max_tokens: int, adapters: dict[str, str]
) -> dict[str, Any]:
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, timeout=120)
    log: list[dict[str, Any]] = []
    phase = ["before"]
    start = time.monotonic()
    deadline = start + seconds
    tasks = [asyncio.create_task(worker(client, i, deadline, max_tokens, phase, log)) for i in range(clients)]
    admin = openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=120)
    happened = await events(admin, start, seconds, adapters, phase)
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    await client.close()
    await admin.close()
    return {"log": log, "events": happened, "elapsed_s": elapsed}


def summarize(log: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
    ok = [r["ms"] for r in log if r["ok"]]
    phases: dict[str, dict[str, Any]] = {}
    for r in log:
        p = phases.setdefault(r["phase"], {"requests": 0, "failed": 0, "served_by": Counter()})
        p["requests"] += 1
        p["failed"] += not r["ok"]
        if r["ok"] and r["kind"] == "role":
            p["served_by"][r["served_by"]] += 1
    return {
        "requests": len(log),
        "failed": sum(not r["ok"] for r in log),
        "throughput_rps": len(log) / elapsed,
        "p50_ms": percentile(ok, 50),
        "p95_ms": percentile(ok, 95),
        "p99_ms": percentile(ok, 99),
        "phases": {k: {**v, "served_by": dict(v["served_by"])} for k, v in phases.items()},
        "errors": Counter(r["error"] for r in log if not r["ok"]).most_common(5),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--model", default="tiny", help="base model: tiny or embedded (no download)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument(
        "--cpu-threads", type=int, default=1, help="the server's torch threads (serve.cpu_threads)"
    )
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    os.environ["SRL_RLVR_API_KEYS"] = KEY  # the server process inherits it
    with tempfile.TemporaryDirectory() as tmp:
        adapters = {
            name: make_adapter(args.model, Path(tmp) / name, seed)
            for seed, name in enumerate(("live_v1", "live_v2", "candidate"))
        }
        config = build_serve_config(
            {
                "port": free_port(),
                "device": "cpu",
                "cpu_threads": args.cpu_threads,
                "models": {
                    "base": {"path": args.model},
                    "live": {"path": adapters["live_v1"], "base": "base"},
                },
                "roles": {"assistant": {"primary": "base", "backups": ["live"]}},
                "auth": {"requests_per_second": 100_000, "burst": 100_000},
                "limits": {"max_tokens": 64, "max_batch": args.max_batch},
                "audit_log": str(Path(tmp) / "audit.jsonl"),
            }
        )
        server = multiprocessing.get_context("spawn").Process(target=_serve, args=(config,), daemon=True)
        server.start()
        base_url = f"http://127.0.0.1:{config.port}"
        try:
            wait_ready(base_url, KEY)
            run = asyncio.run(run_load(base_url, args.seconds, args.clients, args.max_tokens, adapters))
        finally:
            server.terminate()
            server.join(timeout=30)
    summary = summarize(run["log"], run["elapsed_s"])

    print(
        f"{args.clients} clients, {run['elapsed_s']:.1f} s, model {args.model}, max_tokens {args.max_tokens}"
    )
    print(f"{'requests':>9}{'failed':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    s = summary
    print(
        f"{s['requests']:>9}{s['failed']:>8}{s['throughput_rps']:>9.1f}{s['p50_ms']:>9.0f}{s['p95_ms']:>9.0f}{s['p99_ms']:>9.0f}"
    )
    for e in run["events"]:
        print(f"  {e['at_s']:5.1f} s  {e['event']:<11} took {e['seconds'] * 1000:.0f} ms")
    for name, p in summary["phases"].items():
        print(
            f"  phase {name:<11} {p['requests']:>6} requests, {p['failed']} failed, role served by {p['served_by']}"
        )

    args.results.mkdir(parents=True, exist_ok=True)
    record = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "command": " ".join(["python", *sys.argv]),
        "settings": vars(args) | {"results": str(args.results)},
        "summary": summary,
        "events": run["events"],
    }
    path = args.results / f"serving-{record['date']}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
