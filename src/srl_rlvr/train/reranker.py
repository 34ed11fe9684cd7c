"""Training a reranker: a cross-encoder reads (query, passage) together and scores their relevance.

sentence-transformers' CrossEncoder with BinaryCrossEntropyLoss over labelled pairs: each query's own
passage is labelled 1 and the passages the first stage (BM25) ranked high for it but are not its own
are labelled 0. Those are exactly the mistakes a second stage exists to fix, so they are the
negatives (Nogueira & Cho 2019, "Passage Re-ranking with BERT", section 2, trains the same way on
BM25's top candidates). Positives are weighted by the negatives per query, so the loss does not learn
that "irrelevant" is the safe answer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from srl_rlvr.encoder_models import load_cross_encoder
from srl_rlvr.errors import DataError
from srl_rlvr.model_types import EncoderConfig
from srl_rlvr.train.callbacks import MetricsLogger
from srl_rlvr.train.encoder_args import trainer_arguments, without_printing


def train_reranker(
    base: str,
    examples: Sequence[tuple[str, str, Sequence[str]]],
    out_dir: str | Path,
    config: EncoderConfig,
    seed: int = 0,
    device: str = "cpu",
) -> str:
    """Fine-tune `base` on (query, relevant passage, negative passages) examples; returns the folder."""
    import torch
    from datasets import Dataset
    from sentence_transformers import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    rows: dict[str, list] = {"query": [], "passage": [], "label": []}
    for query, positive, negatives in examples:
        for passage, label in [(positive, 1.0), *((n, 0.0) for n in negatives)]:
            rows["query"].append(query)
            rows["passage"].append(passage)
            rows["label"].append(label)
    if not examples or rows["label"].count(0.0) == 0:
        raise DataError("reranker training needs queries with at least one negative passage each")
    model = load_cross_encoder(base, device, config.max_length)
    dataset = Dataset.from_dict(rows)
    negatives_per_positive = rows["label"].count(0.0) / rows["label"].count(1.0)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        args = CrossEncoderTrainingArguments(**trainer_arguments(config, scratch, seed, device, len(dataset)))
        trainer = CrossEncoderTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            loss=BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(negatives_per_positive)),
            callbacks=[MetricsLogger(out_dir.parent / "metrics.jsonl")],
        )
        without_printing(trainer).train()
    model.save_pretrained(str(out_dir))
    return str(out_dir)
