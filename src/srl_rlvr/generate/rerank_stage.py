"""A reranker as the Context Retriever's second stage: BM25 (or dense) proposes, a cross-encoder orders.

The first stage is cheap and recall-oriented over the whole knowledge folder; the cross-encoder reads
each (problem, passage) pair together, which a bi-encoder or BM25 cannot, but costs a forward pass
per pair, so it only sees the first stage's top `candidates` (Nogueira & Cho 2019, "Passage
Re-ranking with BERT"). Train one with `model.type: reranker` and name it in
`collaboration.retrieval.rerank_model` (a folder or `registry:NAME@ALIAS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from srl_rlvr.generate.retriever import Passage, Ranker

PairScorer = Callable[[list[tuple[str, str]]], Sequence[float]]
"""(query, passage text) pairs -> one relevance score a pair, higher is more relevant."""


def reranked(first: Ranker, passages: Sequence[Passage], score: PairScorer, candidates: int) -> Ranker:
    """A ranker that orders `first`'s top `candidates` by `score`; ties keep the first stage's order."""

    def rank(query: str, k: int) -> list[int]:
        found = first(query, max(k, candidates))
        if not found:
            return []
        scores = list(score([(query, passages[i].text) for i in found]))
        order = sorted(range(len(found)), key=lambda j: (-scores[j], j))
        return [found[j] for j in order[:k]]

    return rank


def cross_encoder_scorer(model: str) -> PairScorer:
    """The pair scores of a trained reranker (a folder, hub id or `registry:` reference)."""
    from srl_rlvr.encoder_models import load_cross_encoder
    from srl_rlvr.tracking.registry import resolve_source

    encoder = load_cross_encoder(resolve_source(model))

    def score(pairs: list[tuple[str, str]]) -> Sequence[float]:
        return encoder.predict(pairs, convert_to_numpy=True, show_progress_bar=False).tolist()

    return score
