"""monitor.md, monitor.json and the plots beside them: what `srl-rlvr monitor` found, for people."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from srl_rlvr.feedback.monitor import Monitoring


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def plot_monitoring(m: Monitoring, folder: Path) -> list[Path]:
    paths = []
    figure = Figure(figsize=(12, 4))
    over_time, slices, lengths = figure.subplots(1, 3)
    models = sorted({w.model for w in m.windows})
    for model in models:
        rows = sorted(
            (w for w in m.windows if w.model == model and w.outcome_rate is not None), key=lambda w: w.start
        )
        if rows:
            over_time.plot([w.start for w in rows], [w.outcome_rate for w in rows], marker="o", label=model)
    over_time.set(
        title="Verified-outcome rate per window", xlabel="window start (UTC)", ylabel="rate", ylim=(0, 1.05)
    )
    if models:
        over_time.legend(fontsize=7)
    over_time.tick_params(axis="x", labelrotation=30, labelsize=7)
    shown = [s for s in m.slices if s.n > 0][:24]
    if shown:
        y = np.arange(len(shown))
        rates = np.array([s.rate for s in shown])
        errors = np.array([[s.rate - s.ci_low for s in shown], [s.ci_high - s.rate for s in shown]])
        colours = ["tab:red" if s.weak else "tab:blue" for s in shown]
        slices.barh(y, rates, xerr=errors, color=colours, label="rate, 95% CI (red: weak)")
        slices.set_yticks(y, [f"{s.model}: {s.key}={s.value} (n={s.n})" for s in shown], fontsize=7)
        slices.legend(fontsize=7)
    slices.set(title="Latest window by slice", xlabel="verified-outcome rate", xlim=(0, 1.05))
    if m.current_lengths:
        bins = np.histogram_bin_edges(m.reference_lengths + m.current_lengths, bins=20)
        lengths.hist(m.reference_lengths, bins=bins, density=True, alpha=0.5, label="training inputs")
        lengths.hist(m.current_lengths, bins=bins, density=True, alpha=0.5, label="latest window")
        lengths.legend(fontsize=7)
    lengths.set(title="Input length", xlabel="characters", ylabel="density")
    figure.tight_layout()
    path = folder / "monitor.png"
    figure.savefig(path, dpi=110)
    paths.append(path)
    return paths


def write_monitor_report(m: Monitoring, folder: str | Path) -> Path:
    """Write monitor.md (with monitor.png) and monitor.json into `folder`; the markdown's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "monitor.json").write_text(json.dumps(m.summary(), indent=2, default=str) + "\n")
    plot_monitoring(m, folder)
    lines = [
        f"# Production monitoring: {m.role or 'all requests'}",
        "",
        f"{m.now:%Y-%m-%d %H:%M} UTC. Production: {m.production or 'none in the registry'}. {m.verdict}.",
        "",
        "| criterion | holds | evidence |",
        "|---|---|---|",
        *[f"| {c.name} | {'yes' if c.holds else 'no'} | {c.detail} |" for c in m.criteria],
        "",
        "## Windows",
        "",
        "| start (UTC) | model | requests | checked | outcome rate | no answer | ratings | negative | p50 ms | p95 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {w.start:%Y-%m-%d %H:%M} | {w.model} | {w.requests} | {w.checked} | {_fmt(w.outcome_rate)} | "
            f"{w.no_answer_rate:.1%} | {w.ratings} | {_fmt(w.negative_rate)} | {_fmt(w.p50_ms, '.0f')} | "
            f"{_fmt(w.p95_ms, '.0f')} |"
            for w in m.windows
        ],
        "",
        "## Latest window by slice",
        "",
        "Weak: the slice's whole 95% bootstrap interval is below its model's overall rate.",
        "",
        "| model | slice | n | rate [95% CI] | weak |",
        "|---|---|---:|---|---|",
        *[
            f"| {s.model} | {s.key}={s.value} | {s.n} | {s.rate:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}] | "
            f"{'**yes**' if s.weak else ''} |"
            for s in m.slices
        ],
        "",
        "![monitoring](monitor.png)",
        "",
    ]
    path = folder / "monitor.md"
    path.write_text("\n".join(lines))
    return path
