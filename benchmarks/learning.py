"""Which recipe teaches the base model most? SFT, RLVR, SRL and SRL -> RLVR from the same base.

Every arm starts from the same base model (default: the embedded one), trains on the same problems
(SRL and SFT on the solver's trajectories of them, RLVR on the problems and their verifier), and is
scored greedily on held-out test problems (and, for arithmetic, on a harder family none of them
trained on). Arms get equal budgets: `--budget-s` seconds of training each (SRL -> RLVR splits its
budget by `--srl-share`), or, with `--budget-s 0`, fixed step counts. Every score carries a paired
95 % interval against the base: the per-problem reward's mean difference, and for each of the task's
`--metrics` the metric recomputed on the same resampled problems (F1 is no mean of per-problem
values). Seeds run one after another in this process; run several processes for parallel seeds.

    python benchmarks/learning.py --seeds 0 --budget-s 120 --out runs/bench_learning
    python benchmarks/learning.py --task sentiment --base HuggingFaceTB/SmolLM2-135M-Instruct \
        --config examples/smollm2-sentiment.yaml --arms sft --budget-s 300 --out runs/smol
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from srl_rlvr.cli import quiet_libraries
from srl_rlvr.config import Config, build_config, load_config
from srl_rlvr.evaluate.stats import bootstrap_ci, paired_delta_ci, paired_metric_delta_ci
from srl_rlvr.modeling import chat_prompt, load_model, model_source
from srl_rlvr.rollout import generate_texts
from srl_rlvr.tasks import Problem, load_task
from srl_rlvr.train.rlvr import train_rlvr
from srl_rlvr.train.sft import train_sft
from srl_rlvr.train.srl import train_srl

ARMS = ("sft", "rlvr", "srl", "srl_rlvr")
# The scores each task is judged by, headline first; the per-problem reward is always reported too.
METRICS = {
    "arithmetic": ["accuracy"],
    "sentiment": ["accuracy", "macro_f1", "parse_rate"],
    "moderation": ["flag_f1", "detection_accuracy", "severity_accuracy", "parse_rate"],
    "extraction": ["field_f1", "exact_match", "schema_valid_rate"],
    "codegen": ["pass_rate"],
}
ARITHMETIC_OPTIONS = {"min_steps": 2, "max_steps": 4}
ARITHMETIC_HARDER = {"min_steps": 5, "max_steps": 6}


class TimeBudget(TrainerCallback):
    """Stop training once `seconds` of wall time have passed since the first step began."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.started = seconds, 0.0

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.started = time.time()

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if time.time() - self.started > self.seconds:
            control.should_training_stop = True


def accuracy(
    path: str, task: Any, problems: list[Problem], max_new_tokens: int, metrics: list[str]
) -> dict[str, Any]:
    """Greedy scores: the mean per-problem reward with a 95 % bootstrap interval (as `accuracy`, which
    it is for 0/1 rewards), the task's `metrics`, and the completions for paired comparisons."""
    model, tokenizer = load_model(build_config({"model": {"name_or_path": path}}).model)
    completions = generate_texts(
        model,
        tokenizer,
        [chat_prompt(tokenizer, task.prompt(p)) for p in problems],
        max_new_tokens,
        batch_size=256,
    ).completions
    correct = [task.reward(c, p) for c, p in zip(completions, problems, strict=True)]
    scores = task.metrics(completions, problems)
    return {
        "accuracy": sum(correct) / len(correct),
        "ci": list(bootstrap_ci(correct)),
        "correct": correct,
        "metrics": {name: scores[name] for name in metrics},
        "completions": completions,
        "example": completions[0],
    }


def metric_deltas(
    task: Any, problems: list[Problem], base: dict[str, Any], arm: dict[str, Any], metrics: list[str]
) -> dict[str, list[float]]:
    """Each metric of `arm` minus the base's, with a paired bootstrap interval over the problems."""

    def scorer(completions: list[str], name: str) -> Any:
        return lambda idx: task.metrics([completions[i] for i in idx], [problems[i] for i in idx])[name]

    return {
        name: list(
            paired_metric_delta_ci(
                scorer(base["completions"], name), scorer(arm["completions"], name), len(problems)
            )
        )
        for name in metrics
    }


def steps_done(out: Path) -> int:
    """Optimiser steps an arm took (its stages' metrics.jsonl), to show what its budget bought."""
    total = 0
    for log in out.rglob("metrics.jsonl"):
        steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines() if line.strip()]
        total += max(steps, default=0)
    return total


