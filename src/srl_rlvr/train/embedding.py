"""Contrastive fine-tuning of an embedding model on (query, passage) pairs, with sentence-transformers.

The loss is MultipleNegativesRankingLoss (Henderson et al. 2017, "Efficient Natural Language Response
Suggestion for Smart Reply", section 4.4; the InfoNCE objective of van den Oord et al. 2018): for
each query, its passage must out-score every other passage of the batch (in-batch negatives) and the
passages mined for it. Hard negatives come from `mine_hard_negatives` with the base model itself: the
passages it ranks highest for the query that are not the query's own, skipping the very top
(`encoder.hard_negative_skip`), which is often a second right answer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from srl_rlvr.encoder_models import load_embedding_model
from srl_rlvr.errors import DataError
from srl_rlvr.model_types import EncoderConfig
from srl_rlvr.train.callbacks import MetricsLogger
from srl_rlvr.train.encoder_args import trainer_arguments, without_printing


def train_embedding(
    base: str,
    pairs: Sequence[tuple[str, str]],
    corpus: Sequence[str],
    out_dir: str | Path,
    config: EncoderConfig,
    seed: int = 0,
    device: str = "cpu",
) -> str:
    """Fine-tune `base` on (query, positive passage) pairs; `corpus` is where negatives are mined.
    Returns the saved SentenceTransformer folder (an HF model folder plus its pooling)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from sentence_transformers.util import mine_hard_negatives

    if len(pairs) < 2:
        raise DataError(f"embedding training needs at least 2 (query, passage) pairs, got {len(pairs)}")
    model = load_embedding_model(base, config.pooling, device, config.max_length)
    dataset = Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]})
    if config.hard_negatives:
        dataset = mine_hard_negatives(
            dataset,
            model,
            corpus=list(corpus),
            range_min=config.hard_negative_skip,
            num_negatives=config.hard_negatives,
            sampling_strategy="top",
            output_format="n-tuple",
            verbose=False,
        )
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        args = SentenceTransformerTrainingArguments(
            **trainer_arguments(config, scratch, seed, device, len(dataset)),
            # a batch holding a query's own passage twice would count it as its own negative
            batch_sampler=BatchSamplers.NO_DUPLICATES,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            loss=MultipleNegativesRankingLoss(model, scale=config.scale),
            callbacks=[MetricsLogger(out_dir.parent / "metrics.jsonl")],
        )
        without_printing(trainer).train()
    model.save(str(out_dir))
    return str(out_dir)
