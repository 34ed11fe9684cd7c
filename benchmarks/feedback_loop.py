"""One full self-learning cycle on CPU, timed: serve -> record -> monitor -> retrain -> canary -> promote.

The embedded model (trained on 1-4-step problems) is registered as production and served for the
arithmetic role. Traffic mixes problems it handles (1-2 steps) with a slice it fails (5-6 steps).
`monitor` judges the records; `retrain` learns from the failures through the teacher team and goes
out as a canary on the running server while the same kind of traffic continues. The slice's
held-out accuracy (the test split, never served) is measured before and after with a paired
bootstrap interval.

    python benchmarks/feedback_loop.py --out runs/bench-feedback
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from srl_rlvr.config import build_config
from srl_rlvr.evaluate.evaluation import evaluate_model
from srl_rlvr.evaluate.stats import bootstrap_ci, paired_delta_ci
from srl_rlvr.feedback.monitor import monitor
from srl_rlvr.feedback.monitor_report import write_monitor_report
from srl_rlvr.feedback.retrain import retrain
from srl_rlvr.modeling import EMBEDDED_DIR, load_model
from srl_rlvr.serve.config import build_serve_config
from srl_rlvr.serve.run import serve_in_thread
from srl_rlvr.tasks.arithmetic import ArithmeticTask
from srl_rlvr.tracking.registry import promote, register, resolve_source

KEY = "sk-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-feedback")
    parser.add_argument("--easy", type=int, default=100, help="1-2-step requests")
    parser.add_argument("--hard", type=int, default=200, help="5-6-step requests (the failing slice)")
    parser.add_argument("--heldout", type=int, default=300, help="held-out 5-6-step problems to score")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    uri = f"sqlite:///{out / 'mlflow.db'}"
    os.environ.update(MLFLOW_TRACKING_URI=uri, SRL_RLVR_API_KEYS=KEY, OPS_KEY=KEY)
    easy, hard = ArithmeticTask(min_steps=1, max_steps=2), ArithmeticTask(min_steps=5, max_steps=6)
    config = build_config(
        {
            "output_dir": str(out / "runs"),
            "task": {"name": "arithmetic", "options": {"min_steps": 1, "max_steps": 4}},
            "data": {"test_size": 200},
            "pipeline": {"stages": ["generate", "sft", "evaluate", "register"]},
            "sft": {"learning_rate": 1e-3, "batch_size": 16, "epochs": 6, "max_length": 256},
            "eval": {"max_new_tokens": 96, "batch_size": 100},
            "registry": {"tracking_uri": uri},
            "feedback": {
                "store": f"sqlite:///{out / 'records.db'}",
                "role": "arithmetic",
                "fresh_examples": 200,
                "report_dir": str(out / "monitor"),
                "server_key_env": "OPS_KEY",
                "canary_percent": 25,
                "canary_requests": 20,
            },
        }
    )
    v1 = register("arithmetic", EMBEDDED_DIR, stage="pretrain", parent="embedded", metrics={"reward": 0.8})
    promote("arithmetic", v1.version, "production", uri=uri)
    serve = build_serve_config(
        {
            "port": 0,
            "device": "cpu",
            "models": {"prod": {"path": "registry:arithmetic@production"}},
            "roles": {"arithmetic": {"primary": "prod", "task": "arithmetic"}},
            "auth": {"requests_per_second": 1000, "burst": 1000},
            "canary": {"min_requests": 10},
            "limits": {"default_max_tokens": 96, "max_tokens": 96},
            "audit_log": str(out / "audit.jsonl"),
            "records": {"url": config.feedback.store},
        }
    )
    seconds: dict[str, float] = {}
    traffic = [p.text for p in easy.sample(args.easy, 3, "train")] + [
        p.text for p in hard.sample(args.hard, 3, "train")
    ]
    with serve_in_thread(serve, KEY) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)

        def ask(problem: str) -> None:
            client.chat.completions.create(
                model="arithmetic", messages=[{"role": "user", "content": problem}]
            )

        began = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(ask, traffic))
        seconds["serve traffic"] = time.perf_counter() - began

        began = time.perf_counter()
        found = monitor(config)
        write_monitor_report(found, config.feedback.report_dir)
        seconds["monitor"] = time.perf_counter() - began

        holder: dict[str, object] = {}
        live = config.model_copy(update={"feedback": config.feedback.model_copy(update={"server": url})})
        worker = threading.Thread(target=lambda: holder.update(result=retrain(live)))
        worker.start()
        more = iter(hard.sample(2000, 4, "train"))
        while worker.is_alive():
            ask(next(more).text)
        worker.join()
        result = holder["result"]
        seconds.update({f"retrain: {k}": v for k, v in result.seconds.items()})  # type: ignore[attr-defined]

    problems = hard.sample(args.heldout, 7, "test")
    scores = {}
    for label, reference in (("production (v1)", v1.reference), ("retrained", result.candidate)):  # type: ignore[attr-defined]
        model, tokenizer = load_model(
            config.model.model_copy(update={"name_or_path": resolve_source(reference, uri)})
        )
        scores[label] = evaluate_model(model, tokenizer, hard, problems, config.eval, label=label).rewards
    before, after = scores.values()
    delta = paired_delta_ci(before, after)
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "criteria": {c.name: c.holds for c in found.criteria},
        "due": found.due,
        "failures": result.failures,  # type: ignore[attr-defined]
        "trajectories": result.trajectories,  # type: ignore[attr-defined]
        "deployed": result.deployed,  # type: ignore[attr-defined]
        "verdict": result.verdict,  # type: ignore[attr-defined]
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "heldout_hard_slice": {
            label: {"accuracy": sum(s) / len(s), "ci": bootstrap_ci(s)} for label, s in scores.items()
        },
        "delta": {"mean": delta[0], "ci": [delta[1], delta[2]]},
        "n_heldout": len(problems),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
