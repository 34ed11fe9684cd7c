"""Which recipe gives users the best model? Stage lists run through the real pipeline.

Every arm is a list of pipeline stages (`run_pipeline`, so the default arm is exactly what
`srl-rlvr run` does, stage gates included) from the same base model, with the same time cap on
its training: `--budget-s` seconds split evenly over the arm's training stages (a stage that
finishes its epochs or steps sooner stops sooner; 0 keeps the config's step counts). The model an
arm ends with (for the gated default, the best its gates kept) answers the task's held-out test
problems greedily; its completions are kept in the result, so a reader can see what it writes.
One process runs one (arm, seed); run several for parallel arms, then `--merge` their results:

    python benchmarks/recipes.py --config examples/quickstart.yaml --arm default --seed 0 --out runs/rec
    python benchmarks/recipes.py --merge runs/rec/*/result.json --baseline default
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ARMS: dict[str, list[str]] = {
    "sft": ["generate", "sft"],
    "rlvr": ["rlvr"],
    "srl": ["generate", "srl"],
    "srl_rlvr": ["generate", "srl", "rlvr"],
    "sft_rlvr": ["generate", "sft", "rlvr"],
    "sft_srl_rlvr": ["generate", "sft", "srl", "rlvr"],
    "default": [],  # the pipeline's default stage list, gated
}
TRAINING = ("sft", "srl", "rlvr")


def run_arm(args: argparse.Namespace) -> dict[str, Any]:
    from learning import METRICS, TimeBudget, accuracy

    from srl_rlvr.cli import quiet_libraries
    from srl_rlvr.config import PipelineConfig, load_config
    from srl_rlvr.pipeline import run_pipeline
    from srl_rlvr.pipeline.gate import best_model, read_gate
    from srl_rlvr.tasks import load_task

    quiet_libraries()
    default = [s for s in PipelineConfig().stages if s not in ("evaluate", "register")]
    stages = ARMS[args.arm] or default
    gated = args.arm == "default"
    name = args.label or args.arm
    out = args.out / f"{name}-{args.seed}"
    overrides = [
        f"seed={args.seed}",
        f"output_dir={out / 'run'}",
        f"pipeline.stages=[{','.join(stages)}]",
        f"pipeline.gate={str(gated).lower()}",
        "registry.tracking=false",
        *([f"model.name_or_path={args.base}"] if args.base else []),
        *args.set,
    ]
    config = load_config(args.config, overrides)
    if "generate" in stages and config.collaboration.teacher == "solver":
        # the solver's trajectories, as the generate stage writes them, without the teacher client's
        # imports (a GPU machine may lack the openai package)
        from srl_rlvr.data.versioning import save_dataset

        task = load_task(config.task.name, config.task.options)
        data = out / "trajectories"
        if not (data / "manifest.json").is_file():
            problems = task.sample(config.data.train_size, config.data.seed, "train")
            save_dataset([task.solve(p) for p in problems], data, source="solver")
        config = load_config(args.config, [*overrides, f"data.trajectories={data}"])
    trained = [s for s in stages if s in TRAINING]
    budget = [TimeBudget(args.budget_s / len(trained))] if args.budget_s else []
    started = time.time()
    run_pipeline(config, extra_callbacks=budget)
    seconds = time.time() - started
    last = out / "run" / trained[-1] / "final"
    final = best_model(last) if gated else str(last)
    task = load_task(config.task.name, config.task.options)
    problems = task.sample(config.data.test_size, config.data.seed, "test")
    metrics = METRICS.get(config.task.name, [])
    tokens = config.eval.max_new_tokens
    result = {
        "arm": name,
        "seed": args.seed,
        "stages": stages,
        "gated": gated,
        "final": final,
        "seconds": seconds,
        "stage_seconds": _stage_seconds(out / "run"),
        "gates": [
            {k: v for k, v in vars(g).items() if k != "best_completions"}
            for s in trained
            if (g := read_gate(out / "run" / s))
        ],
        "test": _trim(accuracy(final, task, problems, tokens, metrics)),
        "problems": [p.id for p in problems],
        "test_sample": [config.data.test_size, config.data.seed],
        "task": [config.task.name, config.task.options],
    }
    if args.with_base:
        result["base"] = _trim(accuracy(config.model.name_or_path, task, problems, tokens, metrics))
    (out / "result.json").write_text(json.dumps(result, indent=1))
    headline = next(iter(result["test"]["metrics"].items()), ("reward", result["test"]["accuracy"]))
    kept = " ".join(f"{g['stage']}:{'kept' if g['kept'] else 'dropped'}" for g in result["gates"])
    print(
        f"seed {args.seed} {args.arm}: {headline[0]} {headline[1]:.3f} ({seconds:.0f} s) {kept}", flush=True
    )
    return result


def _trim(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scores.items() if k != "example"}


def _stage_seconds(run_dir: Path) -> dict[str, float]:
    state = run_dir / "pipeline.json"
    if not state.is_file():
        return {}
    return {s: r.get("seconds", 0.0) for s, r in json.loads(state.read_text())["stages"].items()}


def pooled_delta(
    a: list[dict[str, Any]], b: list[dict[str, Any]], metric: str, task: Any, samples: int = 1000
) -> tuple[float, float, float]:
    """metric(b) - metric(a) over the (problem, seed) pairs of matching seeds, with a paired bootstrap
    interval: `srl-rlvr experiment`'s comparison (`srl_rlvr.experiment.decision.compare_arm`)."""
    from srl_rlvr.experiment.decision import compare_arm

    def jobs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "arm": r["arm"],
                "seed": r["seed"],
                "problems": r["problems"],
                "completions": r["test"]["completions"],
                "device_seconds": r["seconds"],
            }
            for r in results
        ]

    problems = {p.id: p for r in a for p in task.sample(*r["test_sample"], "test")}
    compared = compare_arm(task, list(problems.values()), jobs(b), jobs(a), [metric], metric, 0.0, samples)
    d = compared.deltas[0]
    return d.delta, d.low, d.high