def run_arm(
    arm: str, config: Config, base: str, task: Any, train: list[Problem], out: Path, args: argparse.Namespace
) -> str:
    trajectories = [task.solve(p) for p in train]
    budget = args.budget_s
    share = args.srl_share if arm == "srl_rlvr" else 1.0
    srl_cb = [TimeBudget(budget * share)] if budget else []
    rlvr_cb = [TimeBudget(budget * (1 - share if arm == "srl_rlvr" else 1.0))] if budget else []
    on_base = config.model_copy(update={"model": config.model.model_copy(update={"name_or_path": base})})
    if arm == "sft":
        return str(train_sft(on_base, trajectories, out / "sft", task=task, callbacks=srl_cb))
    if arm == "rlvr":
        return str(train_rlvr(on_base, train, out / "rlvr", task=task, model=base, callbacks=rlvr_cb))
    reuse = out.parent / "srl" / "final"
    if arm == "srl_rlvr" and not budget and reuse.is_dir():
        srl = reuse  # with step budgets, SRL -> RLVR's SRL stage is the SRL arm
    else:
        srl = train_srl(on_base, trajectories, out / "srl", task=task, callbacks=srl_cb)
    if arm == "srl":
        return str(srl)
    return str(train_rlvr(on_base, train, out / "srl_rlvr", task=task, model=str(srl), callbacks=rlvr_cb))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="embedded")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--task", default="arithmetic", help="a built-in task or module:Class")
    parser.add_argument(
        "--options", help=f"task options (JSON); arithmetic's default: {json.dumps(ARITHMETIC_OPTIONS)}"
    )
    parser.add_argument(
        "--harder",
        help="task options (JSON) of a family no arm trains on, scored too; arithmetic's default: "
        f"{json.dumps(ARITHMETIC_HARDER)}, none for other tasks",
    )
    parser.add_argument("--metrics", nargs="+", help="task metrics to report (default: the task's own)")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--heldout", type=int, default=500)
    parser.add_argument("--budget-s", type=float, default=0, help="training seconds per arm (0: steps)")
    parser.add_argument("--srl-share", type=float, default=0.5, help="SRL's share of SRL -> RLVR")
    parser.add_argument("--config", default="examples/quickstart.yaml", help="hyper-parameters")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_learning"))
    parser.add_argument(
        "--label",
        help="name this run's single arm in the results (e.g. ppo_mu4 for --arms rlvr with PPO overrides)",
    )
    parser.add_argument(
        "--merge",
        nargs="*",
        type=Path,
        help="results.json of parallel runs: write their joint table and plot",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        action="append",
        default=[],
        metavar=("A", "B"),
        help="with --merge: paired held-out difference B - A per seed (repeatable)",
    )
    args = parser.parse_args()
    if args.label and len(args.arms) != 1:
        parser.error("--label names a single arm: give exactly one with --arms")
    if args.merge:
        runs = merge_runs([json.loads(path.read_text())["runs"] for path in args.merge])
        arms = [key.removesuffix("_delta") for key in runs[0] if key.endswith("_delta")]
        args.out.mkdir(parents=True, exist_ok=True)
        plot(runs, arms, args.out / "learning.png")
        print_table(runs, arms)
        for a, b in args.compare:
            print_comparison(runs, a, b)
        return
    quiet_libraries()

    base = model_source(args.base)
    arithmetic = args.task == "arithmetic"
    options = json.loads(args.options) if args.options else ARITHMETIC_OPTIONS if arithmetic else {}
    task = load_task(args.task, options)
    harder = json.loads(args.harder) if args.harder else ARITHMETIC_HARDER if arithmetic else None
    harder_task = load_task(args.task, {**options, **harder}) if harder is not None else None
    metrics = args.metrics or METRICS.get(args.task, [])
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": []}
    for seed in args.seeds:
        config = load_config(args.config, [f"seed={seed}", *args.set])
        config.task.name, config.task.options = args.task, options
        train = task.sample(args.train, seed=seed, split="train")
        heldout = task.sample(args.heldout, seed=seed, split="test")
        tokens = config.eval.max_new_tokens
        row: dict[str, Any] = {"seed": seed, "base": accuracy(base, task, heldout, tokens, metrics)}
        if harder_task is not None:
            harder_set = harder_task.sample(args.heldout, seed=seed, split="test")
            row["base_harder"] = accuracy(base, harder_task, harder_set, tokens, metrics)
        print(f"seed {seed} base: {scores_line(row['base'])}", flush=True)
        for arm in args.arms:
            name = args.label or arm
            started = time.time()
            folder = args.out / f"seed{seed}" / name
            path = run_arm(arm, config, base, task, train, folder, args)
            row[name] = accuracy(path, task, heldout, tokens, metrics)
            if harder_task is not None:
                row[f"{name}_harder"] = accuracy(path, harder_task, harder_set, tokens, metrics)
            row[f"{name}_seconds"] = time.time() - started
            row[f"{name}_steps"] = steps_done(folder)
            row[f"{name}_restores"] = restores(folder)
            delta, low, high = paired_delta_ci(row["base"]["correct"], row[name]["correct"])
            row[f"{name}_delta"] = [delta, low, high]
            row[f"{name}_metric_deltas"] = metric_deltas(task, heldout, row["base"], row[name], metrics)
            harder_note = (
                f"harder {row[f'{name}_harder']['accuracy']:.3f} " if harder_task is not None else ""
            )
            print(
                f"seed {seed} {name}: {scores_line(row[name])} "
                f"reward delta vs base {delta:+.3f} [{low:+.3f}, {high:+.3f}] "
                + "".join(
                    f"{metric} {d:+.3f} [{lo:+.3f}, {hi:+.3f}] "
                    for metric, (d, lo, hi) in row[f"{name}_metric_deltas"].items()
                )
                + harder_note
                + f"({row[f'{name}_seconds']:.0f} s, {row[f'{name}_steps']} steps, "
                f"{row[f'{name}_restores']} stability restores)",
                flush=True,
            )
        results["runs"].append(row)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        plot(results["runs"], [args.label] if args.label else args.arms, args.out / "learning.png")

    print_table(results["runs"], [args.label] if args.label else args.arms)


