"""SRL where it should win: a hard family, few varied expert solutions, arms at equal time.

The SRL paper's claim is about a regime our other benchmarks are not in: a base that rarely solves
the problems (so RLVR's groups carry no signal), and few, long, varied expert solutions (so SFT
memorises rather than learns). This script builds that regime on our own models:

- base: the packaged `embedded` model; **hard family**: arithmetic with 5-6 steps (the base's greedy
  accuracy there is ~2 %; its sampled success rate is measured and printed first, and must be at
  most 5 % for the regime to hold); a **harder family** no arm trains on: 7-8 steps;
- **few, varied experts**: `--train` problems (at most 1,000), each solved by one of several teacher
  styles (`STYLES`: terse, explained, checked, narrated), so the solutions are long and not one
  template;
- **arms at equal training time** (`--budget-s` each; two-stage arms split it by `--first-share`):
  sft, rlvr, srl, srl_rlvr, sft_rlvr, against the base; seeds one after another; and `default`,
  what `srl-rlvr run` does: sft -> srl -> rlvr, a third of the budget each, each stage kept only if
  it beats the best model before it on the validation split (pipeline/gate.py);
- **the paper's settings where they matter**: KL 0, dynamic sampling with refill, 8 rollouts a
  prompt, temperature 1; batch 128 completions (the paper's is 512 prompts x 8: scaled down);
- **evaluation**: greedy accuracy and, with `--samples k`, avg@k and pass@k (the paper reports
  avg@32), each with a paired 95 % interval against the base; learning curves from the stages'
  metrics.jsonl.

    python benchmarks/srl_regime.py --seeds 0 1 2 --budget-s 300 --samples 8 --out runs/srl_regime
    python benchmarks/srl_regime.py --merge runs/srl_regime/result.json --out runs/srl_regime
    bash benchmarks/srl_regime_gpu.sh 240   # every (seed, arm) its own process on 2 GPUs
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from learning import TimeBudget, restores, steps_done

from srl_rlvr.cli import quiet_libraries
from srl_rlvr.config import Config, EvalConfig, load_config
from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.evaluate.evaluation import evaluate_model
from srl_rlvr.evaluate.stats import paired_delta_ci
from srl_rlvr.modeling import load_model, model_source
from srl_rlvr.tasks import Problem, load_task
from srl_rlvr.train.rlvr import train_rlvr
from srl_rlvr.train.sft import train_sft
from srl_rlvr.train.srl import train_srl

ARMS = ("sft", "rlvr", "srl", "srl_rlvr", "sft_rlvr", "default")
HARD = {"min_steps": 5, "max_steps": 6}
HARDER = {"min_steps": 7, "max_steps": 8}
PAPER_SETTINGS = [  # SRL paper §4 / DAPO: no KL, dynamic sampling with refill, 8 rollouts, T = 1
    *(f"{s}.kl_penalty_weight=0" for s in ("srl", "rlvr")),
    *(f"{s}.dynamic_sampling=true" for s in ("srl", "rlvr")),
    *(f"{s}.num_generations=8" for s in ("srl", "rlvr")),
    *(f"{s}.temperature=1.0" for s in ("srl", "rlvr")),
    *(f"{s}.batch_size=128" for s in ("srl", "rlvr")),
    *(f"{s}.max_steps=100000" for s in ("srl", "rlvr")),  # the time budget stops each stage
    "sft.epochs=1000",
    "srl.max_completion_length=96",  # one step of the wordiest style fits
    "rlvr.max_completion_length=384",  # a whole narrated 6-step solution fits
]
NAMES = {"add": ("add", "plus", "+"), "sub": ("subtract", "minus", "-"), "mul": ("multiply by", "times", "*")}


def styled(problem: Problem, style: str) -> Trajectory:
    """The solver's steps in one teacher's words. Every style keeps the checkable equation
    (`7+5=12`) and ends with `Answer: N`; what varies is everything around them."""
    value = problem.metadata["start"]
    steps = []
    for i, (op, x) in enumerate(problem.metadata["chain"], start=1):
        new = value + x if op == "add" else value - x if op == "sub" else value * x
        verb, word, sign = NAMES[op]
        equation = f"{value}{sign}{x}={new}"
        action = {
            "terse": equation,
            "explained": f"Step {i}: {verb} {x}. {equation}",
            "checked": f"{equation} (check: {value} {word} {x} is {new})",
            "narrated": f"We have {value}; {verb} {x} and we get {equation}, so now we have {new}.",
        }[style]
        steps.append(Step(action=action, reasoning=f"{verb} {x}"))
        value = new
    closing = {
        "terse": "",
        "explained": "The last value is the result. ",
        "checked": "",
        "narrated": "Done. ",
    }
    steps.append(Step(action=f"{closing[style]}Answer: {value}", reasoning="The last value is the answer."))
    return Trajectory(
        problem=problem.text,
        steps=steps,
        expected_outcome=str(problem.answer),
        metadata={"id": problem.id, "style": style},
        provenance={"teacher": f"styled:{style}"},
    )


STYLES = ("terse", "explained", "checked", "narrated")


def expert_data(problems: list[Problem], seed: int, styles: Sequence[str] = STYLES) -> list[Trajectory]:
    rng = random.Random(f"styles-{seed}")
    return [styled(p, rng.choice(list(styles))) for p in problems]


def score(
    path: str, task: Any, problems: list[Problem], eval_config: EvalConfig, label: str
) -> dict[str, Any]:
    """Greedy reward per problem and, when sampling, each problem's k sample rewards."""
    model, tokenizer = load_model(load_config(None, [f"model.name_or_path={path}"]).model)
    result = evaluate_model(model, tokenizer, task, problems, eval_config, label)
    return {
        "greedy": [r.reward for r in result.records],
        "samples": [r.sample_rewards for r in result.records],
        "metrics": result.metrics,
    }


