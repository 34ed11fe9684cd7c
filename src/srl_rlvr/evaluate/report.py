"""The evaluation report: `report.md` for people, `report.json` for machines, PNGs under `plots/`.

Models are compared in the order given (e.g. base -> SRL -> RLVR): each against the one before it
and against the first, the reward delta with a paired bootstrap interval. Weak slices come with
failures to read; a never-seen problem family, when evaluated, is reported on its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.table import Table

from srl_rlvr.config import EvalConfig
from srl_rlvr.evaluate.evaluation import EvalResult, compare
from srl_rlvr.evaluate.plots import plot_metrics, plot_slices, plot_stage_curves, read_stage_metrics
from srl_rlvr.evaluate.slices import Slice, slice_results, weak_slices


def stage_comparisons(results: Mapping[str, EvalResult], eval_config: EvalConfig) -> list[dict[str, Any]]:
    """Each model against the previous one and against the first (the base), without repeats."""
    labels = list(results)
    pairs = []
    for i, label in enumerate(labels[1:], start=1):
        pairs.append((labels[i - 1], label))
        if i > 1:
            pairs.append((labels[0], label))
    return [compare(results[a], results[b], eval_config) for a, b in pairs]


def _delta(comparison: dict[str, Any]) -> str:
    reward = comparison["reward"]
    star = "*" if reward["significant"] else ""
    return f"{reward['delta']:+.3f} [{reward['ci_low']:+.3f}, {reward['ci_high']:+.3f}]{star}"


def comparison_table(
    results: Mapping[str, EvalResult], eval_config: EvalConfig, title: str = "held-out evaluation"
) -> Table:
    """The metrics of each model with its reward delta against the row above, for the CLI to print.

    Against the row above because a pipeline's rows are its stages in order: each stage must beat
    the one before. report.md also compares every stage with the base.
    """
    metrics = list(dict.fromkeys(k for r in results.values() for k in r.metrics))
    ci = f"{eval_config.confidence:.0%} CI"
    caption = (
        f"Δ reward: paired, against the row above; * its {ci} excludes 0. "
        "Latency: p50 of a batch's wall time; p95/p99 in report.md."
    )
    table = Table(title=title, caption=caption)
    for column in ["model", "n", *metrics, f"Δ reward [{ci}]", "p50 ms", "tokens/s"]:
        table.add_column(column, justify="left" if column == "model" else "right", overflow="fold")
    previous: EvalResult | None = None
    for label, result in results.items():
        delta = _delta(compare(previous, result, eval_config)) if previous is not None else ""
        table.add_row(
            label,
            str(result.n),
            *(f"{result.metrics.get(m, float('nan')):.3f}" for m in metrics),
            delta,
            f"{result.latency_ms['p50']:.0f}",
            f"{result.tokens_per_second:.0f}",
        )
        previous = result
    return table


def _fence(text: str) -> str:
    """A code fence longer than any backtick run in `text`, so a completion cannot break out of it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _metrics_md(results: Mapping[str, EvalResult], comparisons: list[dict[str, Any]], ci: str) -> list[str]:
    metrics = list(dict.fromkeys(k for r in results.values() for k in r.metrics))
    lines = [
        "| model | n | " + " | ".join(metrics) + " |",
        "|---|---:|" + "---:|" * len(metrics),
        *(
            f"| {label} | {r.n} | "
            + " | ".join(f"{r.metrics.get(m, float('nan')):.3f}" for m in metrics)
            + " |"
            for label, r in results.items()
        ),
    ]
    if comparisons:
        others = [m for m in metrics if m != "reward"]
        lines += [
            "",
            f"| comparison | Δ reward [{ci}] | "
            + "".join(f"Δ {m} | " for m in others)
            + "improved / regressed |",
            "|---|---:|" + "---:|" * len(others) + "---:|",
        ]
        for c in comparisons:
            deltas = "".join(f"{_metric_delta(c, m)} | " for m in others)
            counts = f"{c['reward']['improved']} / {c['reward']['regressed']}"
            lines.append(f"| {c['model']} vs {c['baseline']} | {_delta(c)} | {deltas}{counts} |")
        lines.append(
            f"\nΔ reward: mean over problems of (model - baseline); * the paired bootstrap {ci} excludes 0."
        )
    return lines


def _metric_delta(comparison: dict[str, Any], metric: str) -> str:
    """A metric's delta, with its paired interval where there is one (avg@k, pass@k)."""
    interval = comparison.get("intervals", {}).get(metric)
    if interval is None:
        return f"{comparison['metrics'].get(metric, float('nan')):+.3f}"
    star = "*" if interval["significant"] else ""
    return f"{interval['delta']:+.3f} [{interval['ci_low']:+.3f}, {interval['ci_high']:+.3f}]{star}"


def _latency_md(results: Mapping[str, EvalResult], eval_config: EvalConfig) -> list[str]:
    return [
        "| model | p50 ms | p95 ms | p99 ms | tokens/s |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {label} | {r.latency_ms['p50']:.0f} | {r.latency_ms['p95']:.0f} | "
            f"{r.latency_ms['p99']:.0f} | {r.tokens_per_second:.1f} |"
            for label, r in results.items()
        ),
        "",
        f"Measured on batched greedy generation ({eval_config.batch_size} prompts a batch, at most "
        f"{eval_config.max_new_tokens} new tokens): a request's latency is its batch's wall time; "
        "tokens/s counts generated tokens up to EOS over total wall time.",
    ]


