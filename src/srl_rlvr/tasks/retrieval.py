"""Retrieval: write the query a user would type to find a passage; the retriever checks it finds it.

A problem is one passage of a corpus (the packaged one, data/retrieval_corpus.jsonl: 40 short
passages from a shop's help pages, science, history, cooking, sport, software, money and gardening,
each with three hand-written queries; or a user's JSONL of passages). A query is right when BM25 over
the whole corpus (generate/retriever.py) ranks its source passage in the top `verify_k`: the same
check that keeps only verified (query, passage) pairs for training embedding models and rerankers.
Queries are split by their id, so a passage's held-out queries are never trained on while the
passage itself stays searchable (the corpus is the index, in training and evaluation alike).
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

from srl_rlvr.data.trajectory import Step, Trajectory
from srl_rlvr.errors import DataError
from srl_rlvr.generate.retriever import KnowledgeIndex, Passage, bm25_ranker
from srl_rlvr.tasks.base import Problem, Split, split_of

CORPUS_FILE = Path(__file__).parent / "data" / "retrieval_corpus.jsonl"


@dataclass(frozen=True)
class QueryPair:
    """A query and the id of the passage that answers it."""

    id: str
    query: str
    passage_id: str


def read_corpus(path: str | Path) -> tuple[list[Passage], list[QueryPair]]:
    """Passages (rows `{id, text, title?}`) and their queries (`queries: [...]`, optional) of a JSONL."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"retrieval corpus not found: {path}")
    passages: list[Passage] = []
    pairs: list[QueryPair] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pid, text = str(row["id"]), str(row["text"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}:{number}: a passage row needs id and text ({e})") from None
        title = row.get("title")
        passages.append(Passage(pid, f"{title}. {text}" if title else text, path.name))
        pairs += [QueryPair(f"{pid}-q{i}", str(q), pid) for i, q in enumerate(row.get("queries") or [])]
    if not passages:
        raise DataError(f"{path}: no passages")
    return passages, pairs


class RetrievalTask:
    name = "retrieval"

    def __init__(self, corpus: str | None = None, verify_k: int = 10) -> None:
        self.corpus_path = Path(corpus) if corpus else CORPUS_FILE
        self.verify_k = verify_k
        self.passages, self.pairs = read_corpus(self.corpus_path)
        self.by_id = {p.id: p for p in self.passages}

    @functools.cached_property
    def index(self) -> KnowledgeIndex:
        return KnowledgeIndex(self.passages, bm25_ranker(self.passages))

    def found(self, query: str, passage_id: str, k: int | None = None) -> bool:
        """Whether the corpus's BM25 ranks `passage_id` in the top k for `query`: the verifier."""
        return passage_id in [p.id for p in self.index.search(query, k or self.verify_k)]

    def verified_pairs(self, split: Split) -> list[QueryPair]:
        """The split's (query, passage) pairs the retriever confirms; training and evaluation use these."""
        return [p for p in self.pairs if split_of(p.id) == split and self.found(p.query, p.passage_id)]

    def prompt(self, problem: Problem) -> str:
        return (
            "Write one short search query that a user looking for this passage would type. Answer with "
            f"the query alone on the last line.\n\nPassage: {problem.text}"
        )

    def parse(self, completion: str) -> str | None:
        lines = [line.strip() for line in completion.strip().splitlines() if line.strip()]
        if not lines:
            return None
        query = lines[-1].removeprefix("Query:").removeprefix("query:").strip().strip("\"'")
        return query or None

    def reward(self, completion: str, problem: Problem) -> float:
        query = self.parse(completion)
        return float(query is not None and self.found(query, str(problem.answer)))

    def metrics(self, completions: list[str], problems: list[Problem]) -> dict[str, float]:
        rewards = [self.reward(c, p) for c, p in zip(completions, problems, strict=True)]
        return {"found_rate": sum(rewards) / len(rewards) if rewards else 0.0}

    def sample(self, n: int, seed: int, split: Split) -> list[Problem]:
        """One problem per query of the split (its passage to write a query for), shuffled by seed."""
        pairs = [p for p in self.pairs if split_of(p.id) == split] or self._passage_pairs(split)
        random.Random(f"retrieval-{seed}-{split}").shuffle(pairs)
        return [
            Problem(
                id=pair.id,
                text=self.by_id[pair.passage_id].text,
                answer=pair.passage_id,
                metadata={"reference_query": pair.query},
            )
            for pair in pairs[:n]
        ]

    def _passage_pairs(self, split: Split) -> list[QueryPair]:
        """A user corpus without queries: the split's passages, for a teacher to write them."""
        return [QueryPair(p.id, "", p.id) for p in self.passages if split_of(p.id) == split]

    def solve(self, problem: Problem) -> Trajectory:
        query = problem.metadata.get("reference_query") or ""
        if not query:
            raise DataError(f"passage {problem.answer} has no reference query; a teacher must write one")
        return Trajectory(
            problem=problem.text,
            steps=[
                Step(action=f"Topic: {problem.text.split('.')[0]}", reasoning="What the passage is about."),
                Step(action=query, reasoning="What someone needing it would type, in their own words."),
            ],
            expected_outcome=str(problem.answer),
            metadata={"id": problem.id},
            provenance={"teacher": "solver:retrieval"},
        )
