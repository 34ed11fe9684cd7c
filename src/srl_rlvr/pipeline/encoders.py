"""The pipeline of the encoder types: generate -> train -> evaluate -> register, in one run directory.

What each stage does for `model.type` embedding, reranker and classifier:
- generate: the (query, passage) pairs the retriever verified, or the router's labelled prompts,
  written to `data/encoder_data.json`; their content hash is the data version the registry records;
- train: the type's trainer (train/embedding.py, train/reranker.py, train/classifier.py) -> `train/model/`;
- evaluate: the base model, then the trained one, on the held-out split -> `report/report.json`;
- register: the model in the MLflow registry with its metrics, data version, parent and type.

Skip and resume work as in the causal pipeline (`runner.py`, whose pipeline.json and helpers this
uses): a stage whose config sections and upstream outputs are unchanged, and whose output is still
there untouched, is skipped; any other runs from scratch, and so does everything after it. The data
is rebuilt on every run (it is deterministic and takes seconds), and its content hash stands in for
the generate stage's inputs, so new labelled records in `encoder.records_url` retrain the router.
An interrupted stage reruns whole: encoder training keeps no checkpoints (a few hundred steps of a
small encoder cost less than resuming), and the stages before it are not run again.
The evaluation reports the comparison; unlike a causal LM's stages, there is no verifier gate here:
the report's paired intervals say whether training helped, and promotion (`registry promote`)
refuses a version worse than production on the registry's primary metric.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from srl_rlvr.config import Config, dump_config
from srl_rlvr.encoder_data import EncoderData, base_encoder, build_encoder_data, negatives
from srl_rlvr.errors import ConfigError
from srl_rlvr.model_types import ENCODER_STAGES
from srl_rlvr.pipeline.runner import (
    is_done,
    output_changed,
    output_path,
    output_signature,
    read_state,
    resolve_registry_model,
    write_state,
)
from srl_rlvr.pipeline.stages import StageOutput, stage_dir
from srl_rlvr.tracking.runs import close_abandoned_run, recorded_run_id, run_tracked

log = logging.getLogger(__name__)


@dataclass
class EncoderRun:
    base_dir: str
    model_dir: str | None = None
    data_version: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    registered: str | None = None  # registry:NAME/VERSION
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _sections(config: Config, stage: str) -> dict[str, Any]:
    """The config a stage reads besides the data (whose hash is an input of every stage)."""
    c = config.model_dump(mode="json")
    return {
        "generate": {},
        "train": {"model": c["model"], "encoder": c["encoder"], "seed": c["seed"]},
        "evaluate": {"model": c["model"], "encoder": c["encoder"], "eval": c["eval"]},
        "register": {"model": c["model"], "registry": c["registry"], "task": c["task"]},
    }[stage]


def _fingerprint(config: Config, stage: str, inputs: dict[str, str]) -> str:
    payload = {"stage": stage, "config": _sections(config, stage), "inputs": inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def train(config: Config, data: EncoderData, base: str, out: Path, device: str) -> str:
    model_dir = out / "model"
    enc = config.encoder
    if config.model.type == "embedding":
        from srl_rlvr.train.embedding import train_embedding

        pairs = [(row["query"], data.passages[row["passage_id"]]) for row in data.train]
        return train_embedding(base, pairs, list(data.passages.values()), model_dir, enc, config.seed, device)
    if config.model.type == "reranker":
        from srl_rlvr.train.reranker import train_reranker

        examples = [
            (
                row["query"],
                data.passages[row["passage_id"]],
                [data.passages[pid] for pid in negatives(row, max(1, enc.hard_negatives))],
            )
            for row in data.train
        ]
        return train_reranker(base, examples, model_dir, enc, config.seed, device)
    from srl_rlvr.train.classifier import train_classifier

    examples = [(row["text"], row["label"]) for row in data.train]
    return train_classifier(base, examples, data.labels, model_dir, enc, config.seed, device)


def evaluate(config: Config, run: EncoderRun, data: EncoderData, out: Path, device: str) -> Path:
    """The base model and the trained one (when this run trained one) on the held-out split."""
    from srl_rlvr.evaluate.encoders import compare_encoders

    models = {"base": run.base_dir, **({"tuned": run.model_dir} if run.model_dir else {})}
    report = compare_encoders(config.model.type, models, data, config.encoder, config.eval, device)
    report["data_version"] = run.data_version
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return out / "report.json"


def register(config: Config, run: EncoderRun, out: Path) -> Path:
    """The trained model (else the base) as a registry version; registered under the train stage's
    tracked run when there is one, so a rerun after a kill finds the version instead of adding one."""
    from srl_rlvr.tracking import registry
    from srl_rlvr.tracking.runs import mlflow_key, tracking_uri

    uri = tracking_uri(config)
    name = config.registry.model_name or registry.model_name_for(f"{config.task.name}-{config.model.type}")
    if config.model.type == "classifier" and not config.registry.model_name:
        name = "intent-router"
    label = "tuned" if run.model_dir else "base"
    metrics = run.report.get("results", {}).get(label, {}).get("metrics", {})
    version = registry.register(
        name,
        run.model_dir or run.base_dir,
        stage="train",
        parent=config.model.resolved_from or config.model.name_or_path,
        dataset=run.data_version,
        metrics={mlflow_key(k): float(v) for k, v in metrics.items()},
        run_id=recorded_run_id(stage_dir(config, "train")) if run.model_dir else None,
        experiment=config.registry.experiment,
        uri=uri,
        tags={"model_type": config.model.type},
    )
    if config.registry.alias_on_register is not None:
        registry.promote(name, version.version, to=config.registry.alias_on_register, force=True, uri=uri)
    entry = {"stage": "train", "reference": version.reference, "parent": version.parent}
    out.mkdir(parents=True, exist_ok=True)
    (out / "registered.json").write_text(json.dumps({"model": name, "versions": [entry]}, indent=2) + "\n")
    return out / "registered.json"


def _load_outputs(run: EncoderRun, stage: str, path: Path) -> None:
    """What a stage that ran or was skipped leaves for the stages after it."""
    if stage == "train":
        run.model_dir = str(path)
    elif stage == "evaluate":
        run.report = json.loads(path.read_text())
    elif stage == "register":
        run.registered = json.loads(path.read_text())["versions"][-1]["reference"]


def run_encoder_pipeline(config: Config, on_stage: Callable[[str, str], None] | None = None) -> EncoderRun:
    """Run the configured stages for an encoder type in `config.output_dir`, skipping what is
    unchanged (the module docstring says how). `on_stage(stage, what)` hears each decision."""
    from srl_rlvr.modeling import resolve_device

    if config.model.type == "causal_lm":
        raise ConfigError("run_encoder_pipeline runs the encoder types; model.type is causal_lm")
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(config))
    config = resolve_registry_model(config)  # the base's folder now; its reference stays the parent
    device = str(resolve_device(config.model.device))
    data = build_encoder_data(config)
    run = EncoderRun(base_dir=base_encoder(config, data, out), data_version=data.version())
    records = read_state(out)
    # a base built inside the run (tiny) is named relative to it, so the folder can be moved
    base = Path(run.base_dir)
    outputs = {
        "data": run.data_version,
        "base": str(base.relative_to(out) if base.is_relative_to(out) else base),
    }
    work: dict[str, Callable[[Path], Path]] = {
        "generate": lambda folder: data.save(folder),
        "train": lambda folder: Path(train(config, data, run.base_dir, folder, device)),
        "evaluate": lambda folder: evaluate(config, run, data, folder, device),
        "register": lambda folder: register(config, run, folder),
    }
    for stage in [s for s in ENCODER_STAGES if s in config.pipeline.stages]:
        current = _fingerprint(config, stage, dict(outputs))
        record = records.get(stage, {})
        unchanged = record.get("fingerprint") == current and is_done(out, record)
        if unchanged and not output_changed(out, record):
            run.skipped.append(stage)
            why = "inputs unchanged"
        else:
            folder = stage_dir(config, stage)
            if folder.exists():
                close_abandoned_run(config, folder)
                shutil.rmtree(folder)
            records[stage] = {"fingerprint": current, "status": "running", "output": None}
            write_state(out, records)
            if on_stage is not None:
                on_stage(stage, "running")
            produced = run_tracked(
                config, stage, folder, {}, lambda _callbacks, s=stage, f=folder: StageOutput(work[s](f))
            ).path
            finished = datetime.now(timezone.utc).isoformat(timespec="microseconds")
            records[stage] = {
                "fingerprint": current,
                "status": "done",
                "output": str(produced.relative_to(out)),
                "output_id": run.data_version
                if stage == "generate"
                else hashlib.sha256(f"{current}:{finished}".encode()).hexdigest(),
                "finished": finished,
                "signature": output_signature(produced),
            }
            write_state(out, records)
            run.ran.append(stage)
            why = f"done: {produced}"
        _load_outputs(run, stage, output_path(out, records[stage]))
        outputs[stage] = records[stage]["output_id"]
        if on_stage is not None:
            on_stage(stage, why if stage in run.ran else f"skipped ({why})")
        log.info("%s %s", stage, why)
    return run
