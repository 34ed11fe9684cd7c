"""Distillation arms at equal training time: SFT on the teacher's verified answers vs on-policy
distillation (the student samples, the teacher scores its tokens), several seeds, one process each.

Each arm is one `srl-rlvr distill` run (distill_once) with the same teacher, student, questions and
held-out problems; a TimeBudget callback stops training after `--budget-s` seconds (0: the config's
steps). The result is the student's held-out metric over the teacher's, with its bootstrap interval.

    python benchmarks/distill.py --config examples/distill.yaml --teacher runs/quickstart/rlvr/final \
        --arms sft,on_policy --seeds 0,1,2 --budget-s 120 --out runs/bench-distill
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from learning import TimeBudget

from srl_rlvr.config import load_config
from srl_rlvr.distill.run import distill_once


def one_arm(args: argparse.Namespace) -> None:
    out = Path(args.out) / f"{args.arm}-seed{args.seed}"
    overrides = [
        f"output_dir={out}",
        f"seed={args.seed}",
        f"distill.method={args.arm}",
        "distill.min_quality_ratio=0",  # measure every student; the gate is not under test
        "registry.tracking=false",
        *args.overrides,
    ]
    config = load_config(args.config, overrides)
    stages = 2 if args.arm == "sft+on_policy" else 1  # each stage restarts the budget's clock: split it
    callbacks = [TimeBudget(args.budget_s / stages)] if args.budget_s else []
    began = time.time()
    result = distill_once(
        config, args.teacher, config.distill.student, None, callbacks=callbacks, register=False
    )
    v = result.validation
    assert v is not None
    folder = Path(result.trained).parent
    steps = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    row = {
        "arm": args.arm,
        "seed": args.seed,
        "teacher": v.teacher_metric,
        "student": v.student_metric,
        "ratio": v.quality_ratio,
        "ratio_ci": v.ratio_ci,
        "agreement": v.agreement,
        "latency_ratio": v.latency_ratio,
        "tokens_per_second_ratio": v.tokens_per_second_ratio,
        "n": v.n,
        "traces": result.traces,
        "train_seconds": result.seconds["training"],
        "steps": max((s.get("step", 0) for s in steps), default=0),
        "wall_seconds": time.time() - began,
    }
    (out / "row.json").write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--arms", default="sft,on_policy")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget-s", type=float, default=0.0)
    parser.add_argument("--out", default="runs/bench-distill")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="dotted config overrides for every arm")
    args = parser.parse_args()
    if args.arm:
        one_arm(args)
        return
    children = []
    for arm in args.arms.split(","):
        for seed in args.seeds.split(","):
            command = [sys.executable, __file__, "--config", args.config, "--teacher", args.teacher]
            command += ["--budget-s", str(args.budget_s), "--out", args.out, "--arm", arm, "--seed", seed]
            log = Path(args.out) / f"{arm}-seed{seed}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            children.append(
                subprocess.Popen(
                    [*command, *args.overrides],
                    stdout=log.open("w"),
                    stderr=subprocess.STDOUT,
                    env=os.environ,
                )
            )
    failed = sum(child.wait() != 0 for child in children)
    rows = [json.loads(p.read_text()) for p in sorted(Path(args.out).glob("*/row.json"))]
    (Path(args.out) / "result.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| arm | seed | teacher | student | student / teacher [95% CI] | agreement | steps | train s |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['arm']} | {r['seed']} | {r['teacher']:.3f} | {r['student']:.3f} | {r['ratio']:.3f} "
            f"[{r['ratio_ci'][0]:.3f}, {r['ratio_ci'][1]:.3f}] | {r['agreement']:.3f} | {r['steps']} | {r['train_seconds']:.0f} |"
        )
    if failed:
        raise SystemExit(f"{failed} arm(s) failed; see their .log files in {args.out}")


if __name__ == "__main__":
    main()
