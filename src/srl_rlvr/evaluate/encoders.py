"""Evaluating the encoder types on the same held-out queries or prompts, each model against the first.

Embedding models rank the whole corpus for each held-out query; rerankers reorder BM25's candidate
list for it (BM25's own order is reported too: the first stage a reranker must beat); the intent
router labels held-out prompts of each role. Each model's per-query scores are kept, so every delta
to the first model (the baseline: the base before training, or a teacher) carries a paired interval.

The report's `results` has the shape of a generation report's (label -> {metrics}), so a selection
catalog's `measured:` reads either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from srl_rlvr.config import EvalConfig
from srl_rlvr.encoder_data import EncoderData
from srl_rlvr.encoder_models import load_classifier, load_cross_encoder, load_embedding_model
from srl_rlvr.evaluate.classification import classification_report, compare_classifiers, macro_f1
from srl_rlvr.evaluate.retrieval import Judged, embedding_rankings, per_query_scores, reranked
from srl_rlvr.evaluate.stats import bootstrap_ci, paired_delta_ci, paired_metric_delta_ci
from srl_rlvr.model_types import EncoderConfig

FIRST_STAGE = "bm25"  # the label of BM25's own order in a reranker's report


def _queries(data: EncoderData) -> list[tuple[str, str]]:
    return [(row["query"], row["passage_id"]) for row in data.test]


def embedding_judged(model_dir: str, data: EncoderData, config: EncoderConfig, device: str) -> list[Judged]:
    """Every held-out query with the whole corpus ranked by the model."""
    model = load_embedding_model(model_dir, config.pooling, device, config.max_length)
    return embedding_rankings(
        lambda texts: model.encode(texts, convert_to_numpy=True, show_progress_bar=False),
        lambda texts: model.encode(texts, convert_to_numpy=True, show_progress_bar=False),
        _queries(data),
        list(data.passages.items()),
    )


def embedding_scores(
    model_dir: str, data: EncoderData, config: EncoderConfig, device: str
) -> dict[str, list[float]]:
    return per_query_scores(embedding_judged(model_dir, data, config, device), config.top_k)


def first_stage(data: EncoderData) -> list[Judged]:
    return [Judged(row["query"], row["passage_id"], list(row["candidates"])) for row in data.test]


def reranker_judged(model_dir: str, data: EncoderData, config: EncoderConfig, device: str) -> list[Judged]:
    """Every held-out query with BM25's candidates reordered by the model."""
    model = load_cross_encoder(model_dir, device, config.max_length)
    return reranked(
        lambda pairs: model.predict(pairs, convert_to_numpy=True, show_progress_bar=False),
        first_stage(data),
        data.passages,
    )


def reranker_scores(
    model_dir: str, data: EncoderData, config: EncoderConfig, device: str
) -> dict[str, list[float]]:
    return per_query_scores(reranker_judged(model_dir, data, config, device), config.top_k)


def _saved_labels(model_dir: str) -> list[str]:
    from transformers import AutoConfig

    try:
        return list(AutoConfig.from_pretrained(model_dir).id2label.values())
    except OSError:
        return []


def classifier_predictions(
    model_dir: str, data: EncoderData, device: str, labels: list[str] | None
) -> list[str]:
    """Labels predicted for the held-out prompts. A model whose saved head has other labels than
    `labels` (a base before training) gets a fresh head for them, seeded: the same "before" every time."""
    import torch

    if labels is not None and set(_saved_labels(model_dir)) == set(labels):
        labels = None  # a trained router: its own head
    torch.manual_seed(0)
    model, tokenizer = load_classifier(model_dir, labels, device)
    predictions: list[str] = []
    texts = [row["text"] for row in data.test]
    with torch.no_grad():
        for start in range(0, len(texts), 32):
            batch = tokenizer(texts[start : start + 32], padding=True, truncation=True, return_tensors="pt")
            logits = model(**batch.to(model.device)).logits
            predictions += [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    return predictions


def _retrieval_result(model: str, scores: dict[str, list[float]], ci: tuple) -> dict[str, Any]:
    return {
        "model": model,
        "metrics": {name: float(np.mean(v)) if v else float("nan") for name, v in scores.items()},
        "intervals": {name: list(bootstrap_ci(v, *ci)) for name, v in scores.items()},
    }


def _retrieval_deltas(
    reference: dict[str, list[float]], scores: dict[str, list[float]], ci: tuple
) -> dict[str, dict[str, float]]:
    out = {}
    for name, values in scores.items():
        delta, low, high = paired_delta_ci(reference[name], values, *ci)
        out[name] = {"delta": delta, "delta_low": low, "delta_high": high}
    return out


def _classifier_result(model: str, truth: list[str], predicted: list[str], labels: list[str], ci: tuple):
    report = classification_report(truth, predicted, labels)
    truth_a, predicted_a = np.asarray(truth), np.asarray(predicted)
    _, f1_low, f1_high = paired_metric_delta_ci(
        lambda i: 0.0, lambda i: macro_f1(truth_a[i], predicted_a[i], labels), len(truth), *ci
    )
    return {
        "model": model,
        "metrics": {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]},
        "intervals": {
            "accuracy": list(bootstrap_ci((truth_a == predicted_a).astype(float), *ci)),
            "macro_f1": [f1_low, f1_high],
        },
        "per_role": report["per_role"],
        "confusion": report["confusion"],
    }


def compare_encoders(
    model_type: str,
    models: Mapping[str, str],
    data: EncoderData,
    config: EncoderConfig,
    eval_config: EvalConfig,
    device: str,
) -> dict[str, Any]:
    """label -> model folder, the baseline first. The report: `results` (each model's metrics with
    intervals, in order), `deltas` (every later model minus the first, paired), and for a reranker
    `results.bm25` and `deltas_vs_bm25`."""
    ci = (eval_config.bootstrap_samples, eval_config.bootstrap_seed, eval_config.confidence)
    labels = list(models)
    report: dict[str, Any] = {"model_type": model_type, "n": len(data.test), "baseline": labels[0]}
    if model_type == "classifier":
        truth = [row["label"] for row in data.test]
        predicted = {
            label: classifier_predictions(path, data, device, data.labels) for label, path in models.items()
        }
        report["results"] = {
            label: _classifier_result(models[label], truth, predicted[label], data.labels, ci)
            for label in labels
        }
        report["deltas"] = {
            label: compare_classifiers(truth, predicted[labels[0]], predicted[label], data.labels, *ci)
            for label in labels[1:]
        }
        return report
    score = embedding_scores if model_type == "embedding" else reranker_scores
    scores = {label: score(path, data, config, device) for label, path in models.items()}
    results = {label: _retrieval_result(models[label], scores[label], ci) for label in labels}
    report["deltas"] = {
        label: _retrieval_deltas(scores[labels[0]], scores[label], ci) for label in labels[1:]
    }
    if model_type == "reranker":
        bm25 = per_query_scores(first_stage(data), config.top_k)
        results = {FIRST_STAGE: _retrieval_result("BM25", bm25, ci), **results}
        report["deltas_vs_bm25"] = {label: _retrieval_deltas(bm25, scores[label], ci) for label in labels}
    report["results"] = results
    return report
