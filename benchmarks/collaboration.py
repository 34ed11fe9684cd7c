"""Trajectory generation throughput: the solver team, and an LLM teacher at concurrency 1 vs 32.

The LLM teacher is a real HTTP server on 127.0.0.1 speaking the chat-completions protocol with a
fixed artificial latency (a remote model's think time), answering correct arithmetic trajectories;
requests go through the real `openai` client, retries, breaker and verifier. The disk cache is off,
so every row costs one request. All arms run in one process, one after the other.

    python benchmarks/collaboration.py --solver-n 1000 --latency 0.2 --n1 40 --n32 640
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chat_server import ScriptedChatServer

from srl_rlvr.config import build_config
from srl_rlvr.generate.orchestrator import generate_dataset
from srl_rlvr.tasks import load_task

TASK = load_task("arithmetic")


def solver_arm(n: int, out: Path) -> dict[str, Any]:
    began = time.perf_counter()
    manifest = generate_dataset(build_config(), out, n=n)
    seconds = time.perf_counter() - began
    return {
        "arm": "solver",
        "rows": manifest["count"],
        "seconds": seconds,
        "rows_per_s": manifest["count"] / seconds,
    }


def endpoint_arm(n: int, concurrency: int, latency: float, out: Path) -> dict[str, Any]:
    by_text = {p.text: p for p in TASK.sample(4 * n, seed=0, split="train")}

    def respond(request: dict[str, Any]) -> str:
        prompt = request["messages"][1]["content"]
        problem = next(by_text[line] for line in prompt.splitlines() if line in by_text)
        t = TASK.solve(problem)
        steps = [{"reasoning": s.reasoning, "action": s.action} for s in t.steps]
        return json.dumps({"steps": steps, "expected_outcome": t.expected_outcome})

    with ScriptedChatServer(respond, latency_s=latency) as server:
        config = build_config(
            {
                "collaboration": {
                    "teacher": {"base_url": server.base_url, "model": "bench", "api_key_env": None},
                    "requests": {"concurrency": concurrency, "cache_dir": None},
                }
            }
        )
        began = time.perf_counter()
        manifest = generate_dataset(config, out, n=n)
        seconds = time.perf_counter() - began
    return {
        "arm": f"endpoint c={concurrency}",
        "rows": manifest["count"],
        "requests": manifest["usage"]["bench"]["requests"],
        "seconds": seconds,
        "rows_per_s": manifest["count"] / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solver-n", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2, help="server seconds per request")
    parser.add_argument("--n1", type=int, default=40, help="rows at concurrency 1")
    parser.add_argument("--n32", type=int, default=640, help="rows at concurrency 32")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        arms = [
            solver_arm(args.solver_n, Path(tmp) / "solver"),
            endpoint_arm(args.n1, 1, args.latency, Path(tmp) / "c1"),
            endpoint_arm(args.n32, 32, args.latency, Path(tmp) / "c32"),
        ]
    speedup = arms[2]["rows_per_s"] / arms[1]["rows_per_s"]
    print(f"{'arm':<16}{'rows':>6}{'requests':>10}{'seconds':>9}{'rows/s':>9}")
    for a in arms:
        print(
            f"{a['arm']:<16}{a['rows']:>6}{a.get('requests', '-'):>10}{a['seconds']:>9.2f}{a['rows_per_s']:>9.1f}"
        )
    print(f"concurrency 32 vs 1: {speedup:.1f}x (latency {args.latency * 1000:.0f} ms per request)")
    args.results.mkdir(parents=True, exist_ok=True)
    record = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "command": " ".join(sys.argv),
        "arms": arms,
        "speedup_32_vs_1": speedup,
    }
    path = args.results / f"collaboration-{record['date']}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"raw numbers: {path}")


if __name__ == "__main__":
    main()