def _weak_md(label: str, slices: list[Slice], overall: float, eval_config: EvalConfig) -> list[str]:
    weak = weak_slices(slices)
    lines = [f"### {label} (overall mean reward {overall:.3f})", ""]
    if not weak:
        return [
            *lines,
            f"No slice of {eval_config.slice_min_size}+ problems is significantly below the overall mean.",
            "",
        ]
    for s in weak:
        lines.append(f"- **{s.name}**: {s.mean:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}] over {s.n} problems")
        for f in s.failures:
            block = f"problem: {f['text']}\nexpected: {f['expected']}\ncompletion (reward {f['reward']:.2f}):\n{f['completion']}"
            fence = _fence(block)
            lines += ["", f"  {fence}text", *(f"  {line}" for line in block.splitlines()), f"  {fence}"]
        lines.append("")
    return lines


def _gates_md(gates: Sequence[Mapping[str, Any]], ci: str) -> list[str]:
    """Which training stages were kept: each stage's model against the best before it, on the
    validation split, by the task's metric (pipeline/gate.py)."""
    md = [
        "## Stage gates (validation split)",
        "",
        "A stage's model is kept only when the task's metric on the validation split beats the best model "
        "before it; the next stage starts from the best so far.",
        "",
        f"| stage | kept | metric | stage's model | best before it | Δ [{ci}] | next stage starts from |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for g in gates:
        md.append(
            f"| {g['stage']} | {'yes' if g['kept'] else '**no**'} | {g['metric']} | {g['candidate_score']:.3f} "
            f"| {g['incumbent_score']:.3f} | {g['delta']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}] "
            f"| `{g['best']}` |"
        )
    return [*md, ""]


def write_report(
    out_dir: str | Path,
    results: Mapping[str, EvalResult],
    stage_dirs: Mapping[str, str | Path] | None = None,
    generalization: Mapping[str, EvalResult] | None = None,
    eval_config: EvalConfig | None = None,
    gates: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write report.md, report.json and plots/*.png into `out_dir`; return the report.md path.

    `results` are in comparison order (base first); `stage_dirs` name the training stages whose
    metrics.jsonl to plot; `generalization` scores the same models on a never-seen family.
    """
    eval_config = eval_config or EvalConfig()
    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    ci = f"{eval_config.confidence:.0%} CI"
    first = next(iter(results.values()))

    comparisons = stage_comparisons(results, eval_config)
    slices = {label: slice_results(r, eval_config) for label, r in results.items()}
    overall = {label: r.metrics["reward"] for label, r in results.items()}
    gen_comparisons = stage_comparisons(generalization, eval_config) if generalization else []

    curves = {}
    for stage, stage_dir in (stage_dirs or {}).items():
        drawn = plot_stage_curves(stage, read_stage_metrics(stage_dir), plots / f"curves_{stage}.png")
        if drawn is not None:
            curves[stage] = drawn
    panels = {"Held-out split": results} | ({"Never-seen family": generalization} if generalization else {})
    metrics_png = plot_metrics(panels, plots / "metrics.png", eval_config)
    shown = {
        label: [s for s in model_slices if s.n >= eval_config.slice_min_size]
        for label, model_slices in slices.items()
    }
    slices_png = plot_slices(shown, overall, plots / "slices.png")
    pngs = [*curves.values(), metrics_png, slices_png]

    md = [
        f"# Evaluation: {first.task}",
        "",
        f"{first.n} held-out problems; models: {', '.join(f'`{r.model}`' for r in results.values())}.",
        "",
        "## Metrics",
        "",
        *_metrics_md(results, comparisons, ci),
        "",
        f"![metrics]({metrics_png.relative_to(out_dir).as_posix()})",
        "",
        "## Latency and throughput",
        "",
        *_latency_md(results, eval_config),
        "",
        "## Weak slices",
        "",
        f"Slices by problem metadata and completion length; weak: at least {eval_config.slice_min_size} "
        f"problems and the {ci} of the slice's mean reward lies below the overall mean.",
        "",
    ]
    for label, model_slices in slices.items():
        md += _weak_md(label, model_slices, overall[label], eval_config)
    md += [f"![slices]({slices_png.relative_to(out_dir).as_posix()})", ""]
    if generalization:
        gen_first = next(iter(generalization.values()))
        family = eval_config.generalization_options
        md += [
            "## Generalisation: a problem family never seen in training",
            "",
            f"{gen_first.n} problems"
            + (f" with task options {eval_config.generalization_options}." if family else "."),
            "",
            *_metrics_md(generalization, gen_comparisons, ci),
            "",
        ]
    if gates:
        md += _gates_md(gates, ci)
    if curves:
        md += ["## Training curves", ""]
        for stage, png in curves.items():
            md += [f"![{stage}]({png.relative_to(out_dir).as_posix()})", ""]
    (out_dir / "report.md").write_text("\n".join(md))

    report = {
        "task": first.task,
        "n": first.n,
        "eval_config": eval_config.model_dump(mode="json"),
        "results": {label: r.summary() for label, r in results.items()},
        "comparisons": comparisons,
        "slices": {label: [asdict(s) for s in model_slices] for label, model_slices in slices.items()},
        "weak_slices": {label: [s.name for s in weak_slices(ms)] for label, ms in slices.items()},
        "generalization": None
        if not generalization
        else {
            "options": eval_config.generalization_options,
            "results": {label: r.summary() for label, r in generalization.items()},
            "comparisons": gen_comparisons,
        },
        "plots": [p.relative_to(out_dir).as_posix() for p in pngs],
        "gates": list(gates),
        "records": {label: [asdict(x) for x in r.records] for label, r in results.items()},
        "generalization_records": {
            label: [asdict(x) for x in r.records] for label, r in (generalization or {}).items()
        },
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return out_dir / "report.md"
