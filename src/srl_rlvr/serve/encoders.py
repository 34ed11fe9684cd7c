"""The served encoder models (embedding, reranker, classifier) and the one call each answers.

They compute no tokens one by one, so unlike the chat models they need no batching worker: a
request's texts are one batch, run off the event loop in a thread. A lock per model keeps two
requests from sharing a model's forward pass at once (tokenizers and autograd state are not
thread-safe), while different models run side by side.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from srl_rlvr.errors import UserError
from srl_rlvr.model_types import ModelType


@dataclass
class Encoder:
    type: ModelType
    model: Any
    tokenizer: Any = None  # the classifier's; sentence-transformers models hold their own
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dimensions(self) -> int | None:
        return self.model.get_embedding_dimension() if self.type == "embedding" else None

    @property
    def labels(self) -> list[str]:
        if self.type != "classifier":
            return []
        id2label = self.model.config.id2label
        return [id2label[i] for i in range(len(id2label))]


class EncoderSet:
    def __init__(self, device: str) -> None:
        self.device = device
        self.models: dict[str, Encoder] = {}

    def load(self, name: str, path: str, model_type: ModelType) -> None:
        """Blocking: load one encoder model (a folder, hub id or `registry:` reference)."""
        from srl_rlvr.encoder_models import load_classifier, load_cross_encoder, load_embedding_model
        from srl_rlvr.modeling import resolve_device
        from srl_rlvr.tracking.registry import resolve_source

        source = resolve_source(path)
        device = str(resolve_device(self.device))
        if model_type == "embedding":
            encoder = Encoder(model_type, load_embedding_model(source, device=device))
        elif model_type == "reranker":
            encoder = Encoder(model_type, load_cross_encoder(source, device=device))
        else:
            model, tokenizer = load_classifier(source, device=device)
            encoder = Encoder(model_type, model, tokenizer)
        self.models[name] = encoder

    def get(self, name: str, model_type: ModelType) -> Encoder:
        encoder = self.models.get(name)
        if encoder is None or encoder.type != model_type:
            served = [n for n, e in self.models.items() if e.type == model_type]
            raise LookupError(f"no {model_type} model '{name}'; served: {', '.join(served) or 'none'}")
        return encoder

    async def embed(self, name: str, texts: list[str], dimensions: int | None) -> tuple[np.ndarray, int]:
        """(one unit-length row a text, tokens read). `dimensions` keeps the first that many (the
        Matryoshka cut OpenAI's text-embedding-3 models allow), renormalised."""
        encoder = self.get(name, "embedding")
        full = encoder.dimensions
        if dimensions is not None and full is not None and dimensions > full:
            raise UserError(f"dimensions {dimensions} is over model '{name}''s {full}")

        def run() -> tuple[np.ndarray, int]:
            with encoder.lock:
                vectors = encoder.model.encode(
                    texts, convert_to_numpy=True, truncate_dim=dimensions, show_progress_bar=False
                )
                tokens = sum(len(ids) for ids in encoder.model.tokenizer(texts)["input_ids"])
            vectors = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
            return vectors.astype(np.float32), tokens

        return await asyncio.to_thread(run)

    async def rerank(self, name: str, query: str, documents: list[str]) -> tuple[list[float], int]:
        """(one relevance score a document, tokens read)."""
        encoder = self.get(name, "reranker")

        def run() -> tuple[list[float], int]:
            pairs = [(query, d) for d in documents]
            with encoder.lock:
                scores = encoder.model.predict(pairs, convert_to_numpy=True, show_progress_bar=False)
                tokens = sum(
                    len(ids)
                    for ids in encoder.model.tokenizer([query] * len(documents), documents)["input_ids"]
                )
            return [float(s) for s in np.atleast_1d(scores)], tokens

        return await asyncio.to_thread(run)

    async def classify(self, name: str, texts: list[str]) -> tuple[list[dict[str, float]], int]:
        """(label -> probability, one a text; tokens read)."""
        import torch

        encoder = self.get(name, "classifier")
        labels = encoder.labels

        def run() -> tuple[list[dict[str, float]], int]:
            with encoder.lock, torch.no_grad():
                batch = encoder.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
                tokens = int(batch["attention_mask"].sum())
                probs = encoder.model(**batch.to(encoder.model.device)).logits.float().softmax(-1).cpu()
            return [dict(zip(labels, row.tolist(), strict=True)) for row in probs], tokens

        return await asyncio.to_thread(run)
