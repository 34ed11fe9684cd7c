"""The encoder model types on a real model: SmolLM2-135M as an embedding model, a reranker and the
intent router, each before and after training, over seeds; then each endpoint's cost.

For each seed: the embedding model (last-token pooling) is trained contrastively on the retrieval
task's training queries and evaluated on its held-out ones (recall@10, nDCG@10, with paired
intervals against the untrained model); the reranker is trained on BM25's candidates and evaluated
on nDCG@10 over them (against the untrained cross-encoder and BM25's own order); the router is
trained over the five built-in roles (accuracy, macro-F1). Then the three trained models are served
and each endpoint is called by 32 concurrent clients for `--seconds` (requests/s, p50/p95).

    python benchmarks/model_types.py /path/to/SmolLM2-135M --seeds 0 1 2 --steps 300

Writes benchmarks/results/model_types.json (raw numbers, the command, hardware, date).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

from srl_rlvr.pipeline.encoders import EncoderRun, run_encoder_pipeline

from srl_rlvr.config import build_config
from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.run import serve_in_thread

RESULTS = Path(__file__).parent / "results" / "model_types.json"
KEY = "sk-bench"


def train_one(kind: str, model: str, seed: int, steps: int, out: Path) -> EncoderRun:
    config = build_config(
        {
            "seed": seed,
            "model": {"type": kind, "name_or_path": model},
            "task": {"name": "sentiment" if kind == "classifier" else "retrieval"},
            "output_dir": str(out / f"{kind}-{seed}"),
            "data": {"seed": seed, "test_size": 250},
            "encoder": {"steps": steps},
            "registry": {"tracking_uri": f"sqlite:///{out / 'mlflow.db'}", "model_name": f"bench-{kind}"},
        }
    )
    return run_encoder_pipeline(config)


def quality(run: EncoderRun, kind: str) -> dict[str, Any]:
    if kind == "classifier":
        return {
            "base_accuracy": run.report["base"]["accuracy"],
            "accuracy": run.report["tuned"]["accuracy"],
            "macro_f1": run.report["tuned"]["macro_f1"],
            "accuracy_delta": run.report["deltas"]["accuracy"],
            "confusion": run.report["tuned"]["confusion"],
        }
    rows = {name: run.report["metrics_vs_base"][name] for name in ("recall@10", "ndcg@10", "mrr")}
    if kind == "reranker":
        rows["ndcg@10_vs_bm25"] = run.report["metrics_vs_bm25"]["ndcg@10"]
    return rows


def load_test(
    url: str, path: str, body: dict[str, Any], seconds: float, concurrency: int = 32
) -> dict[str, float]:
    data = json.dumps(body).encode()
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client() -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            request = urllib.request.Request(
                url + path,
                data=data,
                headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
            )
            began = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    response.read()
                with lock:
                    latencies.append(time.perf_counter() - began)
            except Exception:
                with lock:
                    errors += 1

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(client)
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan"),
        "errors": errors,
    }


def endpoint_costs(runs: dict[str, EncoderRun], seconds: float, out: Path) -> dict[str, Any]:
    keys = out / "keys.txt"
    keys.write_text(f"bench: {KEY}\n")
    config = build_serve_config(
        {
            "port": 0,
            "models": {kind: {"path": run.model_dir, "type": kind} for kind, run in runs.items()},
            "auth": {
                "api_keys_env": None,
                "keys_file": str(keys),
                "requests_per_second": 1e6,
                "burst": 1_000_000,
            },
            "audit_log": str(out / "audit.jsonl"),
            "records": None,
        }
    )
    documents = [
        f"Passage {i}: refunds arrive within {i} business days of the parcel's return." for i in range(20)
    ]
    calls = {
        "embeddings (1 text)": (
            "/v1/embeddings",
            {"model": "embedding", "input": "when will my refund arrive"},
        ),
        "rerank (20 documents)": (
            "/v1/rerank",
            {"model": "reranker", "query": "when will my refund arrive", "documents": documents, "top_n": 5},
        ),
        "classify (1 text)": ("/v1/classify", {"model": "classifier", "input": "I love this phone!"}),
    }
    with serve_in_thread(config, KEY) as url:
        return {name: load_test(url, path, body, seconds) for name, (path, body) in calls.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="SmolLM2-135M folder (or any HF model id or folder)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0, help="load test length per endpoint")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "date": date.today().isoformat(),
        "hardware": platform.platform(),
        "quality": {},
    }
    try:
        import torch

        results["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:
        results["gpu"] = "unknown"
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        last: dict[str, EncoderRun] = {}
        for kind in ("embedding", "reranker", "classifier"):
            for seed in args.seeds:
                last[kind] = train_one(kind, args.model, seed, args.steps, out)
                results["quality"].setdefault(kind, []).append({"seed": seed, **quality(last[kind], kind)})
                print(kind, seed, json.dumps(results["quality"][kind][-1], default=str)[:300], flush=True)
        results["endpoints"] = endpoint_costs(last, args.seconds, out)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(f"\n{'endpoint':<24} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for name, row in results["endpoints"].items():
        print(f"{name:<24} {row['requests_per_s']:>8.1f} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