def paired(base: dict[str, Any], arm: dict[str, Any]) -> dict[str, list[float]]:
    """Each measure's paired difference against the base with its 95 % interval."""
    out = {"greedy": list(paired_delta_ci(base["greedy"], arm["greedy"]))}
    if base["samples"] and base["samples"][0]:
        for name, of in (("avg", np.mean), ("pass", np.max)):
            a = [float(of(s)) for s in base["samples"]]
            b = [float(of(s)) for s in arm["samples"]]
            out[name] = list(paired_delta_ci(a, b))
    return out


def run_arm(
    arm: str,
    config: Config,
    base: str,
    task: Any,
    train: list[Problem],
    experts: list[Trajectory],
    out: Path,
    budget: float,
    share: float,
) -> str:
    if arm == "default":
        return run_default(config, base, task, train, experts, out, budget)
    first = [TimeBudget(budget * (share if "_" in arm else 1.0))]
    second = [TimeBudget(budget * (1 - share))]
    on_base = config.model_copy(update={"model": config.model.model_copy(update={"name_or_path": base})})
    if arm == "rlvr":
        return str(train_rlvr(on_base, train, out / "rlvr", task=task, model=base, callbacks=first))
    if arm in ("sft", "sft_rlvr"):
        start = train_sft(on_base, experts, out / "sft", task=task, callbacks=first)
    else:
        start = train_srl(on_base, experts, out / "srl", task=task, callbacks=first)
    if arm in ("sft", "srl"):
        return str(start)
    return str(train_rlvr(on_base, train, out / "rlvr", task=task, model=str(start), callbacks=second))


def run_default(
    config: Config,
    base: str,
    task: Any,
    train: list[Problem],
    experts: list[Trajectory],
    out: Path,
    budget: float,
) -> str:
    """The pipeline's default recipe with its gates: each stage starts from the best model so far and
    is kept only when the task's verifier scores it higher on the validation split."""
    from srl_rlvr.pipeline.gate import gate_stage

    best, previous = base, None
    for stage in ("sft", "srl", "rlvr"):
        on_best = config.model_copy(update={"model": config.model.model_copy(update={"name_or_path": best})})
        cap = [TimeBudget(budget / 3)]
        if stage == "sft":
            trained = train_sft(on_best, experts, out / stage, task=task, callbacks=cap)
        elif stage == "srl":
            trained = train_srl(on_best, experts, out / stage, task=task, callbacks=cap)
        else:
            trained = train_rlvr(on_best, train, out / stage, task=task, model=best, callbacks=cap)
        previous = gate_stage(config, stage, str(trained), best, task, out / stage, previous)
        print(
            f"  default {stage}: {'kept' if previous.kept else 'not kept'} "
            f"({previous.candidate_score:.3f} vs {previous.incumbent_score:.3f})",
            flush=True,
        )
        best = previous.best
    return best