def scores_line(scores: dict[str, Any]) -> str:
    """Mean reward with its interval, then each reported metric."""
    low, high = scores["ci"]
    metrics = " ".join(f"{name} {value:.3f}" for name, value in scores.get("metrics", {}).items())
    return f"reward {scores['accuracy']:.3f} [{low:.3f}, {high:.3f}] {metrics}".rstrip()


def restores(out: Path) -> int:
    """Stability-guard restores in an arm's stages (lines of their stability.jsonl)."""
    return sum(len(log.read_text().splitlines()) for log in out.rglob("stability.jsonl"))


def merge_runs(files: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per seed from the rows of several result files (each may hold different arms)."""
    by_seed: dict[int, dict[str, Any]] = {}
    for rows in files:
        for row in rows:
            by_seed.setdefault(row["seed"], {}).update(row)
    return [by_seed[seed] for seed in sorted(by_seed)]


def print_comparison(runs: list[dict[str, Any]], a: str, b: str) -> None:
    """Paired held-out difference of arm b over arm a on each seed, with its 95 % interval."""
    cells = []
    for row in runs:
        if a in row and b in row:
            delta, low, high = paired_delta_ci(row[a]["correct"], row[b]["correct"])
            cells.append(f"seed {row['seed']}: {delta:+.3f} [{low:+.3f}, {high:+.3f}]")
    print(f"{b} - {a}: " + "; ".join(cells))


def headline(scores: dict[str, Any]) -> tuple[str, float]:
    """The task's first reported metric (or the mean reward when none is reported)."""
    metrics = scores.get("metrics") or {"reward": scores["accuracy"]}
    name = next(iter(metrics))
    return name, metrics[name]


def print_table(runs: list[dict[str, Any]], arms: list[str]) -> None:
    """The headline metric per seed and arm (harder family in brackets, where there is one), then
    the mean over seeds and each arm's paired difference to the base per seed."""
    metric = headline(runs[0]["base"])[0]

    def cell(row: dict[str, Any], label: str) -> str:
        text = f"{headline(row[label])[1]:.3f}"
        if label + "_harder" in row:
            text += f" ({headline(row[label + '_harder'])[1]:.3f})"
        if label == "base":
            return text
        deltas = row.get(label + "_metric_deltas", {}).get(metric)
        if deltas:
            text += f" Δ {deltas[0]:+.3f} [{deltas[1]:+.3f}, {deltas[2]:+.3f}]"
        return text + f"; {row[label + '_steps']} steps, {row.get(label + '_restores', '?')} restores"

    print(f"\n{metric}, held-out" + (" (harder family)" if "base_harder" in runs[0] else ""))
    print("| seed | base | " + " | ".join(arms) + " |")
    print("|---|---|" + "---|" * len(arms))
    for row in runs:
        print(f"| {row['seed']} | " + " | ".join(cell(row, label) for label in ["base", *arms]) + " |")
    means = [sum(headline(row[label])[1] for row in runs) / len(runs) for label in ["base", *arms]]
    print("| mean | " + " | ".join(f"{m:.3f}" for m in means) + " |")


def plot(runs: list[dict[str, Any]], arms: list[str], path: Path) -> None:
    """The headline metric per arm, held-out (and harder family): a bar for the mean over seeds, a
    dot per seed."""
    from matplotlib.figure import Figure

    metric = headline(runs[0]["base"])[0]
    panels = [("", "held-out problems")]
    if "base_harder" in runs[0]:
        panels.append(("_harder", "harder family (never trained on)"))
    fig = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    labels = ["base", *arms]
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (suffix, title) in zip(axes, panels, strict=True):
        for i, label in enumerate(labels):
            values = [headline(row[label + suffix])[1] for row in runs]
            ax.bar(i, sum(values) / len(values), color="lightgray" if label == "base" else f"C{i}")
            ax.plot([i] * len(values), values, "k.", label="one seed" if i == 0 else None)
            ax.annotate(
                f"{sum(values) / len(values):.3f}",
                (i, max(values)),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel("arm (equal training budget, same base)")
        ax.set_ylabel(f"greedy {metric}")
        ax.set_title(f"{title}: mean of {len(runs)} seed(s)")
        ax.legend(loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
