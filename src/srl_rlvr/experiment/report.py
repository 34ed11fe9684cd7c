"""The experiment's report: experiment.md (per-seed scores, paired intervals, cost, decision),
experiment.json (the same numbers for scripts) and experiment.png (the plot)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from srl_rlvr.experiment.runner import ExperimentResult


def _scores_md(result: ExperimentResult) -> list[str]:
    seeds = sorted({r["seed"] for rows in result.results.values() for r in rows})
    lines = [
        f"## {result.primary} per seed (device-seconds in brackets)",
        "",
        "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
        "|---|" + "---:|" * (len(seeds) + 1),
    ]
    for arm, rows in result.results.items():
        by_seed = {r["seed"]: r for r in rows}
        cells = [
            f"{by_seed[s]['metrics'][result.primary]:.3f} ({by_seed[s]['device_seconds']:.0f} s)"
            if s in by_seed
            else "-"
            for s in seeds
        ]
        mean = np.mean([r["metrics"][result.primary] for r in rows])
        label = f"{arm} (baseline)" if arm == result.baseline else arm
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {mean:.3f} |")
    return lines


def _comparisons_md(result: ExperimentResult, confidence: float) -> list[str]:
    ci = f"{confidence:.0%} CI"
    lines = []
    for c in result.comparisons:
        lines += [
            "",
            f"## {c.arm} vs {c.baseline}: **{c.decision}**",
            "",
            f"Paired over {len(c.seeds)} seed(s) x the same held-out problems.",
            "",
            f"| metric | {c.baseline} | {c.arm} | delta | {ci} | effect size (d_z) |",
            "|---|---:|---:|---:|---|---:|",
        ]
        for d in c.deltas:
            effect = "" if d.effect_size is None else f"{d.effect_size:+.2f}"
            mark = " (decides)" if d.metric == result.primary else ""
            lines.append(
                f"| {d.metric}{mark} | {d.baseline:.3f} | {d.arm:.3f} | {d.delta:+.3f} "
                f"| [{d.low:+.3f}, {d.high:+.3f}] | {effect} |"
            )
        lines += [
            "",
            f"cost: {c.cost_seconds:.1f} device-seconds a seed against {c.baseline_cost_seconds:.1f} "
            f"(x{c.cost_ratio:.2f})",
            "",
            *(f"- {reason}" for reason in c.reasons),
        ]
    return lines


def plot_experiment(result: ExperimentResult, path: Path) -> Path:
    """Left: the primary metric of every (arm, seed) and each arm's mean. Right: each arm's paired
    delta against the baseline with its interval; the dashed line is no change."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    arms = list(result.results)
    for i, arm in enumerate(arms):
        values = [r["metrics"][result.primary] for r in result.results[arm]]
        left.scatter([i] * len(values), values, alpha=0.6)
        left.hlines(np.mean(values), i - 0.25, i + 0.25, color="black")
    left.set_xticks(range(len(arms)), arms)
    left.set_ylabel(result.primary)
    left.set_title("held-out score per seed (line: mean)")
    names = [c.arm for c in result.comparisons]
    deltas = [c.delta(result.primary) for c in result.comparisons]
    right.errorbar(
        [d.delta for d in deltas],
        range(len(names)),
        xerr=[[d.delta - d.low for d in deltas], [d.high - d.delta for d in deltas]],
        fmt="o",
        capsize=4,
    )
    right.axvline(0, linestyle="--", color="grey")
    right.set_yticks(range(len(names)), [f"{c.arm}: {c.decision}" for c in result.comparisons])
    right.set_xlabel(f"{result.primary} minus {result.baseline}'s")
    right.set_title("paired delta and interval")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _search_md(result: ExperimentResult) -> list[str]:
    """The search's trials, best first: which overrides each arm stands for, and its value."""
    if not result.search:
        return []
    lines = [
        "",
        f"## Search: {len(result.search)} trials (Optuna TPE), value = mean {result.primary} over seeds",
        "",
        "The best of many trials on one set of held-out problems overstates its gain: confirm it as "
        "an arm of a fresh experiment before adopting it.",
        "",
        f"| trial | arm | {result.primary} | overrides |",
        "|---|---|---|---|",
    ]
    for row in sorted(result.search, key=lambda r: -r["value"]):
        overrides = " ".join(f"`{o}`" for o in row["overrides"])
        lines.append(f"| {row['trial']} | {row['arm']} | {row['value']:.3f} | {overrides} |")
    return lines


def write_report(result: ExperimentResult, confidence: float) -> tuple[Path, Path]:
    plot = plot_experiment(result, result.out / "experiment.png")
    lines = [
        f"# Experiment: {', '.join(result.results)} (baseline {result.baseline})",
        "",
        f"Every arm x seed trained in its own process and answered the same held-out problems; "
        f"decisions are on {result.primary}.",
        "",
        *_scores_md(result),
        *_search_md(result),
        *_comparisons_md(result, confidence),
        "",
        f"![experiment]({plot.name})",
        "",
    ]
    report = result.out / "experiment.md"
    report.write_text("\n".join(lines))
    numbers = {
        "baseline": result.baseline,
        "primary": result.primary,
        "comparisons": [asdict(c) | {"cost_ratio": c.cost_ratio} for c in result.comparisons],
        "results": {
            arm: [{k: r[k] for k in ("seed", "metrics", "device_seconds", "model")} for r in rows]
            for arm, rows in result.results.items()
        },
        **({"search": result.search} if result.search else {}),
    }
    (result.out / "experiment.json").write_text(json.dumps(numbers, indent=1) + "\n")
    return report, plot
