"""The encoder model types on a real model: SmolLM2-135M as an embedding model, a reranker and the
intent router, each before and after training, over seeds; then each endpoint's cost.

For each seed: the embedding model (last-token pooling) is trained contrastively on the retrieval
task's training queries and evaluated on its held-out ones (recall@10, nDCG@10, MRR, with paired
intervals against the untrained model); the reranker is trained on BM25's candidates and evaluated
on nDCG@10 over them (against the untrained cross-encoder and BM25's own order); the router is
trained over the five built-in roles (accuracy, macro-F1). Then the three trained models are served
(the last seed's) and each endpoint is called by 32 concurrent clients for `--seconds`
(requests/s, p50/p95).

    python benchmarks/model_types.py /path/to/SmolLM2-135M --seeds 0 1 2 --steps 300
    python benchmarks/model_types.py tiny --seeds 0 --steps 2 --seconds 1   # a CPU smoke run

Runs without MLflow: tracking is off and the pipeline stops before `register`; the server loads
each trained model from its run folder. Writes `--out` (the encoder reports, the endpoint costs,
the command, hardware, date).
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

from srl_rlvr.config import build_config
from srl_rlvr.evaluate.encoder_run import metric_cells
from srl_rlvr.pipeline.encoders import EncoderRun, run_encoder_pipeline
from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.run import serve_in_thread

RESULTS = Path(__file__).parent / "results" / "model_types.json"
KEY = "sk-bench"
HEADLINE = {
    "embedding": ["ndcg@10", "recall@10", "mrr"],
    "reranker": ["ndcg@10", "recall@10", "mrr"],
    "classifier": ["accuracy", "macro_f1"],
}


def train_one(kind: str, model: str, seed: int, steps: int, out: Path) -> EncoderRun:
    """One encoder pipeline run. The router's data is its five roles' tasks whatever `task` says, and
    `test_size` is its held-out prompts; the retrieval types hold out the corpus's own test queries."""
    config = build_config(
        {
            "seed": seed,
            "model": {"type": kind, "name_or_path": model},
            "task": {"name": "sentiment" if kind == "classifier" else "retrieval"},
            "output_dir": str(out / f"{kind}-{seed}"),
            "data": {"seed": seed, "test_size": 250},
            "encoder": {"steps": steps},
            "pipeline": {"stages": ["generate", "train", "evaluate"]},  # register needs MLflow
            "registry": {"tracking": False},
        }
    )
    return run_encoder_pipeline(config)


def quality_line(kind: str, seed: int, report: dict[str, Any]) -> str:
    """The trained model's headline metrics with intervals, each with its paired delta to the base."""
    tuned = report["results"]["tuned"]
    cells = metric_cells(tuned, report["deltas"]["tuned"], HEADLINE[kind], " (vs base {})")
    line = f"{kind:<10} seed {seed}  " + "  ".join(
        f"{name} {cell}" for name, cell in zip(HEADLINE[kind], cells, strict=True)
    )
    if kind == "reranker":
        d = report["deltas_vs_bm25"]["tuned"]["ndcg@10"]
        line += f"  ndcg@10 vs bm25 {d['delta']:+.3f} [{d['delta_low']:+.3f}, {d['delta_high']:+.3f}]"
    return line


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
    parser.add_argument("model", help="SmolLM2-135M folder (or any HF model id or folder; 'tiny' on a CPU)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0, help="load test length per endpoint")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the raw numbers go (JSON)")
    args = parser.parse_args()
    import torch

    results: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "date": date.today().isoformat(),
        "hardware": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "quality": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        last: dict[str, EncoderRun] = {}
        for kind in ("embedding", "reranker", "classifier"):
            for seed in args.seeds:
                last[kind] = run = train_one(kind, args.model, seed, args.steps, out)
                results["quality"].setdefault(kind, []).append({"seed": seed, "report": run.report})
                print(quality_line(kind, seed, run.report), flush=True)
        results["endpoints"] = endpoint_costs(last, args.seconds, out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"\n{'endpoint':<24} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'errors':>7}")
    for name, row in results["endpoints"].items():
        print(
            f"{name:<24} {row['requests_per_s']:>8.1f} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f}"
            f" {row['errors']:>7}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
