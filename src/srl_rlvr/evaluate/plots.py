"""The report's PNGs: training curves per stage, metric bars per model, reward per slice.

Drawn on bare `Figure`s (the Agg renderer, no pyplot), so plotting never needs a display and
never touches global state. Every chart has a title, labelled axes and a legend.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from srl_rlvr.config import EvalConfig
from srl_rlvr.evaluate.evaluation import EvalResult
from srl_rlvr.evaluate.slices import Slice
from srl_rlvr.evaluate.stats import bootstrap_ci

log = logging.getLogger(__name__)

# panel title -> (y label, the metrics.jsonl keys drawn in it, with their legend labels)
CURVE_PANELS: dict[str, tuple[str, dict[str, str]]] = {
    "Reward": ("reward", {"reward": "train (rollouts)", "val/reward": "validation (held-out)"}),
    "KL to reference": ("KL", {"kl": "train"}),
    "Loss": ("loss", {"loss": "train"}),
}


def read_stage_metrics(stage_dir: str | Path) -> list[dict[str, Any]]:
    """The per-step rows of `<stage_dir>/metrics.jsonl`; the final summary row (train_runtime) and
    lines a killed run left half-written are skipped."""
    path = Path(stage_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d: not JSON, skipped", path, lineno)
            continue
        if isinstance(row, dict) and "step" in row and "train_runtime" not in row:
            rows.append(row)
    return rows


def plot_stage_curves(stage: str, rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Reward, KL and loss against step, one panel each, for the keys the stage logged; None when
    it logged none of them (nothing to draw)."""
    drawn: dict[str, tuple[str, dict[str, list[tuple[float, float]]]]] = {}
    for title, (ylabel, series) in CURVE_PANELS.items():
        lines = {
            label: [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
            for key, label in series.items()
        }
        if any(lines.values()):
            drawn[title] = (ylabel, {label: points for label, points in lines.items() if points})
    if not drawn:
        return None
    fig = Figure(figsize=(4.5 * len(drawn), 3.6), layout="constrained")
    axes = fig.subplots(1, len(drawn), squeeze=False)[0]
    for ax, (title, (ylabel, lines)) in zip(axes, drawn.items(), strict=True):
        for label, points in lines.items():
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Training curves: {stage}")
    fig.savefig(path, dpi=110)
    return path


def plot_metrics(panels: Mapping[str, Mapping[str, EvalResult]], path: Path, eval_config: EvalConfig) -> Path:
    """Grouped bars, one group per metric and one bar per model, a panel per problem set; the reward
    bars carry their bootstrap interval (task metrics have no per-problem values to resample)."""
    fig = Figure(figsize=(7.5 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, results) in zip(axes, panels.items(), strict=True):
        metrics = list(dict.fromkeys(k for r in results.values() for k in r.metrics))
        width = 0.8 / max(len(results), 1)
        x = np.arange(len(metrics))
        for i, (label, result) in enumerate(results.items()):
            offsets = x - 0.4 + width * (i + 0.5)
            values = [result.metrics.get(m, np.nan) for m in metrics]
            ax.bar(offsets, values, width, label=label)
            tops = list(values)
            if "reward" in metrics:
                low, high = bootstrap_ci(
                    result.rewards,
                    eval_config.bootstrap_samples,
                    eval_config.bootstrap_seed,
                    eval_config.confidence,
                )
                mean = result.metrics["reward"]
                ax.errorbar(
                    offsets[metrics.index("reward")],
                    mean,
                    yerr=[[mean - low], [high - mean]],
                    color="black",
                    capsize=3,
                )
                tops[metrics.index("reward")] = high  # the value sits above its interval, not on it
            for offset, value, top in zip(offsets, values, tops, strict=True):
                if np.isfinite(value):
                    ax.annotate(
                        f"{value:.2f}",
                        (offset, top),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        fontsize=7,
                    )
        n = next(iter(results.values())).n if results else 0
        ax.set_title(f"{title} (n={n}; reward bars: {eval_config.confidence:.0%} bootstrap CI)")
        scores = [v for r in results.values() for v in r.metrics.values() if np.isfinite(v)]
        ax.set_ylim(min([0.0, *scores]) * 1.1, max([1.0, *scores]) * 1.12)  # scores are mostly in [0, 1]
        ax.set_xticks(x, metrics)
        ax.set_xlabel("metric")
        ax.set_ylabel("score")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title="model", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=110)
    return path


MAX_VALUES_PER_KEY = 8  # 20 `start=N` rows made the figure 2,448 px tall and unreadable


def _largest_per_key(names: list[str], size: Mapping[str, int], limit: int) -> list[str]:
    """The `limit` largest slices of each metadata key, in their original order."""
    by_key: dict[str, list[str]] = {}
    for name in names:
        by_key.setdefault(name.partition("=")[0], []).append(name)
    kept = {n for group in by_key.values() for n in sorted(group, key=lambda n: -size[n])[:limit]}
    return [n for n in names if n in kept]


def plot_slices(slices: Mapping[str, list[Slice]], overall: Mapping[str, float], path: Path) -> Path:
    """Mean reward per slice and model as horizontal bars with their intervals; the dashed lines are
    each model's overall mean, so a weak slice is a bar whose interval ends left of its line."""
    every = list(dict.fromkeys(s.name for model_slices in slices.values() for s in model_slices))
    sizes: dict[str, list[int]] = {}
    for model_slices in slices.values():
        for s in model_slices:
            sizes.setdefault(s.name, []).append(s.n)
    names = _largest_per_key(every, {name: max(ns) for name, ns in sizes.items()}, MAX_VALUES_PER_KEY)
    height = 0.8 / max(len(slices), 1)
    y = np.arange(len(names))
    fig = Figure(figsize=(8, 1.8 + 0.22 * len(names) * max(len(slices), 1)), layout="constrained")
    ax = fig.subplots()
    for i, (label, model_slices) in enumerate(slices.items()):
        by_name = {s.name: s for s in model_slices}
        means = np.array([by_name[n].mean if n in by_name else np.nan for n in names])
        lows = np.array([by_name[n].ci_low if n in by_name else np.nan for n in names])
        highs = np.array([by_name[n].ci_high if n in by_name else np.nan for n in names])
        ax.barh(
            y - 0.4 + height * (i + 0.5),
            means,
            height,
            xerr=[means - lows, highs - means],
            capsize=2,
            color=f"C{i}",
            label=label,
        )
        # a dot at each mean, so a slice where the model scored 0 still shows
        ax.plot(means, y - 0.4 + height * (i + 0.5), "o", color=f"C{i}", markersize=3)
        ax.axvline(overall[label], color=f"C{i}", linestyle="--", linewidth=1)
    rewards = [s.mean for model_slices in slices.values() for s in model_slices] + list(overall.values())
    ax.set_xlim(min([0.0, *rewards]) * 1.05, max([1.0, *rewards]) * 1.05)
    ax.set_yticks(y, [f"{n} (n={'/'.join(map(str, dict.fromkeys(sizes[n])))})" for n in names], fontsize=8)
    ax.invert_yaxis()
    hidden = len(every) - len(names)
    ax.set_title(
        "Mean reward per slice (bars: bootstrap CI; dashed: overall mean)"
        + (f"\n{hidden} smaller slices not drawn: at most {MAX_VALUES_PER_KEY} per key" if hidden else "")
    )
    ax.set_xlabel("mean reward")
    ax.set_ylabel("slice (metadata key=value)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(title="model", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: bars reach 1.0
    fig.savefig(path, dpi=110)
    return path
