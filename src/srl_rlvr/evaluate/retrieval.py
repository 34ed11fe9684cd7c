"""Retrieval metrics for embedding models and rerankers: recall@k, MRR and nDCG@10, each per query.

Every query here has exactly one relevant passage (the one its pair names), so recall@k is whether it
is in the top k, reciprocal rank is 1/rank, and nDCG@10 (Jarvelin & Kekalainen 2002) is
1/log2(rank + 1) when rank <= 10 (the ideal DCG is 1). Scores are kept per query so that a trained
model and its base, scored on the same queries, get paired bootstrap intervals (evaluate/encoders.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

NDCG_AT = 10


@dataclass(frozen=True)
class Judged:
    """A query's text, the id of its relevant passage, and the passage ids a model ranked, best first."""

    query: str
    relevant: str
    ranking: list[str]

    @property
    def rank(self) -> int | None:
        return self.ranking.index(self.relevant) + 1 if self.relevant in self.ranking else None


def per_query_scores(judged: Sequence[Judged], ks: Sequence[int]) -> dict[str, list[float]]:
    """metric name -> one value a query, in the order given."""
    scores: dict[str, list[float]] = {f"recall@{k}": [] for k in ks}
    scores["mrr"], scores[f"ndcg@{NDCG_AT}"] = [], []
    for j in judged:
        rank = j.rank
        for k in ks:
            scores[f"recall@{k}"].append(float(rank is not None and rank <= k))
        scores["mrr"].append(1.0 / rank if rank else 0.0)
        scores[f"ndcg@{NDCG_AT}"].append(1.0 / math.log2(rank + 1) if rank and rank <= NDCG_AT else 0.0)
    return scores


def embedding_rankings(
    encode_queries: Callable[[list[str]], np.ndarray],
    encode_passages: Callable[[list[str]], np.ndarray],
    queries: Sequence[tuple[str, str]],
    passages: Sequence[tuple[str, str]],
) -> list[Judged]:
    """Rank every passage for every (query, relevant id) by cosine similarity of their embeddings."""
    q = np.asarray(encode_queries([text for text, _ in queries]), dtype=np.float32)
    p = np.asarray(encode_passages([text for _, text in passages]), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
    p /= np.linalg.norm(p, axis=1, keepdims=True) + 1e-12
    order = np.argsort(-(q @ p.T), axis=1, kind="stable")
    ids = [pid for pid, _ in passages]
    return [
        Judged(text, relevant, [ids[i] for i in row])
        for (text, relevant), row in zip(queries, order, strict=True)
    ]


def reranked(
    score_pairs: Callable[[list[tuple[str, str]]], Sequence[float]],
    candidates: Sequence[Judged],
    passage_text: dict[str, str],
) -> list[Judged]:
    """Each query's candidate list (from a first stage) reordered by a cross-encoder's pair scores; a
    relevant passage the first stage missed stays missed, for the reranker and its base alike."""
    out = []
    for j in candidates:
        scores = list(score_pairs([(j.query, passage_text[pid]) for pid in j.ranking])) if j.ranking else []
        order = sorted(range(len(j.ranking)), key=lambda i: -scores[i])
        out.append(Judged(j.query, j.relevant, [j.ranking[i] for i in order]))
    return out
