"""The evaluation job of the encoder types: `srl-rlvr eval` on an embedding model, reranker or router.

The held-out split is rebuilt from the config (the run's own, when the model came from a run or the
registry), so a registered version is scored on the queries its run held out. The baseline is
`--baseline`, else the config's base model: every model is compared with it, paired, as the run's
own evaluate stage compares base and trained.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from srl_rlvr.config import Config
from srl_rlvr.encoder_data import base_encoder, build_encoder_data
from srl_rlvr.evaluate.encoders import compare_encoders
from srl_rlvr.evaluate.run import model_label


def encoder_folder(name: str, uri: str | None = None) -> str:
    """What to load for `name`: a registry reference's folder; for an encoder run's directory or its
    `train` folder, the model it trained; anything else (a model folder, a hub id) as it is."""
    if name.startswith("registry:"):
        from srl_rlvr.tracking.registry import resolve_source

        return resolve_source(name, uri)
    for folder in (Path(name) / "train" / "model", Path(name) / "model"):
        if (folder / "config.json").is_file():
            return str(folder)
    return name


def encoder_label(name: str, taken: Sequence[str]) -> str:
    """`NAME@ALIAS` for a registry reference (its version number alone says little), else as `eval`
    labels a causal model: the stage folder's name or the last path part."""
    if not name.startswith("registry:"):
        return model_label(name, taken)
    label, i = name.removeprefix("registry:"), 2
    while label in taken:
        label, i = f"{name.removeprefix('registry:')}-{i}", i + 1
    return label


def metric_cells(
    result: dict[str, Any], deltas: dict[str, Any], metrics: Sequence[str], joint: str
) -> list[str]:
    """Each metric with its interval and, where there is one, its paired delta (`joint` places it)."""
    cells = []
    for name in metrics:
        low, high = result["intervals"][name]
        cell = f"{result['metrics'][name]:.3f} [{low:.3f}, {high:.3f}]"
        if name in deltas:
            d = deltas[name]
            cell += joint.format(
                f"{d['delta']:+.3f} [{d['delta_low']:+.3f}, {d['delta_high']:+.3f}]"
            ).rstrip()
        cells.append(cell)
    return cells


def report_markdown(report: dict[str, Any]) -> str:
    results, deltas = report["results"], report.get("deltas", {})
    metrics = list(next(iter(results.values()))["metrics"])
    lines = [
        f"# {report['model_type']} evaluation",
        "",
        f"{report['n']} held-out rows (data version {report.get('data_version', '-')}); deltas are "
        f"minus `{report['baseline']}`, with paired bootstrap intervals.",
        "",
        "| model | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for label, result in results.items():
        cells = metric_cells(result, deltas.get(label, {}), metrics, " ({}) ")
        lines.append(f"| `{label}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_encoder_evaluation(
    config: Config,
    models: Sequence[str],
    out_dir: str | Path,
    baseline: str | None = None,
    n: int | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluate the baseline then `models` on the config's held-out split (its first `n` rows);
    write report.json and report.md in `out_dir`. The config's 'embedded' base (the CLI's default,
    a causal LM) is no baseline: the first model is then the reference."""
    from srl_rlvr.modeling import resolve_device
    from srl_rlvr.tracking.runs import tracking_uri

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(config)
    data = build_encoder_data(config)
    if n is not None:
        data = dataclasses.replace(data, test=data.test[:n])
    named: dict[str, str] = {}
    if baseline is not None:
        named[encoder_label(baseline, [])] = encoder_folder(baseline, uri)
    elif config.model.name_or_path != "embedded":
        named["base"] = base_encoder(config, data, out)
    for name in models:
        named[encoder_label(name, list(named))] = encoder_folder(name, uri)
    device = str(resolve_device(config.model.device))
    report = compare_encoders(config.model.type, named, data, config.encoder, config.eval, device)
    report["data_version"] = data.version()
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(report_markdown(report))
    return report, out / "report.json"


def run_tracked_encoder_evaluation(
    config: Config,
    models: Sequence[str],
    out_dir: str | Path,
    baseline: str | None = None,
    n: int | None = None,
) -> tuple[dict[str, Any], Path]:
    """`run_encoder_evaluation` as an MLflow run recorded in `out_dir`, as a causal model's
    evaluation is: every model's metrics, and the report's files."""
    from srl_rlvr.tracking.runs import tracked_run

    with tracked_run(config, "evaluate", out_dir, {"srl_rlvr.models": ", ".join(models)}) as tracking:
        report, path = run_encoder_evaluation(config, models, out_dir, baseline=baseline, n=n)
        if tracking:
            for label, result in report["results"].items():
                tracking.log_metrics({f"{label}.{k}": v for k, v in result["metrics"].items()})
            tracking.log_files(Path(out_dir), ("report.json", "report.md"))
    return report, path