TRACED = (  # what the analysis reads from each stage's metrics.jsonl, per logged step
    "frac_reward_zero_std",  # groups whose rollouts all scored the same: no signal
    "filtered_group_frac",
    "format_failure_rate",  # SRL: completions with no parsable action
    "entropy",
    "kl",
    "completions/mean_length",
)


def curves(folder: Path) -> dict[str, list[float]]:
    """Per stage of an arm: the training reward at each logged step (the stage's name), and the
    TRACED measures (`stage:measure`)."""
    found = {}
    for log in sorted(folder.rglob("metrics.jsonl")):
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        stage = log.parent.name
        found[stage] = [r["reward"] for r in rows if "reward" in r]
        for key in TRACED:
            values = [r[key] for r in rows if key in r]
            if values:
                found[f"{stage}:{key}"] = values
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="embedded")
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["base", *ARMS],
        choices=["base", *ARMS],
        help="what to run; 'base' scores the base (one process may run the base and another the arms "
        "of the same seed: --merge joins them by seed)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--train", type=int, default=1000, help="expert solutions (the regime: at most 1,000)"
    )
    parser.add_argument("--heldout", type=int, default=300)
    parser.add_argument("--budget-s", type=float, default=300, help="training seconds per arm")
    parser.add_argument(
        "--first-share", type=float, default=0.5, help="the first stage's share of a two-stage arm"
    )
    parser.add_argument(
        "--styles",
        nargs="+",
        default=list(STYLES),
        choices=STYLES,
        help="teacher styles the experts are drawn from (the regime: all; one style removes the "
        "phrasing noise from SRL's similarity reward)",
    )
    parser.add_argument("--samples", type=int, default=8, help="k of avg@k and pass@k (0: greedy only)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--eval-batch", type=int, default=64, help="prompts a generation batch")
    parser.add_argument("--config", default="examples/quickstart.yaml")
    parser.add_argument("--set", nargs="*", default=[], help="more config overrides (after the paper's)")
    parser.add_argument("--out", type=Path, default=Path("runs/srl_regime"))
    parser.add_argument("--merge", nargs="*", type=Path, help="result.json files: print their joint table")
    args = parser.parse_args()
    if args.merge:
        rows = merge_by_seed([row for path in args.merge for row in json.loads(path.read_text())["runs"]])
        print_table(rows)
        args.out.mkdir(parents=True, exist_ok=True)
        first = json.loads(args.merge[0].read_text())
        (args.out / "result.json").write_text(json.dumps({**first, "runs": rows}))
        plot(rows, args.out / "srl_regime.png")
        return
    if args.train > 1000:
        parser.error("--train: the regime is few experts, at most 1,000")
    quiet_libraries()
    base = model_source(args.base)
    task, harder = load_task("arithmetic", HARD), load_task("arithmetic", HARDER)
    eval_config = EvalConfig(
        max_new_tokens=args.max_new_tokens, batch_size=args.eval_batch, samples=args.samples
    )
    results: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "settings": PAPER_SETTINGS,
        "runs": [],
    }
    for seed in args.seeds:
        config = load_config(args.config, [f"seed={seed}", *PAPER_SETTINGS, *args.set])
        config.task.options = HARD
        train = task.sample(args.train, seed=seed, split="train")
        experts = expert_data(train, seed, args.styles)
        heldout = task.sample(args.heldout, seed=seed, split="test")
        harder_set = harder.sample(args.heldout, seed=seed, split="test")
        row: dict[str, Any] = {"seed": seed}
        if "base" in args.arms:
            row["base"] = score(base, task, heldout, eval_config, "base")
            row["base_harder"] = score(base, harder, harder_set, eval_config, "base")
            print(
                f"seed {seed} base: {summary(row['base'])}; harder {summary(row['base_harder'])}", flush=True
            )
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "result.json").write_text(json.dumps({**results, "runs": [*results["runs"], row]}))
        for arm in [a for a in args.arms if a != "base"]:
            began = time.time()
            folder = args.out / f"seed{seed}" / arm
            path = run_arm(arm, config, base, task, train, experts, folder, args.budget_s, args.first_share)
            row[arm] = score(path, task, heldout, eval_config, arm)
            row[f"{arm}_harder"] = score(path, harder, harder_set, eval_config, arm)
            row[f"{arm}_seconds"] = round(time.time() - began)
            row[f"{arm}_steps"] = steps_done(folder)
            row[f"{arm}_restores"] = restores(folder)
            row[f"{arm}_curves"] = curves(folder)
            print(
                f"seed {seed} {arm}: {summary(row[arm])}; harder {summary(row[f'{arm}_harder'])}; "
                f"{row[f'{arm}_steps']} steps in {row[f'{arm}_seconds']} s",
                flush=True,
            )
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "result.json").write_text(json.dumps({**results, "runs": [*results["runs"], row]}))
        results["runs"].append(row)
    rows = merge_by_seed(results["runs"])
    if all("base" in row for row in rows):
        print_table(rows)
        plot(rows, args.out / "srl_regime.png")


