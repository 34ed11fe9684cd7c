"""Training the intent router: a sequence classifier that names the role a request is for.

transformers' AutoModelForSequenceClassification (a fresh linear head over the pooled text) trained
with cross-entropy by transformers' Trainer. Its examples are the problems of each role's task (what
that role's users send) and, when a records store is given, production requests that named a role
themselves and were not rated down: real traffic labelled by the client's own choice.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from srl_rlvr.encoder_models import load_classifier
from srl_rlvr.errors import DataError
from srl_rlvr.model_types import EncoderConfig
from srl_rlvr.train.callbacks import MetricsLogger
from srl_rlvr.train.encoder_args import trainer_arguments, without_printing


def train_classifier(
    base: str,
    examples: Sequence[tuple[str, str]],
    labels: Sequence[str],
    out_dir: str | Path,
    config: EncoderConfig,
    seed: int = 0,
    device: str = "cpu",
) -> str:
    """Fine-tune `base` on (text, label) examples over `labels`; the saved folder's config names the
    labels (id2label), so the server needs no other file to say what an output means."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    unknown = sorted({label for _, label in examples} - set(labels))
    if unknown:
        raise DataError(f"classifier examples carry labels outside {list(labels)}: {unknown}")
    if len({label for _, label in examples}) < 2:
        raise DataError("classifier training needs examples of at least two labels")
    model, tokenizer = load_classifier(base, list(labels), device)
    index = {label: i for i, label in enumerate(labels)}
    dataset = Dataset.from_dict(
        {"text": [t for t, _ in examples], "label": [index[lb] for _, lb in examples]}
    )
    dataset = dataset.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=config.max_length),
        batched=True,
        remove_columns=["text"],
    )
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(
            model=model.train(),
            args=TrainingArguments(**trainer_arguments(config, scratch, seed, device, len(dataset))),
            train_dataset=dataset,
            data_collator=DataCollatorWithPadding(tokenizer),
            callbacks=[MetricsLogger(out_dir.parent / "metrics.jsonl")],
        )
        without_printing(trainer).train()
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return str(out_dir)
