"""Evaluating the encoder types against their base model, on the same held-out queries or prompts.

Embedding models rank the whole corpus for each held-out query; rerankers reorder BM25's candidate
list for it (also reported: BM25's own order, the first stage the reranker must beat); the intent
router labels held-out prompts of each role. Each model's per-query scores are kept, so deltas carry
paired intervals.
"""

from __future__ import annotations

from typing import Any

from srl_rlvr.config import EvalConfig
from srl_rlvr.encoder_data import EncoderData
from srl_rlvr.encoder_models import load_classifier, load_cross_encoder, load_embedding_model
from srl_rlvr.evaluate.classification import classification_report, compare_classifiers
from srl_rlvr.evaluate.retrieval import Judged, compare, embedding_rankings, per_query_scores, reranked
from srl_rlvr.model_types import EncoderConfig


def _queries(data: EncoderData) -> list[tuple[str, str]]:
    return [(row["query"], row["passage_id"]) for row in data.test]


def embedding_scores(
    model_dir: str, data: EncoderData, config: EncoderConfig, device: str
) -> dict[str, list[float]]:
    model = load_embedding_model(model_dir, config.pooling, device, config.max_length)
    judged = embedding_rankings(
        lambda texts: model.encode(texts, convert_to_numpy=True, show_progress_bar=False),
        lambda texts: model.encode(texts, convert_to_numpy=True, show_progress_bar=False),
        _queries(data),
        list(data.passages.items()),
    )
    return per_query_scores(judged, config.top_k)


def first_stage(data: EncoderData) -> list[Judged]:
    return [Judged(row["query"], row["passage_id"], list(row["candidates"])) for row in data.test]


def reranker_scores(
    model_dir: str, data: EncoderData, config: EncoderConfig, device: str
) -> dict[str, list[float]]:
    model = load_cross_encoder(model_dir, device, config.max_length)
    judged = reranked(
        lambda pairs: model.predict(pairs, convert_to_numpy=True, show_progress_bar=False),
        first_stage(data),
        data.passages,
    )
    return per_query_scores(judged, config.top_k)


def classifier_predictions(
    model_dir: str, data: EncoderData, device: str, labels: list[str] | None
) -> list[str]:
    import torch

    torch.manual_seed(0)  # a base model's fresh head: the same "before" every time
    model, tokenizer = load_classifier(model_dir, labels, device)
    predictions: list[str] = []
    texts = [row["text"] for row in data.test]
    with torch.no_grad():
        for start in range(0, len(texts), 32):
            batch = tokenizer(texts[start : start + 32], padding=True, truncation=True, return_tensors="pt")
            logits = model(**batch.to(model.device)).logits
            predictions += [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    return predictions


def evaluate_encoder(
    model_type: str,
    base_dir: str,
    tuned_dir: str,
    data: EncoderData,
    config: EncoderConfig,
    eval_config: EvalConfig,
    device: str,
) -> dict[str, Any]:
    """The report: base and tuned metrics with intervals and paired deltas; headline metrics flat."""
    ci = (eval_config.bootstrap_samples, eval_config.bootstrap_seed, eval_config.confidence)
    if model_type == "classifier":
        truth = [row["label"] for row in data.test]
        # the base has no head for these roles yet: a fresh one, seeded, is the "before"
        base = classifier_predictions(base_dir, data, device, data.labels)
        tuned = classifier_predictions(tuned_dir, data, device, None)
        report = {
            "base": classification_report(truth, base, data.labels),
            "tuned": classification_report(truth, tuned, data.labels),
            "deltas": compare_classifiers(truth, base, tuned, data.labels, *ci),
        }
        report["metrics"] = {k: report["tuned"][k] for k in ("accuracy", "macro_f1")}
        return report
    score = embedding_scores if model_type == "embedding" else reranker_scores
    base_scores, tuned_scores = score(base_dir, data, config, device), score(tuned_dir, data, config, device)
    report = {"queries": len(data.test), "metrics_vs_base": compare(base_scores, tuned_scores, *ci)}
    if model_type == "reranker":
        bm25 = per_query_scores(first_stage(data), config.top_k)
        report["metrics_vs_bm25"] = compare(bm25, tuned_scores, *ci)
    report["metrics"] = {name: row["tuned"] for name, row in report["metrics_vs_base"].items()}
    return report
