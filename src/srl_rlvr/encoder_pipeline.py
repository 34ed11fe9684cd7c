"""The pipeline of the encoder types: generate -> train -> evaluate -> register, in one run directory.

What each stage does for `model.type` embedding, reranker and classifier:
- generate: the (query, passage) pairs the retriever verified, or the router's labelled prompts,
  written to `encoder_data.json` with their content hash (the data version the registry records);
- train: the type's trainer (train/embedding.py, train/reranker.py, train/classifier.py) -> `model/`;
- evaluate: the trained model and its base on the held-out split -> `eval_report.json`;
- register: the model in the MLflow registry with its metrics, data version, parent and type.
The evaluation reports the comparison; unlike a causal LM's stages, there is no verifier gate here:
the report's paired intervals say whether training helped, and promotion (`registry promote`)
refuses a version worse than production on the registry's primary metric.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srl_rlvr.config import Config, dump_config
from srl_rlvr.encoder_data import EncoderData, negatives, retrieval_data, router_data
from srl_rlvr.encoder_models import tiny_encoder_folder
from srl_rlvr.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class EncoderRun:
    base_dir: str
    model_dir: str | None = None
    data_version: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    registered: str | None = None  # registry:NAME/VERSION


def build_data(config: Config) -> EncoderData:
    if config.model.type == "classifier":
        return router_data(
            config.encoder, config.data.seed, max(1, config.data.test_size // len(config.encoder.roles))
        )
    from srl_rlvr.tasks import load_task

    task = load_task(config.task.name, config.task.options)
    return retrieval_data(task, config.encoder, config.data.trajectories)


def base_folder(config: Config, data: EncoderData, out: Path) -> str:
    """The base model's folder: `tiny` is built from the data's own words; `registry:` is resolved."""
    name = config.model.name_or_path
    if name == "tiny":
        texts = [*data.passages.values(), *(r.get("query") or r.get("text", "") for r in data.train)]
        return tiny_encoder_folder(out / "tiny-base", texts, seed=config.seed)
    if name == "embedded":
        raise ConfigError(
            f"model.name_or_path: 'embedded' is a causal LM; a {config.model.type} needs an encoder"
        )
    from srl_rlvr.tracking.registry import resolve_source
    from srl_rlvr.tracking.runs import tracking_uri

    return resolve_source(name, tracking_uri(config))


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


def register(config: Config, run: EncoderRun) -> str:
    from srl_rlvr.tracking import registry
    from srl_rlvr.tracking.runs import mlflow_key, tracking_uri

    uri = tracking_uri(config)
    name = config.registry.model_name or registry.model_name_for(f"{config.task.name}-{config.model.type}")
    if config.model.type == "classifier" and not config.registry.model_name:
        name = "intent-router"
    metrics = {mlflow_key(k): float(v) for k, v in run.report.get("metrics", {}).items()}
    version = registry.register(
        name,
        run.model_dir or run.base_dir,
        stage="train",
        parent=config.model.resolved_from or config.model.name_or_path,
        dataset=run.data_version,
        metrics=metrics,
        experiment=config.registry.experiment,
        uri=uri,
        tags={"model_type": config.model.type},
    )
    if config.registry.alias_on_register is not None:
        registry.promote(name, version.version, to=config.registry.alias_on_register, force=True, uri=uri)
    return version.reference


def run_encoder_pipeline(config: Config) -> EncoderRun:
    """Run the configured stages for an encoder type; each writes into `config.output_dir`."""
    from srl_rlvr.evaluate.encoders import evaluate_encoder
    from srl_rlvr.modeling import resolve_device

    if config.model.type == "causal_lm":
        raise ConfigError("run_encoder_pipeline runs the encoder types; model.type is causal_lm")
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(config))
    device = str(resolve_device(config.model.device))
    stages = config.pipeline.stages
    data = build_data(config)  # deterministic and cheap: built whether or not `generate` is listed
    if "generate" in stages:
        data.save(out)
    run = EncoderRun(base_dir=base_folder(config, data, out), data_version=data.version())
    if "train" in stages:
        run.model_dir = train(config, data, run.base_dir, out, device)
        log.info("trained %s -> %s", config.model.type, run.model_dir)
    if "evaluate" in stages:
        run.report = evaluate_encoder(
            config.model.type,
            run.base_dir,
            run.model_dir or run.base_dir,
            data,
            config.encoder,
            config.eval,
            device,
        )
        run.report["data_version"] = run.data_version
        (out / "eval_report.json").write_text(json.dumps(run.report, indent=1))
    if "register" in stages:
        run.registered = register(config, run)
    return run