def merge_by_seed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row a seed from the rows of several processes, with each arm's paired differences to the
    base (on the same held-out problems: every process samples them from the seed)."""
    merged: dict[int, dict[str, Any]] = {}
    for row in rows:
        merged.setdefault(row["seed"], {}).update(row)
    for row in merged.values():
        for arm in ARMS:
            if arm in row and "base" in row:
                row[f"{arm}_vs_base"] = paired(row["base"], row[arm])
                row[f"{arm}_harder_vs_base"] = paired(row["base_harder"], row[f"{arm}_harder"])
    return [merged[seed] for seed in sorted(merged)]


def summary(scores: dict[str, Any]) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in scores["metrics"].items() if k != "parse_rate")


def print_table(rows: list[dict[str, Any]]) -> None:
    arms = [a for a in ARMS if a in rows[0]]
    measures = (
        [m for m in ("greedy", "avg", "pass") if m in rows[0].get(f"{arms[0]}_vs_base", {})] if arms else []
    )
    for suffix, title in (
        ("", "held-out hard family (5-6 steps)"),
        ("_harder", "harder family, never trained (7-8 steps)"),
    ):
        print(f"\n{title}: the arm's score, and its paired difference to the base [95 % interval]")
        print("| measure | seed | base | " + " | ".join(arms) + " |")
        print("|---|---|---:|" + "---:|" * len(arms))
        for measure in measures:
            key = {"greedy": "reward"}.get(measure, measure)
            for row in rows:
                metric = next(m for m in row["base" + suffix]["metrics"] if m.startswith(key))
                cells = [f"{row['base' + suffix]['metrics'][metric]:.3f}"]
                for arm in arms:
                    d, lo, hi = row[f"{arm}{suffix}_vs_base"][measure]
                    cells.append(
                        f"{row[arm + suffix]['metrics'][metric]:.3f} ({d:+.3f} [{lo:+.3f}, {hi:+.3f}])"
                    )
                print(f"| {metric} | {row['seed']} | " + " | ".join(cells) + " |")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Greedy accuracy and avg@k per arm (mean over seeds, a dot per seed), and each arm's training
    reward curves for seed 0."""
    from matplotlib.figure import Figure

    arms = ["base", *[a for a in ARMS if a in rows[0]]]
    fig = Figure(figsize=(15, 4), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (suffix, title) in zip(
        axes[:2], (("", "hard family (5-6 steps)"), ("_harder", "harder (7-8), never trained")), strict=True
    ):
        for i, arm in enumerate(arms):
            for j, key in enumerate(("reward", "avg@")):
                values = [
                    next(v for m, v in row[arm + suffix]["metrics"].items() if m.startswith(key))
                    for row in rows
                ]
                x = i + (j - 0.5) * 0.35
                ax.bar(
                    x,
                    float(np.mean(values)),
                    width=0.35,
                    color=f"C{j}",
                    label=("greedy" if j == 0 else "avg@k") if i == 0 else None,
                )
                ax.plot([x] * len(values), values, "k.")
        ax.set_xticks(range(len(arms)), arms)
        ax.set_title(f"{title}: mean of {len(rows)} seed(s)")
        ax.set_ylabel("accuracy")
        ax.legend()
    for arm in arms[1:]:
        for stage, rewards in rows[0].get(f"{arm}_curves", {}).items():
            if ":" not in stage:
                axes[2].plot(rewards, label=f"{arm}: {stage}")
    axes[2].set_title("training reward per step, seed 0")
    axes[2].set_xlabel("logged step")
    axes[2].legend(fontsize=7)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