def merge(
    paths: list[Path], baseline: str, compare: list[tuple[str, str]], task_name: str | None = None
) -> None:
    from srl_rlvr.tasks import load_task

    results = [json.loads(p.read_text()) for p in paths]
    first = results[0]
    order = [*ARMS]
    arms = sorted(
        {r["arm"] for r in results}, key=lambda a: (order.index(a) if a in order else len(order), a)
    )
    seeds = sorted({r["seed"] for r in results})
    metric = next(iter(first["test"]["metrics"]), "reward")
    named = [task_name, {}] if task_name else next((r["task"] for r in results if "task" in r), None)
    task = load_task(*(named or _task_of(paths[0])))
    print(f"\nheld-out {metric}, per seed and mean (training seconds in brackets)")
    print("| arm | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
    print("|---|" + "---:|" * (len(seeds) + 1))
    if "base" in first:
        base = {r["seed"]: r["base"] for r in results if "base" in r}
        values = [base[s]["metrics"].get(metric, base[s]["accuracy"]) for s in seeds if s in base]
        print("| base | " + " | ".join(f"{v:.3f}" for v in values) + f" | {np.mean(values):.3f} |")
    for arm in arms:
        rows = {r["seed"]: r for r in results if r["arm"] == arm}
        values = [
            rows[s]["test"]["metrics"].get(metric, rows[s]["test"]["accuracy"]) for s in seeds if s in rows
        ]
        cells = [
            f"{rows[s]['test']['metrics'].get(metric, rows[s]['test']['accuracy']):.3f} "
            f"({sum(v for k, v in rows[s]['stage_seconds'].items() if k in TRAINING):.0f} s)"
            for s in seeds
            if s in rows
        ]
        print(f"| {arm} | " + " | ".join(cells) + f" | {np.mean(values):.3f} |")
    pairs = [(other, baseline) for other in arms if other != baseline] + compare
    print(f"\npooled over (problem, seed) pairs: {metric} of the second minus the first, 95 % CI")
    for a, b in pairs:
        left = [r for r in results if r["arm"] == a]
        right = [r for r in results if r["arm"] == b]
        if left and right:
            d, lo, hi = pooled_delta(left, right, metric, task)
            print(f"{b} - {a}: {d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    gated = [r for r in results if r["gated"]]
    for r in gated:
        print(
            f"seed {r['seed']} default gates: "
            + "; ".join(
                f"{g['stage']} {'kept' if g['kept'] else 'dropped'} "
                f"{g['candidate_score']:.3f} vs {g['incumbent_score']:.3f} "
                f"(Δ {g['delta']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}])"
                for g in r["gates"]
            )
        )


def _task_of(result_path: Path) -> tuple[str, dict[str, Any]]:
    """The task (name, options) of a result, from its run's config.yaml."""
    import yaml

    config = yaml.safe_load((result_path.parent / "run" / "config.yaml").read_text())
    return config["task"]["name"], config["task"].get("options") or {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="examples/quickstart.yaml")
    parser.add_argument("--arm", choices=list(ARMS), default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", help="the base model (default: the config's)")
    parser.add_argument("--budget-s", type=float, default=0, help="training seconds per arm (0: steps)")
    parser.add_argument("--with-base", action="store_true", help="score the base model too")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides")
    parser.add_argument("--label", help="name the arm in the results (an arm run with other --set overrides)")
    parser.add_argument("--out", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--merge", nargs="*", type=Path, help="result.json files to tabulate")
    parser.add_argument("--baseline", default="default", help="with --merge: the arm others are compared to")
    parser.add_argument("--task", help="with --merge: the task, for results that do not name it")
    parser.add_argument("--compare", nargs=2, action="append", default=[], metavar=("A", "B"))
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.baseline, [tuple(c) for c in args.compare], args.task)
    else:
        run_arm(args)


if __name__ == "__main__":
    main()
